"""Batch normalization (Ioffe & Szegedy 2015), Algorithms 1 and 2.

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
accuracy of a model as it trains". `running_variance='biased'` averages the biased
batch variances instead, as Keras and flax do (bn_repro/nn/presets.py names each
library's conventions).

Noisy BN (Santurkar et al. 2018, Sec. 2.1, "BatchNorm with noise": covariate shift
injected on purpose after every BN layer, training only): `noise_mean` = n_mu > 0 or
`noise_std` = n_sigma > 0 adds to BN's output y, per example i and feature j,

    y'_ij = y_ij + m_ij,   m_ij ~ N(mu_tj, sigma_tj^2) i.i.d.,
    mu_tj ~ U(-n_mu, n_mu),   sigma_tj ~ U(0, n_sigma),

with mu_t and sigma_t, the noise distribution's mean and spread per feature, redrawn at
every step t: the distribution of each BN output moves from step to step, by
|mu_t - mu_t+1| = 2 n_mu / 3 on average in location. This is our reading of their
"i.i.d. noise with non-zero mean and non-unit variance, whose parameters change at every
time step" (the summary in shared/PAPER.md, Sec. 5). The noise is drawn from the caller's
`bn_noise` random stream (`apply(..., rngs={'bn_noise': key})`, which training steps
pass); without that stream, in inference (running statistics) and at initialization,
no noise is added.

The fixed-noise control (`noise_redraw='fixed'`) draws mu_j and sigma_j once, at
initialization, from the same uniform distributions and keeps them (in `batch_stats` as
`fixed_noise`, `(2, C)`, never updated): each unit's output distribution is moved once
and then holds still, while the per-example draws m_ij stay fresh at every step. Against
'step' (the redrawn parameters above) it separates the cost of the shift from the cost of
the noise.
"""

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
    running_variance: 'unbiased' (Algorithm 2's m/(m-1) correction, as torch) or 'biased'
      (Keras, flax): which batch variance the running average takes in. Normalization in
      training always uses the biased batch variance (Algorithm 1).
    freeze_from: FrozenBN (as detectron2's FrozenBatchNorm2d, from a step on): from this
      training step on, normalize with the running statistics, which stop updating, as
      inference does; None: never. Counted by the layer (`batch_stats` 'step').
    freeze_affine: with `freeze_from`, also hold gamma and beta out of the gradient then.
    fast_variance: compute the batch variance as E[x^2] - E[x]^2 in one pass over x
      (as flax's default does) instead of Algorithm 1's two passes: faster for large
      activations (benchmarks/bn_layer.py), less precise when |mean| >> std.
    stop_gradient: 'none' (Algorithm 1: backprop through the statistics), 'mean' or
      'mean_and_variance': treat those batch statistics as constants in the backward
      pass, the flawed scheme of the paper's Sec. 2 example (for ablations only).
    noise_mean, noise_std: n_mu and n_sigma of noisy BN (module docstring); 0: no noise.
    noise_redraw: 'step' (Santurkar et al.'s noisy BN: mu_j, sigma_j redrawn every step) or
      'fixed' (drawn once at initialization: the control without a shift).
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
  running_variance: str = 'unbiased'
  freeze_from: int | None = None
  freeze_affine: bool = False
  stop_gradient: str = 'none'
  fast_variance: bool = False
  noise_mean: float = 0.0
  noise_std: float = 0.0
  noise_redraw: str = 'step'
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  scale_init: nn.initializers.Initializer = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    """Normalizes `x` of shape `(N, ..., C)`; returns an array of the same shape."""
    if self.stop_gradient not in STOP_GRADIENT_MODES:
      raise ValueError(
        f'BatchNorm stop_gradient={self.stop_gradient!r}; expected one of {STOP_GRADIENT_MODES}.'
      )
    if self.running_variance not in RUNNING_VARIANCES:
      raise ValueError(
        f'BatchNorm running_variance={self.running_variance!r}; expected one of '
        f'{RUNNING_VARIANCES}.'
      )
    if self.noise_redraw not in NOISE_REDRAW_MODES:
      raise ValueError(
        f'BatchNorm noise_redraw={self.noise_redraw!r}; expected one of {NOISE_REDRAW_MODES}.'
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
    fixed_noise = self._fixed_noise_parameters(feature_shape)
    if self.freeze_from is not None:  # FrozenBN counts its training steps.
      step = self.variable('batch_stats', 'step', jnp.zeros, (), jnp.int32)

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
    previous = (ra_mean.value, ra_var.value)
    if not self.is_initializing():
      batch_mean = mean
      batch_var = var * (count / (count - 1.0)) if self.running_variance == 'unbiased' else var
      if self.group_size is not None:  # The running averages average over the groups...
        batch_mean, batch_var = jnp.mean(batch_mean, axis=0), jnp.mean(batch_var, axis=0)
        if axis_name is not None:  # ...which differ by device; the running averages must not.
          batch_mean = lax.pmean(batch_mean, axis_name)
          batch_var = lax.pmean(batch_var, axis_name)
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * batch_mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * batch_var
    y = y.reshape(x.shape)
    if self.freeze_from is not None and not self.is_initializing():
      y = self._frozen_after(step, y, x32, previous, (ra_mean, ra_var), scale, bias, feature_axes)
    if (self.noise_mean or self.noise_std) and self.has_rng(NOISE_STREAM):
      y = y + self._shift_noise(y.shape, feature_axes, fixed_noise)
    return y.astype(x.dtype)

  def _frozen_after(
    self,
    step: nn.Variable,
    y: jax.Array,
    x: jax.Array,
    previous: tuple[jax.Array, jax.Array],
    running: tuple[nn.Variable, nn.Variable],
    scale: jax.Array | None,
    bias: jax.Array | None,
    feature_axes: tuple[int, ...],
  ) -> jax.Array:
    """FrozenBN from training step `freeze_from` on: `y` (Algorithm 1's output) replaced by
    the normalization with the `previous` running statistics, which stop updating (and,
    with `freeze_affine`, gamma and beta held out of the gradient); counts the step."""
    frozen = step.value >= self.freeze_from
    if self.freeze_affine:
      scale, bias = (None if p is None else lax.stop_gradient(p) for p in (scale, bias))
    y_frozen = self._normalize(x, previous[0], previous[1], scale, bias, feature_axes)
    for variable, old in zip(running, previous, strict=True):
      variable.value = jnp.where(frozen, old, variable.value)
    step.value = step.value + 1
    return jnp.where(frozen, y_frozen, y)

  def _noise_parameters(
    self, mean_key: jax.Array, std_key: jax.Array, feature_shape: tuple[int, ...]
  ) -> jax.Array:
    """`(2, *feature_shape)`: mu ~ U(-n_mu, n_mu) and sigma ~ U(0, n_sigma) per feature."""
    n_mu = self.noise_mean
    mu = jax.random.uniform(mean_key, feature_shape, minval=-n_mu, maxval=n_mu)
    return jnp.stack([mu, jax.random.uniform(std_key, feature_shape, maxval=self.noise_std)])

  def _fixed_noise_parameters(self, feature_shape: tuple[int, ...]) -> jax.Array | None:
    """The control's mu and sigma `(2, *feature_shape)`, drawn at initialization from the
    'params' stream; None unless `noise_redraw='fixed'` with noise."""
    if self.noise_redraw != 'fixed' or not (self.noise_mean or self.noise_std):
      return None
    fixed = self.variable(
      'batch_stats',
      'fixed_noise',
      lambda: self._noise_parameters(*jax.random.split(self.make_rng('params')), feature_shape),
    )
    return fixed.value

  def _shift_noise(
    self, shape: tuple[int, ...], feature_axes: tuple[int, ...], fixed: jax.Array | None
  ) -> jax.Array:
    """Noisy BN's m `(shape)`: N(mu_j, sigma_j^2) per element, mu and sigma per feature
    either `fixed` or drawn from U(-n_mu, n_mu) and U(0, n_sigma) by this call (module
    docstring)."""
    feature_shape = tuple(shape[a] for a in feature_axes)
    mean_key, std_key, noise_key = jax.random.split(self.make_rng(NOISE_STREAM), 3)
    if fixed is None:
      fixed = self._noise_parameters(mean_key, std_key, feature_shape)
    mu, sigma = fixed[0], fixed[1]
    ndim = len(shape)
    return _broadcast(mu, ndim, feature_axes) + _broadcast(
      sigma, ndim, feature_axes
    ) * jax.random.normal(noise_key, shape)

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


# The random stream noisy BN draws from (`rngs={NOISE_STREAM: key}` in `apply`).
NOISE_STREAM = 'bn_noise'
NOISE_REDRAW_MODES = ('step', 'fixed')
RUNNING_VARIANCES = ('unbiased', 'biased')

# stop_gradient mode -> the batch statistics it treats as constants in the backward pass.
_STOPPED_STATISTICS = {'none': (), 'mean': ('mean',), 'mean_and_variance': ('mean', 'variance')}
STOP_GRADIENT_MODES = tuple(_STOPPED_STATISTICS)


def _broadcast(stat: jax.Array, ndim: int, feature_axes: tuple[int, ...]) -> jax.Array:
  """Reshapes a per-feature array to broadcast against an `ndim` input."""
  shape = [1] * ndim
  for i, a in enumerate(feature_axes):
    shape[a] = stat.shape[i]
  return stat.reshape(shape)
