"""What studies 10-12 (Santurkar et al. 2018's tests of the paper's explanation) share.

Arms, each trained once into `WORKDIR/santurkar/...` with its checkpoints kept, and reused by
every study of the three that needs it (`train`):
- `mlp/ARM_lrLR`: the MNIST MLP (`configs/mnist.py`) arm ARM of `MLP_ARMS` at a constant
  learning rate, 3 seeds side by side, NUM_STEPS steps, a checkpoint every PROBE_EVERY,
  population statistics (Algorithm 2, 100 batches, no noise: `population_stats`) at the end;
- `mlp_early/ARM_lrLR`: the same config, seeds and batches for the first EARLY_STEPS steps
  with a checkpoint every EARLY_PROBE_EVERY (the early phase the grid above skips);
- `proxy/ARM_seedS`: the Inception proxy (`configs/inception.py:bn_baseline,small` as the
  studies train it) arm ARM of `PROXY_ARMS`, seeds 0, 1, 2 as separate runs, PROXY_STEPS
  steps at constant LR 0.01, a checkpoint every PROXY_PROBE_EVERY.
`probe_trajectories` evaluates a probe of `bn_repro.analysis.optimization_probes` on the saved
states: at step 0 (the initialization) and at every checkpoint of the grid, per seed, on a
training batch of the config's batch size drawn for that (step, seed), BN in training mode
(batch statistics inside the gradient) and, for noisy BN, one fixed draw of its noise per
probe.
"""

import dataclasses
import functools
import pathlib
import re
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np

from bn_repro.studies.common import Arm, StudyContext, initial_network, train_arms
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.seeds import seed_state
from bn_repro.training.steps import cross_entropy_loss, model_rngs

SHARED_DIRECTORY = 'santurkar'
NUM_SEEDS = 3
NUM_STEPS = 10_000
PROBE_EVERY = 1_000
EARLY_STEPS = 500
EARLY_PROBE_EVERY = 50
POPULATION_BATCHES = 100
PROXY_STEPS = 3_000
PROXY_PROBE_EVERY = 500
PROXY_EVAL_EVERY = 1_000
PROXY_SEEDS = (0, 1, 2)
PROXY_LEARNING_RATE = 0.01  # The studies' constant proxy rate (`common.StudyContext.config`).


def _noise(magnitude: float) -> dict[str, float]:
  return {'model__norm__noise_mean': magnitude, 'model__norm__noise_std': magnitude}


FIXED_NOISE = {'model__norm__noise_redraw': 'fixed'}
# Arm -> (configs/mnist.py variant, fields): noisy BN at n_mu = n_sigma = 1 (the variant's),
# 0.3 and 0.1, and the control with its noise parameters drawn once (`batch_norm`).
MLP_ARMS = {
  'baseline': ('baseline', {}),
  'bn': ('bn', {}),
  'bn_noisy': ('bn_noisy', {}),
  'bn_noisy_0.3': ('bn_noisy', _noise(0.3)),
  'bn_noisy_0.1': ('bn_noisy', _noise(0.1)),
  'bn_noisy_fixed': ('bn_noisy', FIXED_NOISE),
}
# Arm -> fields over configs/inception.py:bn_baseline,small: no normalization (conv biases
# back, GoogLeNet's g(Wu + b)), BN, noisy BN at 1 and its fixed-noise control.
PROXY_ARMS = {
  'baseline': {'model__norm__kind': 'none', 'model__conv_bias': True},
  'bn': {},
  'bn_noisy': _noise(1.0),
  'bn_noisy_fixed': {**_noise(1.0), **FIXED_NOISE},
}

Probe = Callable[[Callable, dict], dict[str, jax.Array]]
Trained = tuple[ml_collections.ConfigDict, Arm]


@dataclasses.dataclass
class SanturkarArms:
  """What `train` returns: `mlp` and `early` {(arm, learning rate): (config, Arm)}, `proxy`
  {arm: [(config, Arm) of each seed in PROXY_SEEDS (the first only in smoke mode)]}."""

  mlp: dict[tuple[str, float], Trained]
  early: dict[tuple[str, float], Trained]
  proxy: dict[str, list[Trained]]


def arm_name(variant: str, learning_rate: float) -> str:
  return f'{variant}_lr{learning_rate:g}'


def _mlp_config(
  context: StudyContext, arm: str, learning_rate: float, early: bool
) -> ml_collections.ConfigDict:
  variant, fields = MLP_ARMS[arm]
  steps, every = (EARLY_STEPS, EARLY_PROBE_EVERY) if early else (NUM_STEPS, PROBE_EVERY)
  grid = (
    {} if context.smoke else {'checkpoint_every': every, 'keep_checkpoints': steps // every + 1}
  )
  if early and not context.smoke:
    grid |= {'log_every': every, 'steps_per_call': every, 'eval_every': steps}
  return context.config(
    f'configs/mnist.py:{variant}',
    num_steps=context.steps(steps),
    num_seeds=NUM_SEEDS,
    optimizer__learning_rate=learning_rate,
    population_stats__num_batches=0 if early else POPULATION_BATCHES,
    **grid,
    **fields,
  )


def _proxy_config(context: StudyContext, arm: str, seed: int) -> ml_collections.ConfigDict:
  return context.config(
    'configs/inception.py:bn_baseline,small',
    num_steps=context.steps(PROXY_STEPS),
    eval_every=context.steps(PROXY_EVAL_EVERY),
    checkpoint_every=10 if context.smoke else PROXY_PROBE_EVERY,
    keep_checkpoints=PROXY_STEPS // PROXY_PROBE_EVERY + 1,
    population_stats__num_batches=POPULATION_BATCHES,
    seed=seed,
    **PROXY_ARMS[arm],
  )


def train(
  context: StudyContext,
  mlp: Sequence[tuple[str, float]] = (),
  early: Sequence[tuple[str, float]] = (),
  proxy: Sequence[str] = (),
) -> SanturkarArms:
  """Trains (or reuses) the arms a study needs, in one pool (the long proxy runs first):
  `mlp` and `early` (arm, learning rate) pairs of MLP_ARMS, `proxy` arms of PROXY_ARMS."""
  proxy_seeds = PROXY_SEEDS[:1] if context.smoke else PROXY_SEEDS  # Smoke: one proxy seed.
  configs = {
    **{
      f'proxy/{arm}_seed{seed}': _proxy_config(context, arm, seed)
      for arm in proxy
      for seed in proxy_seeds
    },
    **{f'mlp/{arm_name(*key)}': _mlp_config(context, *key, early=False) for key in mlp},
    **{f'mlp_early/{arm_name(*key)}': _mlp_config(context, *key, early=True) for key in early},
  }
  arms = train_arms(context, configs, SHARED_DIRECTORY)

  def trained(name: str) -> Trained:
    return configs[name], arms[name]

  return SanturkarArms(
    mlp={key: trained(f'mlp/{arm_name(*key)}') for key in mlp},
    early={key: trained(f'mlp_early/{arm_name(*key)}') for key in early},
    proxy={arm: [trained(f'proxy/{arm}_seed{seed}') for seed in proxy_seeds] for arm in proxy},
  )


def probe_trajectories(
  config: ml_collections.ConfigDict, arm: Arm, probe: Probe
) -> dict[str, np.ndarray]:
  """`probe(value_and_grad, params)` at step 0 and at every step of the probe grid (the
  multiples of `config.checkpoint_every` up to `config.num_steps`), per seed: the loss's
  gradient is compiled once, the probe runs eagerly around it.

  Returns {'steps': (T,), NAME: (T, S, ...)} for each output NAME of the probe.

  Raises:
    FileNotFoundError: a grid step has no checkpoint in the arm's workdir, naming it.
  """
  network, initial = initial_network(config)
  model, dataset, preprocess = network.model, network.dataset, network.preprocess

  @jax.jit
  def value_and_grad(params, batch_stats, images, labels, key):
    def loss_fn(p):
      logits, _ = model.apply(
        {'params': p, 'batch_stats': batch_stats},
        images,
        train=True,
        mutable=['batch_stats'],
        rngs=model_rngs(key),
      )
      return cross_entropy_loss(logits, labels)

    return jax.value_and_grad(loss_fn)(params)

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
      draw = np.random.default_rng([step, config.seed + seed])
      index = np.sort(draw.choice(len(dataset.train_labels), config.batch_size, replace=False))
      images = preprocess(dataset.train_images[index])
      key = jax.random.key(draw.integers(2**31))
      batch = functools.partial(
        value_and_grad,
        batch_stats=run.batch_stats,
        images=images,
        labels=dataset.train_labels[index],
        key=key,
      )
      result = probe(batch, run.params)
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
