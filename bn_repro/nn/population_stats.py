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
from jax import lax


def population_statistics_fn(model: nn.Module) -> Callable[[object, object, Iterable], object]:
  """Returns `fn(params, batch_stats, batches) -> batch_stats` of Algorithm 2, compiled once.

  Args:
    model: a bn_repro model (its BN layers' fields are its `bn` mapping),
      built without an `axis_name` (this runs on one device).

  The returned function takes the trained network (frozen: params are not
  changed) and K preprocessed training batches (an iterable of `(m, ...)` arrays, or one
  `(K, m, ...)` array), and returns new `batch_stats` holding the population statistics.
  A forward pass in training mode with BN momentum 0 leaves each layer's stored
  statistics equal to that batch's mean and unbiased (m/(m-1)) variance
  (`bn_repro.nn.batch_norm.BatchNorm`; with a group size, the group averages), so
  averaging them over the K batches is exactly Algorithm 2, steps 8-10. The K passes run
  in one program (a scan summing in batch order), not one call per batch.
  """
  per_batch = model.clone(norm=FrozenDict({**model.norm, 'momentum': 0.0}))

  def batch_statistics(params, batch_stats, x):
    _, updates = per_batch.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=False,
      batch_statistics=True,
      mutable=['batch_stats'],
    )
    return updates['batch_stats']

  @jax.jit
  def mean_over_batches(params, batch_stats, stacked):
    def add(total, x):
      return jax.tree.map(jnp.add, total, batch_statistics(params, batch_stats, x)), None

    first = batch_statistics(params, batch_stats, stacked[0])
    total, _ = lax.scan(add, first, stacked[1:])
    return jax.tree.map(lambda t: t / stacked.shape[0], total)

  def population_statistics(params, batch_stats, batches):
    stacked = batches if hasattr(batches, 'ndim') else jnp.stack(list(batches))
    if not stacked.shape[0]:
      raise ValueError('Population statistics need at least one training batch; got none.')
    return mean_over_batches(params, batch_stats, stacked)

  return population_statistics


def compute_population_statistics(
  model: nn.Module, params: object, batch_stats: object, batches: Iterable[jax.Array]
) -> object:
  """One-off `population_statistics_fn(model)(params, batch_stats, batches)`."""
  return population_statistics_fn(model)(params, batch_stats, batches)
