"""Ensemble evaluation: average the class probabilities of several models (the paper's
6-model BN-Inception ensemble, Sec. 4.2.3), counted exactly over a padded split.
"""

from collections.abc import Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.sharding import gathered_to_host, put_global
from bn_repro.steps import AXIS, TrainState


def make_predict_fn(
  model: nn.Module, preprocess: Callable[[jax.Array], jax.Array], mesh: Mesh
) -> Callable[[TrainState, jax.Array], jax.Array]:
  """Jitted `(state, images (B, ...)) -> class probabilities (B, K)`, inference mode."""

  def predict(state, images):
    logits = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, preprocess(images), train=False
    )
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS)))


def evaluate_ensemble(
  predict_fn: Callable[[TrainState, jax.Array], jax.Array],
  states: Sequence[TrainState],
  batches: Iterable[tuple[jax.Array, jax.Array, jax.Array]],
  mesh: Mesh,
) -> dict[str, float]:
  """Top-1 and top-5 accuracy of the mean of the members' probabilities.

  Args:
    predict_fn: from `make_predict_fn`.
    states: the members (same model, e.g. checkpoints of several runs).
    batches: sharded (images, labels, mask) batches; mask False marks padding.

  Returns:
    {'accuracy', 'top5_accuracy', 'count'} over the examples whose mask is True.
  """
  states = [put_global(s, NamedSharding(mesh, P())) for s in states]
  correct = correct5 = count = 0
  for images, labels, mask in batches:
    probs = np.mean([gathered_to_host(predict_fn(s, images)) for s in states], axis=0)
    labels, mask = gathered_to_host((labels, mask))
    top5 = np.argsort(-probs, axis=-1)[:, :5]
    correct += int(np.sum((np.argmax(probs, -1) == labels) & mask))
    correct5 += int(np.sum(np.any(top5 == labels[:, None], axis=-1) & mask))
    count += int(mask.sum())
  return {'accuracy': correct / count, 'top5_accuracy': correct5 / count, 'count': count}
