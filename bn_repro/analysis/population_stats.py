"""Population statistics for inference: the paper's Algorithm 2 (PreciseBN, Wu & Johnson 2021).

Over K training mini-batches of the frozen network, each BN layer's inference
statistics become E[x] = the mean of the batch means and Var[x] = m/(m-1) times
the mean of the biased batch variances, replacing the moving averages.
"""

from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict


def population_statistics_fn(model: nn.Module) -> Callable[[object, object, Iterable], object]:
  """Returns `fn(params, batch_stats, batches) -> batch_stats` of Algorithm 2, compiled once.

  Args:
    model: a bn_repro model (its BN layers' fields are its `bn` mapping),
      built without an `axis_name` (this runs on one device).

  The returned function takes the trained network (frozen: params are not
  changed) and K preprocessed training batches `(m, ...)`, and returns new
  `batch_stats` holding the population statistics. A forward pass in training mode
  with BN momentum 0 leaves each layer's stored statistics equal to that batch's
  mean and unbiased (m/(m-1)) variance (`bn_repro.models.batch_norm.BatchNorm`; with a group
  size, the group averages), so averaging them over the K batches is exactly
  Algorithm 2, steps 8-10.
  """
  per_batch = model.clone(bn=FrozenDict({**model.bn, 'momentum': 0.0}))

  @jax.jit
  def batch_statistics(params, batch_stats, x):
    _, updates = per_batch.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=False,
      batch_statistics=True,
      mutable=['batch_stats'],
    )
    return updates['batch_stats']

  def population_statistics(params, batch_stats, batches):
    totals, count = None, 0
    for x in batches:
      stats = batch_statistics(params, batch_stats, x)
      totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
      count += 1
    if not count:
      raise ValueError('Population statistics need at least one training batch; got none.')
    return jax.tree.map(lambda total: total / count, totals)

  return population_statistics


def compute_population_statistics(
  model: nn.Module, params: object, batch_stats: object, batches: Iterable[jax.Array]
) -> object:
  """One-off `population_statistics_fn(model)(params, batch_stats, batches)`."""
  return population_statistics_fn(model)(params, batch_stats, batches)
