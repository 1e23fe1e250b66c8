"""Exact evaluation: every test example counts once, on any device count.

The test set is padded to whole evaluation batches and the padding masked out;
correct counts and losses are summed, never averaged per batch (flax #262).
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.steps import AXIS, TrainState


class Evaluator:
  """Evaluates a TrainState on a fixed test set held on device.

  Args:
    eval_fn: from `bn_repro.steps.make_eval_fn`.
    images: uint8 `(N, H, W, C)`; labels: int `(N,)`.
    batch_size: examples per evaluation call; a multiple of the mesh size.
    mesh: the device mesh.
  """

  def __init__(
    self, eval_fn: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int, mesh: Mesh
  ):
    if batch_size % mesh.size:
      raise ValueError(
        f'eval batch_size={batch_size} is not a multiple of the {mesh.size} devices.'
      )
    self._eval_fn = eval_fn
    self._num_examples = len(images)
    num_batches = -(-self._num_examples // batch_size)
    padding = num_batches * batch_size - self._num_examples
    mask = np.arange(num_batches * batch_size) < self._num_examples
    images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros((padding,), labels.dtype)])
    self._replicated = NamedSharding(mesh, P())
    sharding = NamedSharding(mesh, P(AXIS))
    self._batches = [
      tuple(
        jax.device_put(a[i * batch_size : (i + 1) * batch_size], sharding)
        for a in (images, labels, mask)
      )
      for i in range(num_batches)
    ]

  def __call__(self, state: TrainState) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Returns {'accuracy', 'top5_accuracy', 'loss'} and the preactivations `(N, units)`."""
    state = jax.device_put(state, self._replicated)  # A no-op when already replicated.
    totals = {'correct': 0, 'correct_top5': 0, 'loss': 0.0, 'count': 0}
    parts: dict[str, list[np.ndarray]] = {}
    for images, labels, mask in self._batches:
      sums, preactivations = self._eval_fn(state, images, labels, mask)
      for key in totals:
        totals[key] += sums[key].item()
      for name, values in preactivations.items():
        parts.setdefault(name, []).append(np.asarray(values))
    if totals['count'] != self._num_examples:
      raise AssertionError(f'evaluated {totals["count"]} of {self._num_examples} examples')
    metrics = {
      'accuracy': totals['correct'] / totals['count'],
      'top5_accuracy': totals['correct_top5'] / totals['count'],
      'loss': totals['loss'] / totals['count'],
    }
    preactivations = {name: np.concatenate(p)[: self._num_examples] for name, p in parts.items()}
    return metrics, preactivations


def preactivation_percentiles(
  preactivations: dict[str, np.ndarray], unit: int, percentiles: Sequence[float]
) -> dict[str, float]:
  """Figure 1(b, c): percentiles of each hidden layer's input to its nonlinearity.

  Args:
    preactivations: {'preactivationI': `(N, units)`} over the test set.
    unit: the fixed "typical" unit tracked in every layer.
    percentiles: e.g. (15, 50, 85).

  Returns:
    {'bn/layerI/unit_pP': ..., 'bn/layerI/all_pP': ...}: the unit's percentiles
    over examples, and the percentiles over all units and examples of the layer.
  """
  out = {}
  for name, values in sorted(preactivations.items()):
    layer = name.removeprefix('preactivation')
    unit_values = np.percentile(values[:, unit], percentiles)
    all_values = np.percentile(values, percentiles)
    for p, u, a in zip(percentiles, unit_values, all_values, strict=True):
      out[f'bn/layer{layer}/unit_p{p:g}'] = float(u)
      out[f'bn/layer{layer}/all_p{p:g}'] = float(a)
  return out
