"""Group normalization (Wu & He 2018) and its two special cases, LayerNorm and InstanceNorm.

For an input x of shape `(N, ..., C)` split into G groups of C/G consecutive channels, each
example's statistics are taken over its spatial positions and the channels of one group
(Wu & He 2018, eq. 1-3 with S_i = {k | k_N = i_N, floor(k_C / (C/G)) = floor(i_C / (C/G))}):

    mu_ig = mean of x over (spatial, channels of group g) of example i,
    sigma_ig^2 = the biased variance over the same values,
    y = gamma_c (x - mu_ig) / sqrt(sigma_ig^2 + eps) + beta_c,

with one gamma and beta per channel (eq. 4). Nothing depends on the other examples of the
batch, so training and inference compute the same function and there are no running
statistics. G = 1 is LayerNorm over (spatial, C) (Ba et al. 2016, as the GroupNorm paper's
Figure 2 draws it); G = C is InstanceNorm (Ulyanov et al. 2016), which needs spatial axes.

Library conventions (tests/test_normalization_family.py checks the numbers): `flax.linen.GroupNorm`
and `flax.linen.LayerNorm` default to eps = 1e-6, `torch.nn.GroupNorm` and
`torch.nn.LayerNorm` to 1e-5, the value our configs use (`model.norm.epsilon`). torch's
LayerNorm learns one gamma and beta per normalized element (H, W, C), GroupNorm(1) one per
channel: equal at initialization and whenever torch's affine is constant over positions.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class GroupNorm(nn.Module):
  """Group normalization of `(N, ..., C)` inputs, per example; output of the input's shape
  and dtype, statistics in float32.

  Attributes:
    num_groups: G, which must divide C; None: one group per channel (InstanceNorm).
    epsilon: added to the variance.
    use_bias, use_scale: learn beta and gamma (per channel).
  """

  num_groups: int | None = 32
  epsilon: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalizes `x` of shape `(N, ..., C)` per example and group."""
    channels = x.shape[-1]
    groups = channels if self.num_groups is None else self.num_groups
    if groups < 1 or channels % groups:
      raise ValueError(
        f'GroupNorm num_groups={self.num_groups} does not divide the {channels} channels of '
        f'an input of shape {x.shape}; choose a divisor of {channels}.'
      )
    values_per_group = x[0].size // groups
    if values_per_group < 2:
      raise ValueError(
        f'GroupNorm with {groups} group(s) on an input of shape {x.shape}: each statistic '
        'covers one value, so every output would be beta. Use fewer groups, or an input '
        'with spatial axes (InstanceNorm needs them).'
      )
    x32 = x.astype(jnp.float32)
    grouped = x32.reshape(x.shape[:-1] + (groups, channels // groups))
    reduce_axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    mean = jnp.mean(grouped, axis=reduce_axes, keepdims=True)
    var = jnp.mean(jnp.square(grouped - mean), axis=reduce_axes, keepdims=True)
    y = ((grouped - mean) * lax.rsqrt(var + self.epsilon)).reshape(x.shape)
    if self.use_scale:
      y = y * self.param('scale', nn.initializers.ones, (channels,), jnp.float32)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (channels,), jnp.float32)
    return y.astype(x.dtype)
