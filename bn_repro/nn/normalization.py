"""The normalization registry: every kind a model offers, what the models and the training
loop need to know of it, and the layers it builds.

`config.model.norm` is one normalization: `kind` (a key of `NORMS`) and its layer's fields
(`--config.model.norm.kind=mean_only_batch`, `--config.model.norm.momentum=0.9`). The configs
give every kind BatchNorm's fields, so that switching the kind on the command line keeps the
paper's BN settings; a kind reads only the fields its layer has.

- 'none': y = g(W u + b), the paper's baselines.
- 'batch': y = g(BN(W u)), Algorithm 1 on the pre-activation (Sec. 3.2).
- 'mean_only_batch': y = g(gamma (W u - E[W u]) + beta): BN without the division
  by the standard deviation (the paper's Sec. 2 example normalizes this way).
- 'weight': weight normalization, y = g(W u + b) with w = s v/||v|| per output
  unit (Salimans & Kingma 2016, eq. 2) and data-dependent initialization.
- 'weight_mean_only_batch': WN followed by mean-only BN (Salimans & Kingma 2016,
  Sec. 3): WN supplies the scale s, mean-only BN the centring and beta.
- 'batch_renorm': y = g(BRN(W u)), Batch Renormalization (Ioffe 2017): BN corrected
  toward its moving averages by r and d, clipped on a schedule.
- 'group': y = g(GN(W u)), group normalization per example (Wu & He 2018), G =
  `num_groups` channel groups; 'layer' is G = 1 (LayerNorm), 'instance' G = C
  (InstanceNorm). No batch statistics: training and inference agree.

A new normalizer is its layer module and one `NORMS` entry: its `layer` builds the
normalization layer that follows each linear layer from `config.model.norm`, and its flags
tell the models (weight-normalized linear layers? a bias?) and the loop (running statistics
for Algorithm 2? a data batch at initialization?) what they need. Nothing outside this
registry compares normalization names.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax.numpy as jnp

from bn_repro.nn import xla_cpu
from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.batch_renorm import BatchRenorm
from bn_repro.nn.group_norm import GroupNorm
from bn_repro.nn.weight_norm import WeightNormConv, WeightNormDense

# (config.model.norm, batch_statistics, axis_name) -> the layer, unbound, or None.
LayerFactory = Callable[[Mapping[str, object], bool, str | None], functools.partial | None]


@dataclasses.dataclass(frozen=True)
class Norm:
  """One normalization kind.

  Attributes:
    layer: builds the normalization layer after each linear layer (None: none).
    weight_norm: the linear layers are weight-normalized (their own module, with a
      data-dependent initialization).
    running_statistics: its layers keep running statistics in `batch_stats` (Algorithm 2
      can replace them with population statistics).
    may_sit_on_input: it may normalize the layer input u instead of W u (the MLP's
      `bn_position='input'`, Sec. 3.2's alternative).
  """

  layer: LayerFactory | None
  weight_norm: bool = False
  running_statistics: bool = False
  may_sit_on_input: bool = False

  @property
  def needs_data_init(self) -> bool:
    """Whether `init` needs a batch of real data (WN's data-dependent initialization)."""
    return self.weight_norm

  @property
  def reparameterized_bias(self) -> bool:
    """Whether the linear layers' bias b is part of the reparameterization (WN without BN,
    whose b the data-dependent init sets), so a layer keeps it whatever the model asks."""
    return self.weight_norm and self.layer is None


def fields_of(layer: type, norm: Mapping[str, object]) -> dict[str, object]:
  """The entries of `norm` (`config.model.norm`) that are fields of the module `layer`."""
  names = {field.name for field in dataclasses.fields(layer)}
  return {key: value for key, value in norm.items() if key in names}


def _batch_norm(*, mean_only: bool, use_scale: bool = True) -> LayerFactory:
  """`BatchNorm` with its fields from `config.model.norm` (momentum, epsilon, group_size,
  ...). `batch_statistics`: normalize with the mini-batch statistics and update the running
  averages (Algorithm 1), else with the stored statistics (Algorithm 2, step 11)."""

  def factory(norm: Mapping[str, object], batch_statistics: bool, axis_name: str | None):
    return functools.partial(
      BatchNorm,
      use_running_average=not batch_statistics,
      mean_only=mean_only,
      use_scale=use_scale,
      axis_name=axis_name,
      **fields_of(BatchNorm, norm),
    )

  return factory


def _batch_renorm(norm: Mapping[str, object], batch_statistics: bool, axis_name: str | None):
  """`BatchRenorm` with its fields from `config.model.norm` (momentum, epsilon, rmax, dmax,
  the schedule's steps, renorm_momentum)."""
  return functools.partial(
    BatchRenorm,
    use_running_average=not batch_statistics,
    axis_name=axis_name,
    **fields_of(BatchRenorm, norm),
  )


def _group_norm(num_groups: object = 'config') -> LayerFactory:
  """`GroupNorm` with `num_groups` from `config.model.norm` ('config'), or fixed: 1 for
  LayerNorm, None (one group per channel) for InstanceNorm."""

  def factory(norm: Mapping[str, object], batch_statistics: bool, axis_name: str | None):
    del batch_statistics, axis_name  # Per-example statistics: no batch, no devices.
    fields = fields_of(GroupNorm, norm)
    if num_groups != 'config':
      fields['num_groups'] = num_groups
    return functools.partial(GroupNorm, **fields)

  return factory


NORMS: dict[str, Norm] = {
  'none': Norm(layer=None),
  'batch': Norm(_batch_norm(mean_only=False), running_statistics=True, may_sit_on_input=True),
  'mean_only_batch': Norm(
    _batch_norm(mean_only=True), running_statistics=True, may_sit_on_input=True
  ),
  'weight': Norm(layer=None, weight_norm=True),
  # Mean-only BN under WN learns no gamma: WN's scale s plays that role.
  'weight_mean_only_batch': Norm(
    _batch_norm(mean_only=True, use_scale=False), weight_norm=True, running_statistics=True
  ),
  # Its moving averages are inference statistics, but of sigma, not Algorithm 2's variance.
  'batch_renorm': Norm(_batch_renorm),
  'group': Norm(_group_norm()),
  'layer': Norm(_group_norm(num_groups=1)),
  'instance': Norm(_group_norm(num_groups=None)),
}


def get_norm(kind: str) -> Norm:
  """The registry entry of `kind`.

  Raises:
    ValueError: `kind` is not registered, naming it and the registered kinds.
  """
  if kind not in NORMS:
    raise ValueError(f'Unknown normalization {kind!r}; expected one of {tuple(NORMS)}.')
  return NORMS[kind]


def make_norm(
  norm: Mapping[str, object], *, batch_statistics: bool, axis_name: str | None
) -> functools.partial | None:
  """The normalization layer of `norm` (`config.model.norm`: its `kind` and fields),
  unbound (the models name each instance), or None where the kind has none."""
  entry = get_norm(norm['kind'])
  return None if entry.layer is None else entry.layer(norm, batch_statistics, axis_name)


def linear_layer(
  kind: str,
  features: int,
  *,
  use_bias: bool,
  kernel_init: nn.initializers.Initializer,
  kernel_size: tuple[int, int] | None = None,
  strides: int = 1,
  dtype: jnp.dtype | None = None,
  name: str | None = None,
) -> nn.Module:
  """A dense layer (`kernel_size=None`) or SAME-padded NHWC convolution for `kind`.

  Weight-normalized layers draw their own direction v (N(0, 0.05^2)) and ignore
  `kernel_init`; they always learn s, and b if `use_bias` (or where b is part of the
  reparameterization), and compute in float32. `dtype` is the computation dtype of the plain
  layers (None: the input's).
  """
  norm = get_norm(kind)
  if norm.weight_norm:
    use_bias = use_bias or norm.reparameterized_bias
    if kernel_size is None:
      return WeightNormDense(features, use_bias=use_bias, name=name)
    return WeightNormConv(
      features, kernel_size=kernel_size, strides=strides, use_bias=use_bias, name=name
    )
  if kernel_size is None:
    return nn.Dense(features, use_bias=use_bias, kernel_init=kernel_init, dtype=dtype, name=name)
  return nn.Conv(
    features,
    kernel_size,
    strides=strides,
    padding='SAME',
    use_bias=use_bias,
    kernel_init=kernel_init,
    dtype=dtype,
    conv_general_dilated=xla_cpu.conv_general_dilated,  # 1x1 convolutions as matmuls.
    name=name,
  )
