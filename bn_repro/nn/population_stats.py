"""Population statistics for inference: the paper's Algorithm 2 (PreciseBN, Wu & Johnson 2021).

Over K training mini-batches of the frozen network (each of m values per statistic), each
BN layer's inference statistics replace the moving averages. Two estimators:

- 'algorithm2' (the paper's Algorithm 2, steps 8-10): E[x] = the mean of the batch means,
  Var[x] = m/(m-1) times the mean of the biased batch variances.
- 'pooled' (fvcore's `update_bn_stats`, the default of PreciseBN; Wu & Johnson 2021,
  appendix): the mean and the biased variance of all K m values pooled,
  Var[x] = E_B[Var_B[x]] + E_B[mu_B^2] - E_B[mu_B]^2, which also counts how the batch means
  spread, and is better when the batches are small.
"""

from collections.abc import Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from flax.core import FrozenDict
from jax import lax

ESTIMATORS = ('algorithm2', 'pooled')


def population_statistics_fn(
  model: nn.Module, estimator: str = 'algorithm2'
) -> Callable[[object, object, Iterable], object]:
  """Returns `fn(params, batch_stats, batches) -> batch_stats` of Algorithm 2, compiled once.

  Args:
    model: a bn_repro model (its normalization is its `norm` mapping), built without an
      `axis_name` (this runs on one device).
    estimator: 'algorithm2' or 'pooled' (module docstring).

  The returned function takes the trained network (frozen: params are not
  changed) and K preprocessed training batches (an iterable of `(m, ...)` arrays, or one
  `(K, m, ...)` array), and returns new `batch_stats` holding the population statistics.
  A forward pass in training mode with BN momentum 0 leaves each layer's stored
  statistics equal to that batch's mean and unbiased (m/(m-1)) variance
  (`bn_repro.nn.batch_norm.BatchNorm`; with a group size, the group averages), so
  averaging them over the K batches is exactly Algorithm 2, steps 8-10. The K passes run
  in one program (a scan summing in batch order), not one call per batch. The pooled
  estimator stores the biased batch variances instead and sums the squared batch means too.

  Raises:
    ValueError: an unknown estimator, or 'pooled' with BN statistics groups (the squared
      means of the groups are not kept).
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f'Unknown population estimator {estimator!r}; expected one of {ESTIMATORS}.')
  pooled = estimator == 'pooled'
  if pooled and model.norm.get('group_size') is not None:
    raise ValueError(
      f"The 'pooled' population estimator needs whole-batch statistics; model.norm.group_size"
      f'={model.norm["group_size"]}. Use the algorithm2 estimator, or no group size.'
    )
  running_variance = 'biased' if pooled else 'unbiased'
  per_batch = model.clone(
    norm=FrozenDict(
      {**model.norm, 'momentum': 0.0, 'running_variance': running_variance, 'freeze_from': None}
    )
  )

  def batch_statistics(params, batch_stats, x):
    _, updates = per_batch.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=False,
      batch_statistics=True,
      mutable=['batch_stats'],
    )
    return updates['batch_stats']

  def with_squares(stats):
    return stats, jax.tree.map(jnp.square, stats) if pooled else None

  @jax.jit
  def mean_over_batches(params, batch_stats, stacked):
    def add(total, x):
      return jax.tree.map(
        jnp.add, total, with_squares(batch_statistics(params, batch_stats, x))
      ), None

    first = with_squares(batch_statistics(params, batch_stats, stacked[0]))
    total, _ = lax.scan(add, first, stacked[1:])
    means, mean_squares = jax.tree.map(lambda t: t / stacked.shape[0], total)
    statistics = _pooled_variances(means, mean_squares) if pooled else means
    # Counters (FrozenBN's step) are not statistics: they keep their values.
    return jax.tree.map(
      lambda new, old: new if jnp.issubdtype(old.dtype, jnp.floating) else old,
      statistics,
      batch_stats,
    )

  def population_statistics(params, batch_stats, batches):
    stacked = batches if hasattr(batches, 'ndim') else jnp.stack(list(batches))
    if not stacked.shape[0]:
      raise ValueError('Population statistics need at least one training batch; got none.')
    return mean_over_batches(params, batch_stats, stacked)

  return population_statistics


def _pooled_variances(means: object, mean_squares: object) -> object:
  """`means` (batch_stats averaged over the batches) with each layer's `var` replaced by the
  pooled variance E_B[var_B] + E_B[mu_B^2] - E_B[mu_B]^2 (`mean_squares`: the batch_stats
  squared, then averaged)."""
  flat, squares = traverse_util.flatten_dict(means), traverse_util.flatten_dict(mean_squares)
  for path in flat:
    if path[-1] == 'var':
      mean_path = path[:-1] + ('mean',)
      flat[path] = flat[path] + squares[mean_path] - jnp.square(flat[mean_path])
  return traverse_util.unflatten_dict(flat)


def compute_population_statistics(
  model: nn.Module,
  params: object,
  batch_stats: object,
  batches: Iterable[jax.Array],
  estimator: str = 'algorithm2',
) -> object:
  """One-off `population_statistics_fn(model, estimator)(params, batch_stats, batches)`."""
  return population_statistics_fn(model, estimator)(params, batch_stats, batches)
