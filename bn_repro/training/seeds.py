"""Seeds side by side: one program trains S runs of a config (`config.num_seeds`), their
params, optimizer state and BN statistics stacked on a leading seed axis (the step counter
shared), each run vmapped through the step. This module turns the stack into runs.
"""

import jax

from bn_repro.training.state import TrainState


def seed_axes(state: TrainState) -> TrainState:
  """The vmap axes of a multi-seed TrainState: seeds lead every array but the step counter."""
  return state.replace(step=None, params=0, opt_state=0, batch_stats=0)


def seed_state(state: TrainState, index: int, num_seeds: int) -> TrainState:
  """Run `index` of a multi-seed TrainState as a single-run state (`state` for one seed)."""
  if num_seeds == 1:
    return state

  def take(tree):
    return jax.tree.map(lambda x: x[index], tree)

  return state.replace(
    params=take(state.params), opt_state=take(state.opt_state), batch_stats=take(state.batch_stats)
  )


def seed_states(state: TrainState, num_seeds: int) -> list[TrainState]:
  """The runs of a multi-seed TrainState as single-run states (`[state]` for one seed)."""
  return [seed_state(state, i, num_seeds) for i in range(num_seeds)]
