"""Normalization layers under study: batch normalization (Ioffe & Szegedy 2015) and
weight normalization (Salimans & Kingma 2016).

`BatchNorm` is a Flax linen module whose running statistics live in the mutable
`batch_stats` collection, with constructor keywords compatible with
`flax.linen.BatchNorm` where the meaning is the same, plus `group_size`.

Statistics modes (paper references are to arXiv:1502.03167v3):
- `group_size=None, axis_name=None`: Algorithm 1 over the whole local batch.
- `group_size=None, axis_name='batch'`: Algorithm 1 over the global batch, the
  statistics averaged across the devices of the mesh axis (synchronized BN).
- `group_size=g`: Algorithm 1 separately over each group of g consecutive
  examples (the paper's per-worker mini-batch of Sec. 4.2). Groups never straddle
  devices, so for a fixed g the result does not depend on the device count.

Running statistics follow Algorithm 2: the mean of batch means, and the mean of
batch variances made unbiased with m/(m-1), where m counts the values behind
each statistic (examples times spatial positions for convolutions, Sec. 3.2).
They are exponential moving averages, which the paper allows "to track the
accuracy of a model as it trains".
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _reduction_axes(ndim: int, feature_axes: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(i for i in range(ndim) if i not in feature_axes)


def _normalize_axes(axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  return tuple(a % ndim for a in axes)


class BatchNorm(nn.Module):
  """Batch normalization, Algorithms 1 (training) and 2 (inference) of the paper.

  Input: any shape `(N, ..., C)`; with the default `axis=-1` there is one
  statistic, gamma and beta per feature `C`, reduced over N and every spatial
  axis (per feature map for convolutions). Output has the input's shape and dtype.
  Statistics are always computed in float32.

  Attributes:
    use_running_average: if True, normalize with the stored running statistics
      (Algorithm 2, step 11) instead of the mini-batch statistics.
    axis: the feature axis or axes.
    momentum: decay of the running averages: `ra = momentum * ra + (1 - momentum) * batch`.
    epsilon: added to the variance for numerical stability (the paper's eps).
    use_bias: learn beta.
    use_scale: learn gamma.
    axis_name: the mesh axis of data parallelism. With `group_size=None` the
      statistics are averaged over it (global-batch BN); with a group size only
      the running averages are.
    group_size: examples per statistics group; `None` for the whole batch.
    mean_only: subtract the mean but do not divide by the standard deviation
      (Salimans & Kingma 2016's mean-only BN, used with weight normalization,
      which supplies the scale: pair it with `use_scale=False`).
    fast_variance: compute the batch variance as E[x^2] - E[x]^2 in one pass over x
      (as flax's default does) instead of Algorithm 1's two passes: faster for large
      activations (benchmarks/bn_layer.py), less precise when |mean| >> std.
    stop_gradient: 'none' (Algorithm 1: backprop through the statistics), 'mean' or
      'mean_and_variance': treat those batch statistics as constants in the backward
      pass, the flawed scheme of the paper's Sec. 2 example (for ablations only).
    bias_init, scale_init: initializers of beta (zeros) and gamma (ones).
  """

  use_running_average: bool | None = None
  axis: int | Sequence[int] = -1
  momentum: float = 0.99
  epsilon: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True
  axis_name: str | None = None
  group_size: int | None = None
  mean_only: bool = False
  stop_gradient: str = 'none'
  fast_variance: bool = False
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  scale_init: nn.initializers.Initializer = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    """Normalizes `x` of shape `(N, ..., C)`; returns an array of the same shape."""
    if self.stop_gradient not in STOP_GRADIENT_MODES:
      raise ValueError(
        f'BatchNorm stop_gradient={self.stop_gradient!r}; expected one of {STOP_GRADIENT_MODES}.'
      )
    use_running_average = nn.merge_param(
      'use_running_average', self.use_running_average, use_running_average
    )
    feature_axes = _normalize_axes(self.axis, x.ndim)
    if 0 in feature_axes:
      raise ValueError(f'BatchNorm axis {self.axis} includes the batch axis 0.')
    feature_shape = tuple(x.shape[a] for a in feature_axes)

    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, feature_shape, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, feature_shape, jnp.float32)

    # Initialization runs outside the device mesh, where no axis is bound.
    axis_name = None if self.is_initializing() else self.axis_name
    scale = (
      self.param('scale', self.scale_init, feature_shape, jnp.float32) if self.use_scale else None
    )
    bias = self.param('bias', self.bias_init, feature_shape, jnp.float32) if self.use_bias else None
    x32 = x.astype(jnp.float32)
    if use_running_average:
      y = self._normalize(x32, ra_mean.value, ra_var.value, scale, bias, feature_axes)
      return y.astype(x.dtype)

    if self.group_size is None:
      statistics_input, statistics_feature_axes = x32, feature_axes
    else:
      if x.shape[0] % self.group_size:
        raise ValueError(
          f'BatchNorm group_size={self.group_size} does not divide the local batch '
          f'of {x.shape[0]} examples; choose a group size that divides it.'
        )
      # (groups, group_size, ...): axis 0 indexes groups, every input axis moves up by one.
      statistics_input = x32.reshape((-1, self.group_size) + x.shape[1:])
      statistics_feature_axes = (0,) + tuple(a + 1 for a in feature_axes)
    mean, var, count = self._batch_statistics(statistics_input, statistics_feature_axes, axis_name)
    y = self._normalize(statistics_input, mean, var, scale, bias, statistics_feature_axes)
    if not self.is_initializing():
      batch_mean, unbiased_var = mean, var * (count / (count - 1.0))
      if self.group_size is not None:  # The running averages average over the groups...
        batch_mean, unbiased_var = jnp.mean(batch_mean, axis=0), jnp.mean(unbiased_var, axis=0)
        if axis_name is not None:  # ...which differ by device; the running averages must not.
          batch_mean = lax.pmean(batch_mean, axis_name)
          unbiased_var = lax.pmean(unbiased_var, axis_name)
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * batch_mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased_var
    return y.reshape(x.shape).astype(x.dtype)

  def _normalize(
    self,
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    feature_axes: tuple[int, ...],
  ) -> jax.Array:
    """Algorithm 1, steps 3-4: gamma (x - mean) / sqrt(var + eps) + beta.

    Computed as x * s + (beta - mean * s) with the per-feature s = gamma / sqrt(var + eps),
    so the full-size arrays see one multiply-add (forward and backward): about twice as
    fast on CPU as normalizing first and scaling after (benchmarks/bn_layer.py). `mean`
    and `var` have the features' shape, with a leading group axis for grouped statistics.
    """
    s = jnp.ones_like(var) if self.mean_only else lax.rsqrt(var + self.epsilon)
    if scale is not None:
      s = s * scale
    shift = -mean * s
    if bias is not None:
      shift = shift + bias
    return x * _broadcast(s, x.ndim, feature_axes) + _broadcast(shift, x.ndim, feature_axes)

  def _maybe_stop(self, statistic: jax.Array, which: str) -> jax.Array:
    """`statistic` as a constant of the backward pass if `stop_gradient` covers `which`."""
    stopped = which in _STOPPED_STATISTICS[self.stop_gradient]
    return lax.stop_gradient(statistic) if stopped else statistic

  def _batch_statistics(
    self, x: jax.Array, feature_axes: tuple[int, ...], axis_name: str | None
  ) -> tuple[jax.Array, jax.Array, float]:
    """Algorithm 1, steps 1-2, on float32 `x`: the batch mean and biased variance.

    `feature_axes` are kept (with the group axis 0 for grouped statistics, whose
    statistics never cross devices); every other axis is reduced. Returns the mean and
    variance with the kept axes' shape and m, the values behind each statistic. The
    variance is the mean squared deviation from the mean (two passes), as Algorithm 1
    writes it, or with `fast_variance` E[x^2] - E[x]^2 (one pass, and one collective
    instead of two across devices), which loses precision when |mean| >> std.
    """
    reduce_axes = _reduction_axes(x.ndim, feature_axes)
    kept_shape = tuple(x.shape[a] for a in feature_axes)
    count = x.size / math.prod(kept_shape)
    cross_device = axis_name is not None and self.group_size is None
    if cross_device:
      count *= lax.axis_size(axis_name)
    if count < 2:
      raise ValueError(
        f'BatchNorm: m={count:g} value(s) per statistic (input {x.shape}, group_size='
        f'{self.group_size}); the unbiased variance m/(m-1) needs m >= 2: use at least 2 '
        'examples per statistics group.'
      )
    mean = jnp.mean(x, axis=reduce_axes)
    if self.fast_variance:
      mean_square = jnp.mean(jnp.square(x), axis=reduce_axes)
      if cross_device:
        mean, mean_square = lax.pmean((mean, mean_square), axis_name)
      # Var[x] = E[x^2] - E[x]^2, with the unstopped mean: its gradient is 2 (x - mean) / m,
      # as the two-pass form's, in every stop_gradient mode.
      var = jnp.maximum(mean_square - jnp.square(mean), 0.0)
      return self._maybe_stop(mean, 'mean'), self._maybe_stop(var, 'variance'), count
    if cross_device:
      mean = lax.pmean(mean, axis_name)
    mean = self._maybe_stop(mean, 'mean')
    var = jnp.mean(jnp.square(x - _broadcast(mean, x.ndim, feature_axes)), axis=reduce_axes)
    if cross_device:
      var = lax.pmean(var, axis_name)
    return mean, self._maybe_stop(var, 'variance'), count


# stop_gradient mode -> the batch statistics it treats as constants in the backward pass.
_STOPPED_STATISTICS = {'none': (), 'mean': ('mean',), 'mean_and_variance': ('mean', 'variance')}
STOP_GRADIENT_MODES = tuple(_STOPPED_STATISTICS)


def _broadcast(stat: jax.Array, ndim: int, feature_axes: tuple[int, ...]) -> jax.Array:
  """Reshapes a per-feature array to broadcast against an `ndim` input."""
  shape = [1] * ndim
  for i, a in enumerate(feature_axes):
    shape[a] = stat.shape[i]
  return stat.reshape(shape)


# XLA:CPU (YNNPACK, jaxlib 0.10.2) computes the kernel gradient of a large convolution
# (batch 32) up to 3.5x faster as a sum over chunks of 4 examples than over the whole
# batch at once (benchmarks/README.md, `benchmarks.conv_layer`). Chunking pays from 14x14
# output pixels and 25M multiply-adds per example (BN-Inception at 224 from the stem to
# inception_4e's larger 3x3s); below that it costs up to 20% (the small Fashion-MNIST proxy).
KERNEL_GRADIENT_CHUNK = 4  # Examples per chunk.
KERNEL_GRADIENT_MIN_PIXELS = 14 * 14  # Output pixels per example.
KERNEL_GRADIENT_MIN_MACS = 25_000_000  # Multiply-adds per example.


def _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  return lax.conv_general_dilated(
    lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers, precision=precision
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_chunked_kernel_gradient(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  """`lax.conv_general_dilated` of batch-first `lhs`; its kernel gradient is the sum of the
  kernel gradients of chunks of KERNEL_GRADIENT_CHUNK examples (the same sum, added in
  another order)."""
  return _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)


def _conv_chunked_forward(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  y = _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)
  return y, (lhs, rhs)


def _conv_chunked_backward(window_strides, padding, dimension_numbers, precision, residuals, dy):
  lhs, rhs = residuals

  def convolve(lhs, rhs):
    return _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)

  _, lhs_vjp = jax.vjp(lambda lhs: convolve(lhs, rhs), lhs)
  (d_lhs,) = lhs_vjp(dy)
  d_rhs = jnp.zeros_like(rhs)
  for start in range(0, lhs.shape[0], KERNEL_GRADIENT_CHUNK):
    chunk = slice(start, start + KERNEL_GRADIENT_CHUNK)
    _, rhs_vjp = jax.vjp(lambda rhs, chunk=chunk: convolve(lhs[chunk], rhs), rhs)
    d_rhs = d_rhs + rhs_vjp(dy[chunk])[0]
  return d_lhs, d_rhs


_conv_chunked_kernel_gradient.defvjp(_conv_chunked_forward, _conv_chunked_backward)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: object,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: lax.ConvDimensionNumbers | None = None,
  feature_group_count: int = 1,
  precision: object = None,
) -> jax.Array:
  """`lax.conv_general_dilated` for channels-last inputs, with 1x1 convolutions as matmuls.

  A 1x1, stride-1, unpadded, ungrouped, undilated convolution of `(N, H, W, C_in)` by an HWIO
  kernel `(1, 1, C_in, C_out)` is the matrix product of `(N*H*W, C_in)` by
  `(C_in, C_out)`; XLA:CPU runs it that way about 2.5x faster, forward and backward, than
  as a convolution (benchmarks/README.md). On CPU, an ungrouped, undilated convolution
  with at least KERNEL_GRADIENT_MIN_PIXELS output pixels and KERNEL_GRADIENT_MIN_MACS
  multiply-adds per example computes its kernel gradient in chunks of
  KERNEL_GRADIENT_CHUNK examples (`_conv_chunked_kernel_gradient`).
  Any other convolution goes to `lax.conv_general_dilated` unchanged. Takes flax's
  `nn.Conv(conv_general_dilated=...)`.
  """
  numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  channels_last = (
    numbers.lhs_spec == (0, lhs.ndim - 1, *range(1, lhs.ndim - 1))
    and numbers.rhs_spec == (rhs.ndim - 1, rhs.ndim - 2, *range(rhs.ndim - 2))
    and numbers.out_spec == numbers.lhs_spec
  )
  plain = (  # Channels-last, ungrouped, undilated.
    channels_last
    and feature_group_count == 1
    and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  )
  no_padding = isinstance(padding, str) or all(tuple(p) == (0, 0) for p in padding)
  pointwise = (  # For a 1x1 kernel 'SAME' and 'VALID' both mean no padding.
    plain
    and no_padding
    and all(k == 1 for k in rhs.shape[:-2])
    and all(s == 1 for s in window_strides)
  )
  if pointwise:
    kernel = rhs.reshape(rhs.shape[-2:])
    return lax.dot_general(lhs, kernel, (((lhs.ndim - 1,), (0,)), ((), ())), precision=precision)
  output_pixels = math.prod(  # Per example, with SAME padding (enough for the threshold).
    -(-d // s) for d, s in zip(lhs.shape[1:-1], window_strides, strict=True)
  )
  chunked_kernel_gradient = (
    jax.default_backend() == 'cpu'
    and plain
    and lhs.shape[0] > KERNEL_GRADIENT_CHUNK
    and output_pixels >= KERNEL_GRADIENT_MIN_PIXELS
    and output_pixels * rhs.size >= KERNEL_GRADIENT_MIN_MACS
  )
  if chunked_kernel_gradient:
    if not isinstance(padding, str):
      padding = tuple(tuple(p) for p in padding)
    return _conv_chunked_kernel_gradient(
      lhs, rhs, tuple(window_strides), padding, numbers, precision
    )
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    precision=precision,
  )


def _same_padding(
  shape: tuple[int, ...], window: int, stride: int
) -> tuple[int, int, tuple[tuple[int, int], ...]]:
  """Output height and width, and the (-inf) padding of SAME pooling on NHWC `shape`."""
  _, h, w, _ = shape
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + window - h, 0)
  pad_w = max((out_w - 1) * stride + window - w, 0)
  padding = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
  return out_h, out_w, padding


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """SAME max-pooling of NHWC `x` over `window` x `window` with `stride`.

  The same values and gradient as `flax.linen.max_pool` (each output's gradient goes to
  the first maximum of its window, in row-major order), but the gradient is computed as
  one masked add per window offset into its stride phase instead of XLA's
  select-and-scatter, which XLA:CPU runs 9-21x slower than oneDNN: this is 4-6x faster
  than flax's (benchmarks/README.md, `benchmarks.pool_layer`).
  """
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding='SAME')


def _max_pool_forward(x, window, stride):
  y = max_pool(x, window, stride)
  return y, (x, y)


def _max_pool_backward(window, stride, residuals, dy):
  x, y = residuals
  n, h, w, c = x.shape
  out_h, out_w, padding = _same_padding(x.shape, window, stride)
  padded = jnp.pad(x, padding, constant_values=-jnp.inf)
  span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
  # The padded input splits into stride x stride phases (row % stride, column % stride);
  # window offset (i, j) only reaches phase (i % stride, j % stride), shifted by
  # (i // stride, j // stride) on that phase's grid, so each offset adds a dense block.
  phase_h, phase_w = -(-padded.shape[1] // stride), -(-padded.shape[2] // stride)
  routed = jnp.zeros(y.shape, bool)  # Outputs whose gradient already has its input.
  phases = {}
  for i in range(window):
    for j in range(window):
      candidate = lax.slice(
        padded, (0, i, j, 0), (n, i + span_h, j + span_w, c), (1, stride, stride, 1)
      )
      first_max = (candidate == y) & ~routed
      routed = routed | first_max
      row, col = i // stride, j // stride
      block = lax.pad(
        jnp.where(first_max, dy, 0.0),
        jnp.zeros((), dy.dtype),
        ((0, 0, 0), (row, phase_h - row - out_h, 0), (col, phase_w - col - out_w, 0), (0, 0, 0)),
      )
      phase = (i % stride, j % stride)
      phases[phase] = phases[phase] + block if phase in phases else block
  unreached = jnp.zeros((n, phase_h, phase_w, c), dy.dtype)  # Phases no offset reaches.
  interleaved = jnp.stack(
    [
      jnp.stack([phases.get((p, q), unreached) for q in range(stride)], axis=3)
      for p in range(stride)
    ],
    axis=2,
  )  # (n, phase_h, stride, phase_w, stride, c)
  dx = interleaved.reshape(n, phase_h * stride, phase_w * stride, c)
  top, left = padding[1][0], padding[2][0]
  return (dx[:, top : top + h, left : left + w, :],)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)


class _WeightNorm(nn.Module):
  """w = g * v / ||v|| per output unit (Salimans & Kingma 2016, eq. 2), then conv or dense.

  `v` is drawn from N(0, 0.05^2) as in the authors' code. With `data_init`, the first
  call under `init` applies the paper's data-dependent initialization to its input
  batch: t = x v/||v||, g = 1/std(t), b = -mean(t)/std(t) per output unit, so the
  layer's pre-activations on that batch have mean 0 and std 1; layers initialized in
  sequence (as `model.init` runs them) each see the already-initialized earlier ones.
  Without `use_bias` (WN followed by mean-only BN, which supplies beta) there is no b.
  """

  features: int
  kernel_size: tuple[int, ...] = ()  # () for dense; (kh, kw) for convolution.
  strides: int = 1
  padding: str = 'SAME'
  use_bias: bool = True
  data_init: bool = True
  epsilon: float = 1e-6

  def _apply_kernel(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    if not self.kernel_size:
      return x @ kernel
    return conv_general_dilated(
      x,
      kernel,
      (self.strides,) * len(self.kernel_size),
      self.padding,
      dimension_numbers=lax.conv_dimension_numbers(x.shape, kernel.shape, ('NHWC', 'HWIO', 'NHWC')),
    )

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`(N, in)` -> `(N, features)`, or `(N, H, W, in)` -> `(N, H', W', features)`."""
    shape = (*self.kernel_size, x.shape[-1], self.features)
    v = self.param('kernel', nn.initializers.normal(0.05), shape, jnp.float32)
    norm_axes = tuple(range(v.ndim - 1))  # All but the output unit.
    direction = v * lax.rsqrt(jnp.sum(jnp.square(v), axis=norm_axes, keepdims=True))
    t = self._apply_kernel(x.astype(jnp.float32), direction)
    if self.data_init and self.is_initializing():
      stat_axes = tuple(range(t.ndim - 1))
      std = jnp.std(t, axis=stat_axes) + self.epsilon
      g = self.param('scale', lambda *_: 1.0 / std)
      if self.use_bias:
        b = self.param('bias', lambda *_: -jnp.mean(t, axis=stat_axes) / std)
    else:
      g = self.param('scale', nn.initializers.ones, (self.features,), jnp.float32)
      if self.use_bias:
        b = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    # g scales the unit-norm direction: x (g v/||v||) = g (x v/||v||).
    y = t * g + b if self.use_bias else t * g
    return y.astype(x.dtype)


class WeightNormDense(_WeightNorm):
  """Dense layer with weight normalization: `(N, in)` -> `(N, features)`."""


class WeightNormConv(_WeightNorm):
  """Convolution with weight normalization, per output feature map (NHWC, HWIO)."""

  kernel_size: tuple[int, ...] = (3, 3)
