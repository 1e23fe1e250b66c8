"""Seeds side by side: one program trains S runs of a config (`config.num_seeds`).

Everything the feature needs, in one place:
- Stacking: the runs' params, optimizer state and BN statistics are stacked on a leading
  seed axis, the step counter shared (`seed_axes`); `stacked_init` builds the stack by
  vmapping a one-run init over the seeds `seed`..`seed + S - 1`.
- Stepping: `over_seeds` vmaps a one-run step over the stack, each run its own seed.
- Splitting: `seed_state(s)` turn the stack back into single-run states.
- Naming: a run's per-seed copy of a scalar `PREFIX/NAME` is `PREFIX_seedI/NAME`
  (`seed_tag`, matched by `SEED_TAG`; metrics.jsonl only: TensorBoard shows each seed as
  its own run, `training/dashboards.py`), the seeds' spread `PREFIX_seed_sd/NAME`
  (`spread_tag`).

States are `TrainState`s (`training/state.py`), handled here only through `.replace`.
"""

import re
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

State = TypeVar('State')

# A per-seed copy of a scalar: 'eval_seed1/accuracy' (not the spread, 'eval_seed_sd/...').
SEED_TAG = re.compile(r'^(?P<prefix>[^/]+)_seed(?P<seed>\d+)/(?P<name>.+)$')


def seed_tag(tag: str, index: int) -> str:
  """`('eval/accuracy', 1)` -> `'eval_seed1/accuracy'`: run `index`'s copy of `tag`."""
  prefix, name = tag.split('/', 1)
  return f'{prefix}_seed{index}/{name}'


def spread_tag(tag: str) -> str:
  """`'eval/accuracy'` -> `'eval_seed_sd/accuracy'`: the seeds' standard deviation of `tag`."""
  prefix, name = tag.split('/', 1)
  return f'{prefix}_seed_sd/{name}'


def seed_axes(state: State) -> State:
  """The vmap axes of a multi-seed TrainState: seeds lead every array but the step counter."""
  return state.replace(step=None, params=0, opt_state=0, batch_stats=0)


def stacked_init(
  init: Callable[[jax.Array, object], State],
  seed: int,
  num_seeds: int,
  batch: object,
  per_run: bool,
) -> State:
  """`init(seed, batch)` for the seeds `seed`..`seed + num_seeds - 1`, stacked (the step
  counter shared); `batch` has a leading seed axis if `per_run` (each run's own), else one
  batch serves every run."""
  states = jax.vmap(init, in_axes=(0, 0 if per_run else None))(seed + jnp.arange(num_seeds), batch)
  return states.replace(step=states.step[0])


def over_seeds(
  one_step: Callable[[State, object, jax.Array], tuple[State, object]], num_seeds: int
) -> Callable[[State, object, jax.Array], tuple[State, object]]:
  """`one_step(state, per_step, run_seed)` of one run -> the same over a stack of
  `num_seeds` runs whose `per_step` and metrics carry a leading seed axis, run I seeded
  `first_seed + I` (the returned function takes `first_seed`)."""
  if num_seeds == 1:
    return one_step

  def step(state: State, per_step: object, first_seed: jax.Array) -> tuple[State, object]:
    axes = seed_axes(state)
    seeds = first_seed + jnp.arange(num_seeds)
    return jax.vmap(one_step, in_axes=(axes, 0, 0), out_axes=(axes, 0))(state, per_step, seeds)

  return step


def seed_state(state: State, index: int, num_seeds: int) -> State:
  """Run `index` of a multi-seed TrainState as a single-run state (`state` for one seed)."""
  if num_seeds == 1:
    return state

  def take(tree):
    return jax.tree.map(lambda x: x[index], tree)

  return state.replace(
    params=take(state.params), opt_state=take(state.opt_state), batch_stats=take(state.batch_stats)
  )


def seed_states(state: State, num_seeds: int) -> list[State]:
  """The runs of a multi-seed TrainState as single-run states (`[state]` for one seed)."""
  return [seed_state(state, i, num_seeds) for i in range(num_seeds)]
