"""BN-Inception: the GoogLeNet variant of the paper's Sec. 4.2 and appendix table ("Figure 5").

Each 5x5 convolution of GoogLeNet is replaced by two 3x3 convolutions ("double
3x3"); modules 3c and 4e reduce the grid with stride 2 in the 3x3 and second
double-3x3 convolutions and a max-pool pass-through branch; no fully connected
layer but the classifier. Every convolution is followed by the normalization (if
any) and the nonlinearity, BN on Wu before the nonlinearity as in Sec. 3.2.

The table's known inconsistencies are fields (defaults in brackets):
- `stem`: 'plain' [default] 7x7/2 convolution as printed in the table and used by
  the Caffe and MXNet ports (the count that matches the table), 'separable' (TF-slim:
  depthwise 7x7 with depth multiplier 8, then 1x1, no normalization in between), or
  'small' (one 3x3/2 convolution and no pooling, for 28-64 px images: a 28x28 input
  reaches module 3a at 14x14, module 5b at 4x4).
- `pool_proj_4cd`: [128] as printed (4c/4d then output 608 channels, 4e 1056, as in
  the Caffe/MXNet ports) or 96 (TF-slim: 576 and 1024, as the table's output column).
- `conv_bias`: [False] convolutions carry a bias; with BN it is redundant (beta
  replaces it), but the Caffe port keeps it: with it, the table gives 11,295,240
  parameters (tests/test_inception.py).
The text's 13.6M parameters match no reading of the table (see the test).

No auxiliary classifiers. GoogLeNet (Szegedy et al. 2015) trained with two, on 4a and
4d, weighted 0.3; the BN paper's table lists none, and TF-slim's Inception-v2 (the
reference implementation of this network) has none, so neither arm here has them, the
no-BN Inception arm included: the comparison is BN against no BN on the same network.
"""

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from bn_repro.models.nonlinearities import get_nonlinearity
from bn_repro.nn import normalization as norm_lib
from bn_repro.nn import xla_cpu

STEMS = ('plain', 'separable', 'small')
_KERNEL_INIT = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')

# (name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj, stride);
# a pool proj of 0 means a pass-through pool branch; #1x1 = 0 means no 1x1 branch.
MODULES = (
  ('3a', 64, 64, 64, 64, 96, 'avg', 32, 1),
  ('3b', 64, 64, 96, 64, 96, 'avg', 64, 1),
  ('3c', 0, 128, 160, 64, 96, 'max', 0, 2),
  ('4a', 224, 64, 96, 96, 128, 'avg', 128, 1),
  ('4b', 192, 96, 128, 96, 128, 'avg', 128, 1),
  ('4c', 160, 128, 160, 128, 160, 'avg', None, 1),  # None: config pool_proj_4cd.
  ('4d', 96, 128, 192, 160, 192, 'avg', None, 1),
  ('4e', 0, 128, 192, 192, 256, 'max', 0, 2),
  ('5a', 352, 192, 320, 160, 224, 'avg', 128, 1),
  ('5b', 352, 192, 320, 192, 224, 'max', 128, 1),
)


class ConvUnit(nn.Module):
  """Convolution, then BN (if enabled), then the nonlinearity: g(BN(W * u)).

  Input `(N, H, W, C_in)`; output `(N, H', W', features)`.
  """

  features: int
  kernel: int
  stride: int
  norm_kind: str  # A key of bn_repro.nn.normalization.NORMS.
  norm: functools.partial | None  # Its layer with the config's fields, or None for none.
  nonlinearity: str
  conv_bias: bool
  # > 0: a separable convolution: a depthwise `kernel` x `kernel` convolution with this
  # channel multiplier, then a 1x1 convolution to `features`, then BN and g.
  depthwise_multiplier: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel, stride = self.kernel, self.stride
    if self.depthwise_multiplier:  # TF-slim's separable_conv2d: depthwise, then 1x1; no
      if norm_lib.get_norm(self.norm_kind).weight_norm:  # normalization in between.
        raise ValueError("The 'separable' stem has no weight-normalized form; use another stem.")
      x = nn.Conv(
        x.shape[-1] * self.depthwise_multiplier,
        (kernel, kernel),
        strides=stride,
        padding='SAME',
        feature_group_count=x.shape[-1],
        use_bias=False,
        kernel_init=_KERNEL_INIT,
        dtype=x.dtype,
        name='depthwise',
      )(x)
      kernel, stride = 1, 1  # The pointwise convolution.
    x = norm_lib.linear_layer(
      self.norm_kind,
      self.features,
      use_bias=self.conv_bias,  # WN alone keeps b whatever this says (its init sets it).
      kernel_init=_KERNEL_INIT,
      kernel_size=(kernel, kernel),
      strides=stride,
      dtype=x.dtype,
    )(x)
    if self.norm is not None:
      x = self.norm()(x)
    return get_nonlinearity(self.nonlinearity)(x)


def _pool(x: jax.Array, kind: str, stride: int) -> jax.Array:
  if kind == 'max':
    return xla_cpu.max_pool(x, 3, stride)
  # Dividing by the per-window counts promotes to float32; keep the compute dtype.
  pooled = nn.avg_pool(x, (3, 3), strides=(stride, stride), padding='SAME', count_include_pad=False)
  return pooled.astype(x.dtype)


def local_response_norm(
  x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
) -> jax.Array:
  """Across-channel LRN of GoogLeNet (Krizhevsky et al. 2012), for the no-BN Inception arm.

  b_c = a_c / (bias + alpha/size * sum_{|c'-c| <= size//2} a_c'^2)^beta, on `(N, H, W, C)`.
  """
  squared = jnp.square(x)
  half = size // 2
  padded = jnp.pad(squared, ((0, 0), (0, 0), (0, 0), (half, half)))
  window = sum(padded[..., i : i + x.shape[-1]] for i in range(size))
  return x / jnp.power(bias + alpha / size * window, beta)


class InceptionModule(nn.Module):
  """One row of the table: 1x1, 3x3, double-3x3 and pool branches, concatenated on channels."""

  spec: tuple
  width: float
  unit: functools.partial  # ConvUnit with the normalization and nonlinearity bound.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, n1x1, n3r, n3, nd3r, nd3, pool, proj, stride = self.spec

    def w(c):
      return max(1, round(c * self.width))

    branches = []
    if n1x1:
      branches.append(self.unit(w(n1x1), 1, 1, name='1x1')(x))
    b = self.unit(w(n3r), 1, 1, name='3x3_reduce')(x)
    branches.append(self.unit(w(n3), 3, stride, name='3x3')(b))
    b = self.unit(w(nd3r), 1, 1, name='double_3x3_reduce')(x)
    b = self.unit(w(nd3), 3, 1, name='double_3x3_a')(b)
    branches.append(self.unit(w(nd3), 3, stride, name='double_3x3_b')(b))
    b = _pool(x, pool, stride)
    if proj:
      b = self.unit(w(proj), 1, 1, name='pool_proj')(b)
    branches.append(b)
    return jnp.concatenate(branches, axis=-1)


class BNInception(nn.Module):
  """The appendix network. Images `(N, H, W, 3)` -> logits `(N, num_classes)`.

  Attributes:
    num_classes: classifier outputs (1000 for ImageNet).
    nonlinearity: 'relu' (the paper), 'sigmoid' (BN-x5-Sigmoid), 'tanh', ...
    norm: `config.model.norm`: the normalization kind (`kind`: 'batch', BN before every
      nonlinearity; 'none', Inception; or another key of `bn_repro.nn.normalization.NORMS`,
      as in the WN study) and its layer's fields.
    dropout_rate: before the classifier (Inception: 0.4; the BN variants remove it).
    lrn: local response normalization after the stem convolutions (Inception only).
    stem, pool_proj_4cd, conv_bias: the table's readings (module docstring).
    width: multiplier on every convolution's channels (1.0 = the paper's).
    compute_dtype: 'float32', or 'bfloat16' for mixed precision (convolutions and
      activations; parameters, BN statistics and logits stay float32).
    axis_name: the data-parallel mesh axis, passed to BatchNorm.
  """

  num_classes: int
  nonlinearity: str = 'relu'
  norm: Mapping[str, object] = FrozenDict({'kind': 'batch'})
  dropout_rate: float = 0.0
  lrn: bool = False
  stem: str = 'plain'
  pool_proj_4cd: int = 128
  conv_bias: bool = False
  width: float = 1.0
  compute_dtype: str = 'float32'
  axis_name: str | None = None

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool, batch_statistics: bool | None = None
  ) -> jax.Array:
    """Images `(N, H, W, C)` -> logits `(N, num_classes)`.

    `train` switches training behaviour (dropout, BN's batch statistics);
    `batch_statistics` overrides BN's choice alone, leaving dropout off when not `train`
    (population statistics, batch-statistics inference). Multi-crop batches
    `(N, crops, H, W, C)` must be flattened to `(N * crops, H, W, C)` by the caller.
    """
    if x.ndim != 4:
      raise ValueError(
        f'BNInception input shape {x.shape}: expected images (N, H, W, C); flatten '
        'multi-crop batches (N, crops, H, W, C) to (N * crops, H, W, C).'
      )
    if self.stem not in STEMS:
      raise ValueError(f'Unknown stem {self.stem!r}; expected one of {STEMS}.')
    norm = norm_lib.make_norm(
      self.norm,
      batch_statistics=train if batch_statistics is None else batch_statistics,
      axis_name=self.axis_name,
    )
    unit = functools.partial(
      ConvUnit,
      norm_kind=self.norm['kind'],
      norm=norm,
      nonlinearity=self.nonlinearity,
      conv_bias=self.conv_bias,
    )

    def w(c):
      return max(1, round(c * self.width))

    dtype = jnp.dtype(self.compute_dtype)
    x = x.astype(dtype)
    if self.stem == 'small':
      x = unit(w(64), 3, 2, name='conv1')(x)
    elif self.stem == 'separable':
      x = unit(w(64), 7, 2, depthwise_multiplier=8, name='conv1')(x)
    else:
      x = unit(w(64), 7, 2, name='conv1')(x)
    if self.stem != 'small':
      x = _pool(x, 'max', 2)
    if self.lrn:
      x = local_response_norm(x)
    x = unit(w(64), 1, 1, name='conv2_reduce')(x)
    x = unit(w(192), 3, 1, name='conv2')(x)
    if self.lrn:
      x = local_response_norm(x)
    if self.stem != 'small':
      x = _pool(x, 'max', 2)
    for spec in MODULES:
      if spec[7] is None:
        spec = spec[:7] + (self.pool_proj_4cd,) + spec[8:]
      x = InceptionModule(spec, self.width, unit, name=f'inception_{spec[0]}')(x)
    x = jnp.mean(x, axis=(1, 2))  # The 7x7 average pool at 224 (global at any size).
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=dtype, name='logits')(x).astype(jnp.float32)


def count_parameters(params: object) -> int:
  return sum(p.size for p in jax.tree.leaves(params))


def layer_table(model: BNInception, image_size: int = 224) -> list[tuple[str, tuple, int]]:
  """(layer name, output shape, parameters) for the model's top-level layers at `image_size`."""
  x = jnp.zeros((1, image_size, image_size, 3))
  rows = []
  shapes = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    is_top_level = isinstance(module.parent, type(model))
    if is_top_level and module.name is not None and context.method_name == '__call__':
      shapes[module.name] = out.shape
    return out

  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  params = variables['params']
  for name, shape in shapes.items():
    rows.append((name, shape, count_parameters(params.get(name, {}))))
  return rows
