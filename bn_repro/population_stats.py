"""Population statistics for inference: the paper's Algorithm 2 (PreciseBN, Wu & Johnson 2021).

Over K training mini-batches of the frozen network, each BN layer's inference
statistics become E[x] = the mean of the batch means and Var[x] = m/(m-1) times
the mean of the biased batch variances, replacing the moving averages.
"""

from collections.abc import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp


def compute_population_statistics(
  model: nn.Module, params: object, batch_stats: object, batches: Iterable[jax.Array]
) -> object:
  """Returns new `batch_stats` holding Algorithm 2's population statistics.

  Args:
    model: a module whose BN layers take `bn_momentum` (bn_repro's models),
      built without an `axis_name` (this runs on one device).
    params, batch_stats: the trained network (frozen: params are not changed).
    batches: K preprocessed training batches `(m, ...)`, in training mode.

  A forward pass with BN momentum 0 leaves each layer's stored statistics equal to
  that batch's mean and unbiased (m/(m-1)) variance (`bn_repro.layers.BatchNorm`),
  so averaging them over the K batches is exactly Algorithm 2, steps 8-10.
  """
  per_batch = model.clone(bn_momentum=0.0)

  @jax.jit
  def batch_statistics(x):
    _, updates = per_batch.apply(
      {'params': params, 'batch_stats': batch_stats}, x, train=True, mutable=['batch_stats']
    )
    return updates['batch_stats']

  totals, count = None, 0
  for x in batches:
    stats = batch_statistics(x)
    totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
    count += 1
  if not count:
    raise ValueError('compute_population_statistics needs at least one batch.')
  return jax.tree.map(lambda total: total / count, totals)
