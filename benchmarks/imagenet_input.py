r"""Images per second of the ImageNet training input pipeline on this machine's CPUs.

  .venv/bin/python -m benchmarks.imagenet_input [--batches=50] [--image_size=224]

`bn_repro.data.imagenet.ImageNet.train_batches` (TFDS read, shuffle, Inception-style
random crop, resize, flip, batch) on `tfds.testing.mock_data` images: SYNTHETIC
random images (timing only) whose size mock_data picks, printed below (tiny: mock data
skips the JPEG decode of real ImageNet files, which average about 400x350). The decode
is timed separately: a SYNTHETIC 500x375 JPEG (smooth random image, quality 90) decoded
by a parallel tf.data map. Compare both with the training step's images/second
(benchmarks/inception_step.py) to see which bounds.
"""

import tempfile
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags

from bn_repro.configuration.files import load_config, override
from bn_repro.data.imagenet import ImageNet

_BATCHES = flags.DEFINE_integer('batches', 50, 'Timed batches of 32 (after 5 warm-up ones).')
_SIZE = flags.DEFINE_integer('image_size', 224, 'Output crop side in pixels.')


def jpeg_decodes_per_second(count: int = 2000) -> float:
  """Decodes of one synthetic 500x375 JPEG per second, parallel tf.data map on all cores."""
  import tensorflow as tf

  rng = np.random.default_rng(0)
  smooth = tf.image.resize(rng.uniform(0, 255, (1, 24, 32, 3)), (375, 500))[0]
  jpeg = tf.io.encode_jpeg(tf.cast(smooth, tf.uint8), quality=90)
  ds = tf.data.Dataset.from_tensors(jpeg).repeat(count)
  ds = ds.map(tf.io.decode_jpeg, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(2)
  start = time.perf_counter()
  for _ in ds:
    pass
  return count / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
  del argv
  config = override(
    load_config('configs/inception.py:bn_x5'),
    input__image_size=_SIZE.value,
    input__shuffle_buffer=1024,
  )
  with tempfile.TemporaryDirectory() as data_dir:
    with tfds.testing.mock_data(num_examples=2048, data_dir=data_dir):
      example = next(iter(tfds.as_numpy(tfds.load('imagenet2012', split='train').take(1))))
      batches = ImageNet(config.input, config.batch_size, config.seed).train_batches(0)
      for _ in range(5):
        next(batches)
      start = time.perf_counter()
      for _ in range(_BATCHES.value):
        images, _ = next(batches)
      seconds = time.perf_counter() - start
  rate = _BATCHES.value * config.batch_size / seconds
  print(
    f'mock_data source image {example["image"].shape}, dtype {example["image"].dtype}; '
    f'output {images.shape} {images.dtype}; {np.prod(images.shape[1:]) / 1e3:.0f}k values each'
  )
  print(f'pipeline on mock data: {rate:.0f} images/s ({_BATCHES.value} batches of 32)')
  decodes = jpeg_decodes_per_second()
  print(f'JPEG decode (500x375, synthetic): {decodes:.0f} images/s')
  print(f'both in sequence on the same cores: about {1 / (1 / rate + 1 / decodes):.0f} images/s')


if __name__ == '__main__':
  app.run(main)
