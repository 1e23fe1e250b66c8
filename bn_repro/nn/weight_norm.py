"""Weight normalization (Salimans & Kingma 2016), dense and convolutional."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from bn_repro.nn.xla_cpu import conv_general_dilated


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
