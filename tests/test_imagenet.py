"""The ImageNet pipeline and one training step per paper variant, on tfds.testing.mock_data.

Mock ImageNet is random synthetic images; nothing here measures accuracy.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bn_repro.configuration.files import load_config, override
from bn_repro.data import imagenet
from bn_repro.training import train
from bn_repro.training.state import create_train_state
from bn_repro.training.tensorboard import read_scalars


@pytest.fixture
def mock_imagenet(tmp_path):
  with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path / 'no_real_data')):
    yield


def _source(seed=0):
  config = load_config('configs/inception.py:bn_x5,smoke')
  return imagenet.ImageNet(config.input, config.batch_size, seed), config


def test_train_batches_shapes_and_resume_position(mock_imagenet):
  source, config = _source()
  stream = source.train_batches(0)
  first = [next(stream) for _ in range(3)]
  images, labels = first[0]
  assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (8,) and labels.dtype == np.int32
  resumed = next(source.train_batches(2))
  np.testing.assert_array_equal(resumed[1], first[2][1])
  np.testing.assert_array_equal(resumed[0], first[2][0])


def test_eval_batches_count_every_validation_image_once(mock_imagenet):
  source, _ = _source()
  batches = list(source.eval_batches(batch_size=8))
  assert sum(int(mask.sum()) for _, _, mask in batches) == source.num_eval_examples == 20
  assert all(images.shape == (8, 32, 32, 3) for images, _, _ in batches)
  assert not batches[-1][2].all()  # 20 = 8 + 8 + 4: the last batch is padded.


def test_missing_imagenet_says_how_to_prepare_it(tmp_path):
  config = load_config('configs/inception.py:bn_x5,smoke')
  config.unlock()
  config.input.tfds_data_dir = str(tmp_path)
  with pytest.raises(imagenet.ImageNetNotPreparedError, match='downloads/manual.*tfds build'):
    source = imagenet.ImageNet(config.input, 8, 0)
    next(source.train_batches(0))


@pytest.mark.parametrize(
  'variant',
  ['inception', 'bn_baseline', 'bn_x5', 'bn_x30', 'bn_x5_sigmoid', 'inception_sigmoid'],
)
def test_one_training_step_per_variant(mock_imagenet, tmp_path, variant):
  # 2 of the 8 fake devices: 4 examples each, one BN group of 4.
  config = override(load_config(f'configs/inception.py:{variant},smoke'), num_devices=2)
  metrics = train.train_and_evaluate(config, tmp_path / variant)
  scalars = read_scalars(tmp_path / variant)
  assert np.isfinite(scalars['train/loss'][0][1])
  # 1000 classes: a fresh network's loss is near log(1000).
  assert abs(scalars['train/loss'][0][1] - np.log(1000)) < 1.0
  assert 0.0 <= metrics['top5_accuracy'] <= 1.0 and metrics['accuracy'] <= metrics['top5_accuracy']


def test_multi_crops_are_144_views_with_mirrors():
  import tensorflow as tf

  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
  crops = imagenet.multi_crops(tf.constant(image), 32).numpy()
  assert crops.shape == (144, 32, 32, 3)
  np.testing.assert_allclose(crops[1::2], crops[0::2][:, :, ::-1], atol=1e-4)  # Mirrors.
  # Scale 256/224 of 32 px: the shorter side becomes 37 and the first view is the top-left
  # corner of the left square of the image resized to 37x56 (rounded as the code does).
  resized = tf.image.resize(tf.constant(image, tf.float32), (37, 56)).numpy()
  np.testing.assert_allclose(crops[0], resized[:32, :32], atol=1e-3)
  constant = imagenet.multi_crops(tf.fill((50, 50, 3), 7), 32).numpy()
  np.testing.assert_allclose(constant, 7.0, atol=1e-3)


@pytest.mark.parametrize('portrait', [True, False])
def test_multi_crop_geometry_on_non_constant_images(portrait):
  """Every square and view of one scale, against slices of the resized image: squares
  run along the longer side (rows for a portrait image, columns for a landscape one)."""
  import tensorflow as tf

  rng = np.random.default_rng(2)
  shape = (60, 40, 3) if portrait else (40, 60, 3)
  image = rng.integers(0, 256, shape).astype(np.uint8)
  crops = imagenet.multi_crops(tf.constant(image), 32).numpy()
  short, size = 37, 32  # Scale 256/224 of 32 px.
  resized = tf.image.resize(
    tf.constant(image, tf.float32), (56, 37) if portrait else (37, 56)
  ).numpy()
  for position, offset in enumerate((0, 10, 19)):  # round(19 * 0.5) = 10 (half to even).
    square = resized[offset : offset + short] if portrait else resized[:, offset : offset + short]
    margin, centre = short - size, (short - size) // 2
    views = [
      square[:size, :size],
      square[:size, margin:],
      square[margin:, :size],
      square[margin:, margin:],
      square[centre : centre + size, centre : centre + size],
      tf.image.resize(square, (size, size)).numpy(),
    ]
    for v, view in enumerate(views):
      index = (position * 6 + v) * 2
      np.testing.assert_allclose(crops[index], view, atol=1e-3, err_msg=f'{position=} {v=}')
      np.testing.assert_allclose(crops[index + 1], view[:, ::-1], atol=1e-3)


def test_multi_crop_eval_averages_class_probabilities():
  import jax

  from bn_repro import models
  from bn_repro.data.ordering import padded_batches
  from bn_repro.distributed import create_mesh
  from bn_repro.training.evaluate import Evaluator
  from bn_repro.training.steps import make_eval_fn

  config = load_config('configs/mnist.py:bn,smoke')
  model = models.create_model(config.model, 10, axis_name='batch')
  variables = model.init(jax.random.key(1), np.zeros((1, 28, 28, 1)), train=False)
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32)).replace(
    **variables
  )
  rng = np.random.default_rng(1)
  crops = rng.integers(0, 256, (6, 3, 28, 28, 1), dtype=np.uint8)  # 6 images, 3 crops each.
  labels = rng.integers(0, 10, 6).astype(np.int32)
  mesh = create_mesh(2)
  batches = [
    jax.device_put(b, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch')))
    for b in padded_batches(crops, labels, 4)
  ]
  preprocess = lambda x: x.astype(np.float32) / 255.0  # noqa: E731
  evaluate = Evaluator(make_eval_fn(model, preprocess, mesh), lambda: batches, 6, mesh)
  metrics, _ = evaluate(state)
  logits = np.asarray(
    model.clone(axis_name=None).apply(
      variables, preprocess(crops.reshape(18, 28, 28, 1)), train=False
    )
  ).reshape(6, 3, 10)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).mean(axis=1)
  assert metrics['accuracy'] == pytest.approx(np.mean(probs.argmax(-1) == labels))
  assert metrics['loss'] == pytest.approx(-np.mean(np.log(probs[np.arange(6), labels])), rel=1e-4)


def test_augmentation_seeds_differ_across_processes():
  """The k-th example of each of 4 processes gets its own crop/flip seed position."""
  positions = [imagenet.global_position(k, p, 4) for k in range(50) for p in range(4)]
  assert sorted(positions) == list(range(200))
