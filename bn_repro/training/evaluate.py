"""Exact evaluation: every test example counts once, on any device count.

The test set is padded to whole evaluation batches and the padding masked out;
correct counts and losses are summed, never averaged per batch (flax #262).
"""

import functools
from collections.abc import Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.distributed import gathered_to_host, put_global, replicated_to_host
from bn_repro.training.state import TrainState


class Evaluator:
  """Evaluates a TrainState exactly on a fixed evaluation split.

  Args:
    eval_fn: from `bn_repro.training.steps.make_eval_fn`.
    batches: returns a fresh iterable of sharded (images, labels, mask) batches
      (`bn_repro.data.pipeline`); padding examples have mask False.
    num_examples: examples in the split; every one must be counted exactly once.
    mesh: the device mesh.
  """

  def __init__(
    self,
    eval_fn: Callable,
    batches: Callable[[], Iterable[tuple[jax.Array, jax.Array, jax.Array]]],
    num_examples: int,
    mesh: Mesh,
  ):
    self._eval_fn = eval_fn
    self._batches = batches
    self._num_examples = num_examples
    self._replicated = NamedSharding(mesh, P())

  def __call__(self, state: TrainState) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Returns {'accuracy', 'top5_accuracy', 'loss'} and the preactivations `(N, units)`."""
    state = put_global(state, self._replicated)  # A no-op when already replicated.
    totals = {'correct': 0, 'correct_top5': 0, 'loss': 0.0, 'count': 0}
    parts: dict[str, list[np.ndarray]] = {}
    for images, labels, mask in self._batches():
      sums, preactivations = self._eval_fn(state, images, labels, mask)
      sums = replicated_to_host(sums)
      for key in totals:
        totals[key] += sums[key].item()
      keep = gathered_to_host(mask)
      for name, values in gathered_to_host(preactivations).items():
        parts.setdefault(name, []).append(values[keep])
    if totals['count'] != self._num_examples:
      raise AssertionError(f'evaluated {totals["count"]} of {self._num_examples} examples')
    metrics = {
      'accuracy': totals['correct'] / totals['count'],
      'top5_accuracy': totals['correct_top5'] / totals['count'],
      'loss': totals['loss'] / totals['count'],
    }
    return metrics, {name: np.concatenate(p) for name, p in parts.items()}


def preactivation_percentiles(
  preactivations: dict[str, np.ndarray], unit: int, percentiles: Sequence[float]
) -> dict[str, float]:
  """Figure 1(b, c): percentiles of each hidden layer's input to its nonlinearity.

  Args:
    preactivations: {'preactivationI': `(N, units)`} over the test set.
    unit: the fixed "typical" unit tracked in every layer.
    percentiles: e.g. (15, 50, 85).

  Returns:
    {'preactivation/layerI/unit_pP': ..., 'preactivation/layerI/all_pP': ...}: the unit's
    percentiles over examples, and the percentiles over all units and examples of the layer.
  """
  out = {}
  for name, values in sorted(preactivations.items()):
    layer = name.removeprefix('preactivation')
    unit_values = np.percentile(values[:, unit], percentiles)
    all_values = np.percentile(values, percentiles)
    for p, u, a in zip(percentiles, unit_values, all_values, strict=True):
      out[f'preactivation/layer{layer}/unit_p{p:g}'] = float(u)
      out[f'preactivation/layer{layer}/all_p{p:g}'] = float(a)
  return out


@functools.partial(jax.jit, static_argnames=('model',))
def _batch_statistics_predictions(
  model: nn.Module, params: object, batch_stats: object, batches: jax.Array
) -> jax.Array:
  """Predicted classes `(B, b)` of test batches `(B, b, ...)`, each normalized on its own."""

  def one_batch(x):
    logits, _ = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=False,
      batch_statistics=True,
      mutable=['batch_stats'],
    )
    return jnp.argmax(logits, -1)

  return jax.vmap(one_batch)(batches)


def batch_statistics_accuracy(
  model: nn.Module,
  params: object,
  batch_stats: object,
  images: jax.Array,
  labels: np.ndarray,
  batch_size: int,
) -> float:
  """Test accuracy when inference normalizes with mini-batch statistics (Algorithm 1).

  The `(N, ...)` test `images` are split into consecutive batches of `batch_size`
  (the last incomplete one dropped), and each batch is normalized with its own
  statistics, as in training: the prediction for an example then depends on the
  other examples of its batch, which Algorithm 2 avoids. `model` is built without
  a mesh axis; its group size, if any, must divide `batch_size`.
  """
  count = len(labels) // batch_size * batch_size
  if not count:
    raise ValueError(f'batch_size={batch_size} exceeds the {len(labels)} test examples.')
  batches = images[:count].reshape((count // batch_size, batch_size) + images.shape[1:])
  predicted = _batch_statistics_predictions(model, params, batch_stats, batches)
  return float(np.mean(np.asarray(predicted).reshape(-1) == labels[:count]))


@functools.partial(jax.jit, static_argnames=('model',))
def _running_statistics_predictions(
  model: nn.Module, params: object, batch_stats: object, images: jax.Array
) -> jax.Array:
  logits = model.apply({'params': params, 'batch_stats': batch_stats}, images, train=False)
  return jnp.argmax(logits, -1)


def running_statistics_accuracy(
  model: nn.Module,
  params: object,
  batch_stats: object,
  images: jax.Array,
  labels: np.ndarray,
  batch_size: int = 1000,
) -> float:
  """Test accuracy with the stored inference statistics `batch_stats` (Algorithm 2, step 11),
  over `(N, ...)` `images` in calls of `batch_size` (predictions do not depend on the batch)."""
  predicted = [
    np.asarray(
      _running_statistics_predictions(model, params, batch_stats, images[i : i + batch_size])
    )
    for i in range(0, len(labels), batch_size)
  ]
  return float(np.mean(np.concatenate(predicted) == labels))
