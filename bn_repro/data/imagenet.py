"""ImageNet (TFDS `imagenet2012`) as a tf.data stream for BN-Inception (paper Sec. 4.2).

Training: Inception-style random crops (8-100% of the area, aspect 3/4 to 4/3),
resized to `image_size`, random horizontal flips; photometric distortions are
applied on device (`bn_repro.data.transforms.distort_photometric`). Evaluation: the central
87.5% crop resized to `image_size`, padded to whole batches with a mask, every
validation image once. Each process reads its own part of the training split
(multi-host). The stream's position is a function of (seed, step): resuming at
step s skips s batches of still-encoded records (the JPEG bytes) before any is
decoded, and the training shuffle buffer holds encoded images (about 110 kB each
rather than ~500 kB decoded), so its host memory is bounded by `shuffle_buffer`
times the encoded size.

TFDS needs the ImageNet archives downloaded by hand (licence); the error says how.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import jax
import numpy as np

if TYPE_CHECKING:
  import ml_collections

NAME = 'imagenet2012'
EVAL_CROP_FRACTION = 0.875
# The paper's 144 crops (Szegedy et al. 2015, GoogLeNet): shorter side resized to 4 scales
# (256, 288, 320, 352 for 224-px crops); 3 squares along the longer side; from each, the 4
# corners, the center and the whole square at crop size; all mirrored.
MULTI_CROP_SCALES = (256 / 224, 288 / 224, 320 / 224, 352 / 224)


def global_position(position: int, process: int, processes: int) -> int:
  """A process's `position`-th training example's index in the whole job's stream: distinct
  for every (process, position), so no two processes draw the same crop and flip seed."""
  return position * processes + process


# The ImageNet training set's mean per RGB channel in [0, 1] units, as torchvision and most
# ImageNet codebases publish it (GoogLeNet subtracted the training set's mean).
PIXEL_MEAN = np.array([0.485, 0.456, 0.406], np.float32)


class ImageNetNotPreparedError(FileNotFoundError):
  """TFDS imagenet2012 is not prepared in the data dir."""


class ImageNet:
  """The train stream and evaluation batches of TFDS `imagenet2012`.

  Args:
    input_config: `config.input` (tfds_data_dir, image_size).
    global_batch_size: examples per step over all processes.
    seed: the run's seed (file order and shuffling).
  """

  def __init__(self, input_config: ml_collections.ConfigDict, global_batch_size: int, seed: int):
    import tensorflow_datasets as tfds

    if global_batch_size % jax.process_count():
      raise ValueError(
        f'batch_size={global_batch_size} is not divisible by the {jax.process_count()} processes.'
      )
    self._config = input_config
    self._batch = global_batch_size // jax.process_count()
    self._seed = seed
    self._data_dir = input_config.tfds_data_dir
    self._builder = tfds.builder(NAME, data_dir=self._data_dir)
    self.image_shape = (input_config.image_size, input_config.image_size, 3)
    self.pixel_mean = PIXEL_MEAN
    info = self._builder.info
    self.num_classes = info.features['label'].num_classes
    self.num_eval_examples = self._count_validation_examples(info)

  def _count_validation_examples(self, info) -> int:
    """From the dataset's metadata, or by reading the split where it has none (mock data)."""
    try:
      count = info.splits['validation'].num_examples
    except Exception:  # noqa: BLE001 - no split metadata: not prepared, or mocked.
      count = 0
    if not count:  # Raises ImageNetNotPreparedError when the data is absent.
      count = int(self._load('validation', shuffle_files=False).reduce(0, lambda n, _: n + 1))
    return count

  def _not_prepared(self, cause: Exception | None) -> ImageNetNotPreparedError:
    return ImageNetNotPreparedError(
      f'TFDS {NAME} is not prepared in {self._data_dir or "the default TFDS data dir"} '
      f'({cause}). Download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from '
      'image-net.org into <data_dir>/downloads/manual/, then run '
      f'`tfds build {NAME} --data_dir=<data_dir>` and pass '
      '--config.input.tfds_data_dir=<data_dir>.'
    )

  def _load(self, split: str, shuffle_files: bool, decode_images: bool = True):
    import tensorflow_datasets as tfds

    try:
      return tfds.load(
        NAME,
        split=split,
        data_dir=self._data_dir,
        download=False,
        shuffle_files=shuffle_files,
        read_config=tfds.ReadConfig(shuffle_seed=self._seed),
        decoders=None if decode_images else {'image': tfds.decode.SkipDecoding()},
      )
    except AssertionError as e:  # tfds.load(download=False) on absent data.
      raise self._not_prepared(e) from e

  def train_batches(self, start_step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's batches from step `start_step` on: uint8 `(b, H, W, 3)`, int32 `(b,)`."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    split = tfds.split_for_jax_process('train')
    size = self._config.image_size
    decode_image = self._builder.info.features['image'].decode_example
    ds = self._load(split, shuffle_files=True, decode_images=False).repeat()
    if self._config.shuffle != 'shards':  # 'shards': file order only, as Inception's input.
      ds = ds.shuffle(self._config.shuffle_buffer, seed=self._seed)
    # Number the stream before skipping, and seed each example's crop and flip by
    # (seed, position in the global stream): a resumed stream then crops exactly as the
    # uninterrupted one, and the k-th examples of different processes draw differently.
    ds = ds.enumerate().skip(start_step * self._batch)
    process, processes = jax.process_index(), jax.process_count()

    def crop(position, example):
      image, label = decode_image(example['image']), example['label']
      position = global_position(position, process, processes)
      example_seed = tf.stack([tf.cast(self._seed, tf.int64), position])
      begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros((1, 0, 4)),
        seed=example_seed,
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        min_object_covered=0.0,
        use_image_if_no_bounding_boxes=True,
      )
      image = tf.slice(image, begin, crop_size)
      image = tf.image.resize(image, (size, size), antialias=True)
      image = tf.image.stateless_random_flip_left_right(image, seed=example_seed + 1)
      return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), tf.cast(label, tf.int32)

    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(self._batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds))

  def eval_batches(
    self, batch_size: int, crops: int = 1
  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The validation split in padded batches: images, labels, mask (False: padding).

    `crops=1`: the central 87.5% crop, images `(B, H, W, 3)`. `crops=144`: the
    paper's multi-crop evaluation, images `(B, 144, H, W, 3)`.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from bn_repro.data.ordering import padded_batches

    if crops not in (1, 144):
      raise ValueError(f'eval crops={crops}; expected 1 or 144.')
    size = self._config.image_size

    def to_uint8(image):
      return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    def central_crop(example):
      image = tf.image.central_crop(example['image'], EVAL_CROP_FRACTION)
      return to_uint8(tf.image.resize(image, (size, size), antialias=True)), example['label']

    def multi_crop(example):
      return to_uint8(multi_crops(example['image'], size)), example['label']

    ds = self._load('validation', shuffle_files=False)
    ds = ds.map(central_crop if crops == 1 else multi_crop, num_parallel_calls=tf.data.AUTOTUNE)
    for images, labels in tfds.as_numpy(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)):
      yield from padded_batches(images, labels.astype(np.int32), batch_size)


def multi_crops(image, size: int):
  """The 144 crops of one image `(H, W, 3)`: float32 `(144, size, size, 3)`."""
  import tensorflow as tf

  image = tf.cast(image, tf.float32)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  crops = []
  for scale in MULTI_CROP_SCALES:
    short = round(size * scale)
    ratio = tf.cast(short, tf.float32) / tf.cast(tf.minimum(height, width), tf.float32)
    new_h = tf.cast(tf.round(tf.cast(height, tf.float32) * ratio), tf.int32)
    new_w = tf.cast(tf.round(tf.cast(width, tf.float32) * ratio), tf.int32)
    resized = tf.image.resize(image, (tf.maximum(new_h, short), tf.maximum(new_w, short)))
    long_side = tf.maximum(tf.shape(resized)[0], tf.shape(resized)[1])
    for position in (0.0, 0.5, 1.0):  # Left/top, center, right/bottom square.
      offset = tf.cast(tf.round(tf.cast(long_side - short, tf.float32) * position), tf.int32)
      square = tf.cond(
        tf.shape(resized)[0] >= tf.shape(resized)[1],
        lambda offset=offset, resized=resized, short=short: resized[
          offset : offset + short, :short
        ],
        lambda offset=offset, resized=resized, short=short: resized[
          :short, offset : offset + short
        ],
      )
      views = [
        square[:size, :size],
        square[:size, short - size :],
        square[short - size :, :size],
        square[short - size :, short - size :],
        square[
          (short - size) // 2 : (short - size) // 2 + size,
          (short - size) // 2 : (short - size) // 2 + size,
        ],
        tf.image.resize(square, (size, size)),
      ]
      for view in views:
        crops += [view, tf.image.flip_left_right(view)]
  return tf.stack(crops)
