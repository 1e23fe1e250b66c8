"""Which examples form each batch: pure functions of (seed, step), so a resumed run continues
the same order, and fixed-size evaluation batches with a mask for the padding."""

from collections.abc import Iterator

import numpy as np

SHUFFLES = ('full', 'shards', 'within_shards', 'class_chunks')


def epoch_order(
  num_examples: int,
  seed: int,
  epoch: int,
  shuffle: str = 'full',
  num_shards: int = 1,
  labels: np.ndarray | None = None,
  class_chunk: int = 2,
) -> np.ndarray:
  """The order in which epoch `epoch` visits the examples.

  'full': a uniform permutation. 'shards': the examples, in their stored order,
  cut into `num_shards` contiguous shards; the shards are visited in random order,
  each in its fixed internal order (so the same examples always share a mini-batch,
  as in the paper's original Inception input). 'within_shards': the same, with each
  shard also shuffled (the paper's Sec. 4.2.1 change). 'class_chunks': non-i.i.d.
  batches (Ioffe 2017's test of Batch Renorm): each class's examples shuffled and cut
  into chunks of `class_chunk` examples of that class (`labels` gives the classes; a
  class's remainder is left out of the epoch), the chunks visited in random order, so
  that a batch is made of same-class chunks (`class_chunk=2`: same-class pairs).
  """
  rng = np.random.default_rng([seed, epoch])
  if shuffle == 'full':
    return rng.permutation(num_examples)
  if shuffle not in SHUFFLES:
    raise ValueError(f'Unknown shuffle {shuffle!r}; expected one of {SHUFFLES}.')
  if shuffle == 'class_chunks':
    return _class_chunk_order(rng, labels, class_chunk)
  shards = np.array_split(np.arange(num_examples), num_shards)
  if shuffle == 'within_shards':
    shards = [rng.permutation(shard) for shard in shards]
  return np.concatenate([shards[i] for i in rng.permutation(num_shards)])


def _class_chunk_order(
  rng: np.random.Generator, labels: np.ndarray | None, class_chunk: int
) -> np.ndarray:
  """The 'class_chunks' order (`epoch_order`)."""
  if labels is None:
    raise ValueError("shuffle='class_chunks' needs the training labels; none were given.")
  chunks = []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    usable = len(members) // class_chunk * class_chunk
    chunks.append(members[:usable].reshape(-1, class_chunk))
  chunks = np.concatenate(chunks)
  return chunks[rng.permutation(len(chunks))].reshape(-1)


def batch_indices(
  num_examples: int,
  batch_size: int,
  seed: int,
  first_step: int,
  num_steps: int,
  shuffle: str = 'full',
  num_shards: int = 1,
  labels: np.ndarray | None = None,
  class_chunk: int = 2,
) -> np.ndarray:
  """Example indices of the mini-batches of steps `[first_step, first_step + num_steps)`.

  Each epoch visits the examples in `epoch_order(..., epoch, shuffle, num_shards, labels,
  class_chunk)`; the last partial batch of an epoch is dropped, so every step's batch is a
  function of (seed, step) alone.

  Returns:
    int32 array `(num_steps, batch_size)`.
  """
  if shuffle == 'class_chunks':
    if batch_size % class_chunk:
      raise ValueError(
        f'class_chunk={class_chunk} does not divide batch_size={batch_size}: a batch must hold '
        'whole same-class chunks.'
      )
    # The examples an epoch visits: each class's whole chunks.
    num_examples = len(epoch_order(num_examples, seed, 0, shuffle, num_shards, labels, class_chunk))
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size={batch_size} exceeds the {num_examples} training examples.')
  out = np.empty((num_steps, batch_size), np.int32)
  orders: dict[int, np.ndarray] = {}
  for i, step in enumerate(range(first_step, first_step + num_steps)):
    epoch, position = divmod(step, steps_per_epoch)
    if epoch not in orders:
      orders[epoch] = epoch_order(
        num_examples, seed, epoch, shuffle, num_shards, labels, class_chunk
      )
    out[i] = orders[epoch][position * batch_size : (position + 1) * batch_size]
  return out


def padded_batches(
  images: np.ndarray, labels: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Splits arrays into `batch_size` batches, the last padded; mask marks real examples."""
  for start in range(0, len(labels), batch_size):
    part_images, part_labels = (
      images[start : start + batch_size],
      labels[start : start + batch_size],
    )
    padding = batch_size - len(part_labels)
    mask = np.arange(batch_size) < len(part_labels)
    yield (
      np.concatenate([part_images, np.zeros((padding,) + images.shape[1:], images.dtype)]),
      np.concatenate([part_labels, np.zeros((padding,), labels.dtype)]),
      mask,
    )
