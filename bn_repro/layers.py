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
    reduce_axes = _reduction_axes(x.ndim, feature_axes)

    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, feature_shape, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, feature_shape, jnp.float32)

    # Initialization runs outside the device mesh, where no axis is bound.
    axis_name = None if self.is_initializing() else self.axis_name
    x32 = x.astype(jnp.float32)
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
      y = x32 - _broadcast(mean, x.ndim, feature_axes)
      if not self.mean_only:
        y = y * lax.rsqrt(_broadcast(var, x.ndim, feature_axes) + self.epsilon)
    else:
      y, batch_mean, batch_var, count = self._normalize_with_batch_statistics(
        x32, feature_axes, reduce_axes, axis_name
      )
      if not self.is_initializing():
        unbiased_var = batch_var * (count / (count - 1.0))
        if self.group_size is not None and axis_name is not None:
          # Groups differ by device; the running averages must not.
          batch_mean = lax.pmean(batch_mean, axis_name)
          unbiased_var = lax.pmean(unbiased_var, axis_name)
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * batch_mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased_var

    if self.use_scale:
      scale = self.param('scale', self.scale_init, feature_shape, jnp.float32)
      y = y * _broadcast(scale, x.ndim, feature_axes)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, feature_shape, jnp.float32)
      y = y + _broadcast(bias, x.ndim, feature_axes)
    return y.astype(x.dtype)

  def _maybe_stop(self, statistic: jax.Array, which: str) -> jax.Array:
    """`statistic` as a constant of the backward pass if `stop_gradient` covers `which`."""
    stopped = which in _STOPPED_STATISTICS[self.stop_gradient]
    return lax.stop_gradient(statistic) if stopped else statistic

  def _normalize_with_batch_statistics(
    self,
    x: jax.Array,
    feature_axes: tuple[int, ...],
    reduce_axes: tuple[int, ...],
    axis_name: str | None,
  ) -> tuple[jax.Array, jax.Array, jax.Array, float]:
    """Algorithm 1, steps 1-3, on float32 `x`.

    Returns:
      xhat (shape of x; only centered if `mean_only`), the mean and biased
      variance of the batch (shape of the features, averaged over groups), and m,
      the values behind each statistic.
    """
    if self.group_size is None:
      mean = jnp.mean(x, axis=reduce_axes)
      if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
      mean = self._maybe_stop(mean, 'mean')
      centered = x - _broadcast(mean, x.ndim, feature_axes)
      var = jnp.mean(jnp.square(centered), axis=reduce_axes)
      count = x.size / var.size
      if axis_name is not None:
        var = lax.pmean(var, axis_name)
        count *= lax.axis_size(axis_name)
      var = self._maybe_stop(var, 'variance')
      if self.mean_only:
        return centered, mean, var, count
      xhat = centered * lax.rsqrt(_broadcast(var, x.ndim, feature_axes) + self.epsilon)
      return xhat, mean, var, count

    batch = x.shape[0]
    if batch % self.group_size:
      raise ValueError(
        f'BatchNorm group_size={self.group_size} does not divide the local batch '
        f'of {batch} examples; choose a group size that divides it.'
      )
    grouped = x.reshape((batch // self.group_size, self.group_size) + x.shape[1:])
    # In `grouped`, axis 0 indexes groups and every input axis moved up by one.
    group_feature_axes = tuple(a + 1 for a in feature_axes)
    group_reduce_axes = tuple(a + 1 for a in reduce_axes)
    mean = self._maybe_stop(jnp.mean(grouped, axis=group_reduce_axes, keepdims=True), 'mean')
    centered = grouped - mean
    var = jnp.mean(jnp.square(centered), axis=group_reduce_axes, keepdims=True)
    var = self._maybe_stop(var, 'variance')
    xhat = (centered if self.mean_only else centered * lax.rsqrt(var + self.epsilon)).reshape(
      x.shape
    )
    count = grouped[0].size / _feature_size(grouped.shape, group_feature_axes)
    squeeze = tuple(a for a in range(grouped.ndim) if a not in group_feature_axes)
    return xhat, jnp.mean(mean, axis=squeeze), jnp.mean(var, axis=squeeze), count


# stop_gradient mode -> the batch statistics it treats as constants in the backward pass.
_STOPPED_STATISTICS = {'none': (), 'mean': ('mean',), 'mean_and_variance': ('mean', 'variance')}
STOP_GRADIENT_MODES = tuple(_STOPPED_STATISTICS)


def _feature_size(shape: tuple[int, ...], feature_axes: tuple[int, ...]) -> int:
  size = 1
  for a in feature_axes:
    size *= shape[a]
  return size


def _broadcast(stat: jax.Array, ndim: int, feature_axes: tuple[int, ...]) -> jax.Array:
  """Reshapes a per-feature array to broadcast against an `ndim` input."""
  shape = [1] * ndim
  for i, a in enumerate(feature_axes):
    shape[a] = stat.shape[i]
  return stat.reshape(shape)


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
    return lax.conv_general_dilated(
      x,
      kernel,
      (self.strides,) * len(self.kernel_size),
      self.padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
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
