"""Batch Renormalization (Ioffe 2017, "Towards Reducing Minibatch Dependence in
Batch-Normalized Models"), Algorithm 1.

Training normalizes with the mini-batch statistics and then corrects toward the moving
averages mu, sigma, so that the output depends less on the batch:

    sigma_B = sqrt(Var_B[x] + eps)                        (biased batch variance)
    r = stop_gradient(clip(sigma_B / sigma, 1/rmax, rmax))
    d = stop_gradient(clip((mu_B - mu) / sigma, -dmax, dmax))
    y = gamma ((x - mu_B) / sigma_B * r + d) + beta
    mu += alpha (mu_B - mu),   sigma += alpha (sigma_B - sigma)

and inference computes y = gamma (x - mu) / sigma + beta. With rmax = 1, dmax = 0 it is BN.
The paper relaxes the clipping over training: rmax = 1, dmax = 0 for the first 5k steps,
then rmax up to 3 by 40k steps and dmax up to 5 by 25k ("gradually": linearly, in our
reading). `renorm_schedule` scales those steps to a run; the layer counts its own
training steps in `batch_stats` (`step`).

The paper keeps one pair of moving averages, for r and d and for inference. tf-keras's
`BatchNormalization(renorm=True)` keeps two: `renorm_mean`/`renorm_stddev` with
`renorm_momentum` for r and d, and `moving_mean`/`moving_stddev` with `momentum` for
inference; it also floors sigma at sqrt(eps) in r and d. `renorm_momentum=None` is the
paper's single pair, a value is Keras's two (tests/test_batch_renorm.py: equal to tf-keras
2.21's outputs, gradients and moving statistics). Both average the standard deviation, as
the paper's Algorithm 1 does, not the variance (Chainer's variant).

Input `(N, ..., C)`: statistics per channel over N and the spatial axes (per feature map,
as BN's Sec. 3.2); output of the input's shape and dtype, statistics in float32.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def clipping_at(
  step: jax.Array,
  *,
  rmax: float,
  dmax: float,
  warmup_steps: int,
  rmax_ramp_steps: int,
  dmax_ramp_steps: int,
) -> tuple[jax.Array, jax.Array]:
  """The paper's schedule: (rmax_t, dmax_t) = (1, 0) before `warmup_steps`, then each
  relaxed linearly to `rmax`, `dmax` over its ramp (0 steps: at once)."""

  def relaxed(ramp_steps: int) -> jax.Array:
    since = (step - warmup_steps).astype(jnp.float32)
    if ramp_steps == 0:
      return (since >= 0).astype(jnp.float32)
    return jnp.clip(since / ramp_steps, 0.0, 1.0)

  return 1.0 + (rmax - 1.0) * relaxed(rmax_ramp_steps), dmax * relaxed(dmax_ramp_steps)


def renorm_schedule(num_steps: int) -> dict[str, int]:
  """The paper's clipping schedule scaled to a run of `num_steps`: its relaxation ends
  (rmax = 3 at 40k steps) at half the run, BN alone for the first 5/40 of that, dmax = 5
  reached at 25/40 of it. The paper does not tie the 40k to its run length; half the
  run is our choice, leaving the second half fully relaxed, as its long runs were."""
  end = num_steps // 2
  return {
    'renorm_warmup_steps': end * 5 // 40,
    'rmax_ramp_steps': end - end * 5 // 40,
    'dmax_ramp_steps': end * 25 // 40 - end * 5 // 40,
  }


class BatchRenorm(nn.Module):
  """Batch Renormalization (module docstring) of `(N, ..., C)` inputs.

  Attributes:
    use_running_average: normalize with the moving averages (inference) instead of the
      batch statistics corrected by r and d.
    momentum: decay of the moving averages mu, sigma (the paper's 1 - alpha).
    epsilon: added to the batch variance inside sigma_B.
    rmax, dmax: the clipping bounds once relaxed.
    renorm_warmup_steps, rmax_ramp_steps, dmax_ramp_steps: the schedule (`clipping_at`).
    renorm_momentum: None: r and d use mu, sigma (the paper); a decay: r and d use their own
      moving averages with it (`renorm_mean`, `renorm_std`), as tf-keras.
    axis_name: the mesh axis of data parallelism; the batch statistics average over it.
    use_bias, use_scale: learn beta and gamma.
  """

  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  rmax: float = 3.0
  dmax: float = 5.0
  renorm_warmup_steps: int = 0
  rmax_ramp_steps: int = 0
  dmax_ramp_steps: int = 0
  renorm_momentum: float | None = None
  axis_name: str | None = None
  use_bias: bool = True
  use_scale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    """Normalizes `x` of shape `(N, ..., C)`; returns an array of the same shape."""
    use_running_average = nn.merge_param(
      'use_running_average', self.use_running_average, use_running_average
    )
    features = (x.shape[-1],)
    mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    std = self.variable('batch_stats', 'std', jnp.ones, features, jnp.float32)
    renorm_mean, renorm_std = mean, std
    if self.renorm_momentum is not None:
      renorm_mean = self.variable('batch_stats', 'renorm_mean', jnp.zeros, features, jnp.float32)
      renorm_std = self.variable('batch_stats', 'renorm_std', jnp.ones, features, jnp.float32)
    step = self.variable('batch_stats', 'step', jnp.zeros, (), jnp.int32)
    scale = (
      self.param('scale', nn.initializers.ones, features, jnp.float32) if self.use_scale else 1.0
    )
    bias = (
      self.param('bias', nn.initializers.zeros, features, jnp.float32) if self.use_bias else 0.0
    )
    x32 = x.astype(jnp.float32)
    if use_running_average:
      return ((x32 - mean.value) / std.value * scale + bias).astype(x.dtype)

    axis_name = None if self.is_initializing() else self.axis_name
    reduce_axes = tuple(range(x.ndim - 1))
    batch_mean = jnp.mean(x32, axis=reduce_axes)
    if axis_name is not None:
      batch_mean = lax.pmean(batch_mean, axis_name)
    batch_var = jnp.mean(jnp.square(x32 - batch_mean), axis=reduce_axes)
    if axis_name is not None:
      batch_var = lax.pmean(batch_var, axis_name)
    batch_std = jnp.sqrt(batch_var + self.epsilon)
    rmax, dmax = clipping_at(
      step.value,
      rmax=self.rmax,
      dmax=self.dmax,
      warmup_steps=self.renorm_warmup_steps,
      rmax_ramp_steps=self.rmax_ramp_steps,
      dmax_ramp_steps=self.dmax_ramp_steps,
    )
    sigma = jnp.maximum(renorm_std.value, jnp.sqrt(self.epsilon))
    r = lax.stop_gradient(jnp.clip(batch_std / sigma, 1.0 / rmax, rmax))
    d = lax.stop_gradient(jnp.clip((batch_mean - renorm_mean.value) / sigma, -dmax, dmax))
    y = ((x32 - batch_mean) / batch_std * r + d) * scale + bias
    if not self.is_initializing():
      observed_mean, observed_std = lax.stop_gradient((batch_mean, batch_std))
      if self.renorm_momentum is not None:
        renorm_mean.value = _decayed(renorm_mean.value, observed_mean, self.renorm_momentum)
        renorm_std.value = _decayed(renorm_std.value, observed_std, self.renorm_momentum)
      mean.value = _decayed(mean.value, observed_mean, self.momentum)
      std.value = _decayed(std.value, observed_std, self.momentum)
      step.value = step.value + 1
    return y.astype(x.dtype)


def _decayed(average: jax.Array, observed: jax.Array, decay: float) -> jax.Array:
  """One step of a moving average: decay * average + (1 - decay) * observed."""
  return decay * average + (1.0 - decay) * observed
