"""On-device pixel transforms: uint8 images to model inputs, with training distortions."""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _binary(images: jax.Array) -> jax.Array:
  # The paper feeds "a 28x28 binary image": a pixel is on when its intensity exceeds 1/2.
  return (images > 127).astype(jnp.float32)


def _scaled(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0


# Name -> what it does, for summaries and --help.
PREPROCESSORS = {
  'binary': 'binarized at 1/2',
  'scaled': 'intensities scaled to [0, 1]',
  'mean_subtracted': (
    "intensities scaled to [0, 1] minus the training set's mean per channel (GoogLeNet's input)"
  ),
}


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """uint8 images `(..., C)` -> float32 model inputs of the same shape.

  Pixels go to [0, 1] (`to_unit`), training may distort them photometrically there
  (`distort_photometric`, which keeps [0, 1]), and `pixel_mean` `(C,)`, if any, is
  subtracted last, so distortion never sees centred values.
  """

  to_unit: Callable[[jax.Array], jax.Array]
  pixel_mean: np.ndarray | None = None

  def __call__(
    self, images: jax.Array, distort_key: jax.Array | None = None, distortion_strength: float = 0.0
  ) -> jax.Array:
    x = self.to_unit(images)
    if distort_key is not None and distortion_strength:
      x = distort_photometric(x, distort_key, distortion_strength)
    return x if self.pixel_mean is None else x - jnp.asarray(self.pixel_mean, jnp.float32)


def get_preprocessor(name: str, pixel_mean: np.ndarray | None = None) -> Preprocessor:
  """The preprocessing called `name` (`PREPROCESSORS`).

  'mean_subtracted' needs `pixel_mean`, float32 `(C,)` in [0, 1] units (the training
  set's, `InMemoryDataset.pixel_mean` or `imagenet.PIXEL_MEAN`).
  """
  if name == 'binary':
    return Preprocessor(_binary)
  if name == 'scaled':
    return Preprocessor(_scaled)
  if name == 'mean_subtracted':
    if pixel_mean is None:
      raise ValueError("Preprocessing 'mean_subtracted' needs the training set's pixel_mean.")
    return Preprocessor(_scaled, np.asarray(pixel_mean, np.float32))
  raise ValueError(f'Unknown preprocessing {name!r}; expected one of {sorted(PREPROCESSORS)}.')


def distort_photometric(images: jax.Array, key: jax.Array, strength: float) -> jax.Array:
  """Random brightness and contrast per image, scaled by `strength` in [0, 1].

  Images `(N, H, W, C)` float32 in [0, 1]; brightness shifts by U(-0.25, 0.25) *
  strength, contrast scales about the image mean by 1 + U(-0.5, 0.5) * strength.
  The paper's BN runs use weaker distortions than Inception's (Sec. 4.2.1).
  """
  brightness_key, contrast_key = jax.random.split(key)
  shape = (images.shape[0],) + (1,) * (images.ndim - 1)
  brightness = jax.random.uniform(brightness_key, shape, minval=-0.25, maxval=0.25) * strength
  contrast = 1.0 + jax.random.uniform(contrast_key, shape, minval=-0.5, maxval=0.5) * strength
  mean = jnp.mean(images, axis=tuple(range(1, images.ndim)), keepdims=True)
  return jnp.clip((images - mean) * contrast + mean + brightness, 0.0, 1.0)
