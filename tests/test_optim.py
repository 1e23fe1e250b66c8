"""`bn_repro.training.optim`'s SGD against plain `optax.sgd`, the reference, and what a
checkpoint of another optimizer state meets on restore."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bn_repro.configuration.files import load_config, override
from bn_repro.training import optim
from bn_repro.training.checkpointing import Checkpointer, CheckpointStructureError
from bn_repro.training.state import TrainState


@pytest.mark.parametrize('momentum', [0.0, 0.9])
def test_a_constant_rate_is_state_with_sgds_updates_and_one_program_for_every_rate(momentum):
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}
  grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
  programs = set()
  for rate in (0.5, 2.0):
    config = override(
      load_config('configs/mnist.py:bn'),
      optimizer__learning_rate=rate,
      optimizer__momentum=momentum,
      optimizer__weight_decay=0.0,
    )
    ours, reference = optim.create_optimizer(config), optax.sgd(rate, momentum=momentum or None)
    update, reference_update = jax.jit(ours.update), jax.jit(reference.update)
    state, reference_state = ours.init(params), reference.init(params)
    for _ in range(3):  # Momentum's trace builds up over steps.
      updates, state = update(grads, state, params)
      expected, reference_state = reference_update(grads, reference_state, params)
      jax.tree.map(np.testing.assert_array_equal, updates, expected)
    programs.add(update.lower(grads, state, params).as_text())
  assert len(programs) == 1, 'the rate is compiled into the update: one program per rate'


def test_a_checkpoint_of_another_optimizer_state_is_refused_with_its_path(tmp_path):
  params = {'w': jnp.ones((2, 3))}

  def state(tx):
    return TrainState.create(apply_fn=None, params=params, tx=tx, batch_stats={})

  checkpointer = Checkpointer(tmp_path / 'checkpoints', 2)
  checkpointer.save(state(optax.sgd(0.1)))  # The optimizer state before d235fc7.
  ours = state(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
  with pytest.raises(CheckpointStructureError, match=r'checkpoints/0 holds .* --overwrite'):
    checkpointer.restore_latest(ours)
  restored = checkpointer.restore_latest(state(optax.sgd(0.5)))  # Same structure: restores.
  np.testing.assert_array_equal(restored.params['w'], params['w'])
