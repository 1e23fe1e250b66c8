"""What studies 10-12 (Santurkar et al. 2018's tests of the paper's explanation) share.

The MNIST MLP arms (`configs/mnist.py`: baseline, bn, bn_noisy) at a learning rate, each
3 seeds side by side, train once into `WORKDIR/santurkar_mlp/VARIANT_lrLR` with a checkpoint
every PROBE_EVERY steps kept, and every study of the three reuses the arms another already
trained. `probe_trajectories` then evaluates a probe of `bn_repro.analysis.optimization_probes`
on the saved states: at step 0 (the initialization) and at every checkpoint, per seed, on a
training batch of 60 drawn for that (step, seed), BN in training mode (batch statistics
inside the gradient) and, for noisy BN, one fixed draw of its noise per probe.
"""

import pathlib
import re
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np

from bn_repro.studies.common import Arm, StudyContext, initial_network, train_arms
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.steps import cross_entropy_loss, model_rngs, seed_state

SHARED_DIRECTORY = 'santurkar_mlp'
NUM_SEEDS = 3
NUM_STEPS = 10_000
PROBE_EVERY = 1_000
PROBE_BATCH = 60

Probe = Callable[[Callable, dict], dict[str, jax.Array]]


def arm_name(variant: str, learning_rate: float) -> str:
  return f'{variant}_lr{learning_rate:g}'


def train_mlp_arms(
  context: StudyContext, variants: Sequence[str], learning_rates: Sequence[float]
) -> dict[tuple[str, float], tuple[ml_collections.ConfigDict, Arm]]:
  """Trains (or reuses) the MLP arms {(variant, learning rate): (config, arm)}."""
  configs = {
    (variant, lr): context.config(
      f'configs/mnist.py:{variant}',
      num_steps=context.steps(NUM_STEPS),
      num_seeds=NUM_SEEDS,
      optimizer__learning_rate=lr,
      checkpoint_every=10 if context.smoke else PROBE_EVERY,
      keep_checkpoints=NUM_STEPS // PROBE_EVERY + 1,
    )
    for variant in variants
    for lr in learning_rates
  }
  arms = train_arms(
    context, {arm_name(*key): config for key, config in configs.items()}, SHARED_DIRECTORY
  )
  return {key: (config, arms[arm_name(*key)]) for key, config in configs.items()}


def probe_trajectories(
  config: ml_collections.ConfigDict, arm: Arm, probe: Probe
) -> dict[str, np.ndarray]:
  """`probe(loss_fn, params)` at step 0 and at every step of the probe grid (the multiples
  of `config.checkpoint_every` up to `config.num_steps`), per seed.

  Returns {'steps': (T,), NAME: (T, S, ...)} for each output NAME of the probe.

  Raises:
    FileNotFoundError: a grid step has no checkpoint in the arm's workdir, naming it.
  """
  network, initial = initial_network(config)
  model, dataset, preprocess = network.model, network.dataset, network.preprocess

  @jax.jit
  def evaluate(params, batch_stats, images, labels, key):
    def loss_fn(p):
      logits, _ = model.apply(
        {'params': p, 'batch_stats': batch_stats},
        images,
        train=True,
        mutable=['batch_stats'],
        rngs=model_rngs(key),
      )
      return cross_entropy_loss(logits, labels)

    return probe(loss_fn, params)

  checkpointer = Checkpointer(arm.workdir / 'checkpoints', read_only=True)
  try:
    steps = probe_steps(config, checkpointer.all_steps(), arm.workdir / 'checkpoints')
  except FileNotFoundError:
    checkpointer.close()
    raise
  values = []
  for step in steps:
    state = initial if step == 0 else checkpointer.restore(step, initial)
    per_seed = []
    for seed in range(config.num_seeds):
      run = seed_state(state, seed, config.num_seeds)
      draw = np.random.default_rng([step, seed])
      index = np.sort(draw.choice(len(dataset.train_labels), PROBE_BATCH, replace=False))
      images = preprocess(dataset.train_images[index])
      key = jax.random.key(draw.integers(2**31))
      result = evaluate(run.params, run.batch_stats, images, dataset.train_labels[index], key)
      per_seed.append(jax.tree.map(np.asarray, result))
    values.append(per_seed)
  checkpointer.close()
  names = values[0][0].keys()
  stacked = {name: np.array([[seed[name] for seed in v] for v in values]) for name in names}
  return {'steps': np.array(steps), **stacked}


def probe_steps(
  config: ml_collections.ConfigDict, kept: list[int], where: pathlib.Path
) -> list[int]:
  """Step 0 and the probe grid, the multiples of `config.checkpoint_every` up to
  `config.num_steps`; a checkpoint off the grid (a stop's) is not probed.

  Raises:
    FileNotFoundError: a grid step is not among the `kept` checkpoints in `where`.
  """
  grid = list(range(config.checkpoint_every, config.num_steps + 1, config.checkpoint_every))
  if missing := sorted(set(grid) - set(kept)):
    raise FileNotFoundError(
      f'{where} lacks the checkpoints of probe steps {missing} (it holds {kept}); train the '
      'arm again with --overwrite.'
    )
  return [0, *grid]


def layer_groups(params: dict) -> list[str]:
  """The MLP's top-level parameter groups from input to output (dense0, bn0, ..., logits)."""
  hidden = sorted({int(m[2]) for k in params if (m := re.fullmatch(r'(dense|bn)(\d+)', k))})
  ordered = [f'{kind}{i}' for i in hidden for kind in ('dense', 'bn')] + ['logits']
  return [name for name in ordered if name in params]


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Median, min and max over the seed axis 1 of `(T, S)` values."""
  return np.median(values, axis=1), values.min(axis=1), values.max(axis=1)
