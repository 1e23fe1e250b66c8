"""The ensemble evaluator on fixed-logit fake models: averaging probabilities, exact counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.ensemble import evaluate_ensemble, make_predict_fn
from bn_repro.inputs import padded_batches
from bn_repro.steps import TrainState, create_mesh


class FixedLogits(nn.Module):
  """A fake model: the image's single pixel holds the example id; returns its row of the
  member's fixed logit table (a parameter, so each member has its own)."""

  num_examples: int
  num_classes: int

  @nn.compact
  def __call__(self, x, *, train):
    del train
    table = self.param('table', nn.initializers.zeros, (self.num_examples, self.num_classes))
    return table[x.reshape(x.shape[0]).astype(jnp.int32)]


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_ensemble_averages_probabilities_and_counts_each_example_once():
  rng = np.random.default_rng(0)
  n, k = 13, 7
  tables = [rng.normal(size=(n, k)) * scale for scale in (1.0, 4.0, 0.5)]
  labels = rng.integers(0, k, n).astype(np.int32)
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
  members = [
    TrainState.create(
      apply_fn=None,
      params={'table': jnp.asarray(t, jnp.float32)},
      batch_stats={},
      tx=optax.identity(),
    )
    for t in tables
  ]
  mesh = create_mesh(4)
  sharding = NamedSharding(mesh, P('batch'))
  batches = [jax.device_put(b, sharding) for b in padded_batches(images, labels, 8)]
  predict = make_predict_fn(FixedLogits(n, k), lambda x: x, mesh)
  metrics = evaluate_ensemble(predict, members, batches, mesh)

  probs = np.mean([_softmax(t) for t in tables], axis=0)
  assert metrics['count'] == n
  assert metrics['accuracy'] == pytest.approx(np.mean(probs.argmax(-1) == labels))
  top5 = np.argsort(-probs, -1)[:, :5]
  assert metrics['top5_accuracy'] == pytest.approx(np.mean(np.any(top5 == labels[:, None], -1)))
  # Averaging probabilities is not averaging logits; these tables tell them apart.
  assert not np.array_equal(probs.argmax(-1), np.mean(tables, axis=0).argmax(-1))
