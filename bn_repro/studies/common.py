"""What every normalization study shares: training its arms, reading their curves,
restoring a trained network, and writing its figure, table and record.

A study trains its arms with the ordinary trainer (`bn_repro.training.train`) into
`WORKDIR/<study>/<arm>` (a finished arm is reused, an interrupted one resumes)
and writes `OUT/<study>/{figure.png, table.md, summary.json}`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging as std_logging
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from bn_repro import models
from bn_repro.configuration.files import load_config, override
from bn_repro.data import datasets, transforms
from bn_repro.records import read_metrics
from bn_repro.studies import pool, workers
from bn_repro.training import console, train
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.diagnostics import TrainingDivergedError
from bn_repro.training.seeds import seed_tag
from bn_repro.training.state import TrainState, create_train_state

Curve = list[tuple[int, float]]

# A study's own verdict on a claim, by the rule in its docstring (`reports.judges.study_claim`
# maps them onto the report's).
HOLDS, PARTLY, DOES_NOT_HOLD, NOT_TESTABLE = 'holds', 'partly', 'does not hold', 'not testable here'


def count_verdict(hits: int, total: int) -> str:
  """HOLDS where a rule's condition held in all `total` cases, PARTLY in some, else
  DOES_NOT_HOLD."""
  return HOLDS if hits == total else PARTLY if hits else DOES_NOT_HOLD


def verdict_lines(verdicts: dict[str, dict[str, object]]) -> list[str]:
  """A table.md's closing lines: each claim's verdict and what it turned on."""
  return [f'- {claim}: **{v["verdict"]}** ({v["said"]})' for claim, v in verdicts.items()]


# Seeds side by side in every arm a study compares: its table gives each number's
# mean and range over them, its summary.json each seed's value (`reports.formatting`).
NUM_SEEDS = 3


# The Inception proxy as the studies train it: all 60,000 training images, base LR 0.01,
# shorter runs than the table's at a constant rate (the table's subset, calibrated rate and
# compressed decay schedule are part of its own design, configs/inception.py), evaluated on
# the whole test set every 250 steps (and at eval_every set by the study).
_SMALL_INCEPTION_IN_STUDIES = {
  'schedule__name': 'constant',
  'input__train_subset_size': None,
  'optimizer__learning_rate': 0.01,
  'eval_every': 250,
  'eval__extra_steps': (),
  'eval__num_examples': None,
}
_SMALL_INCEPTION_SMOKE = {
  'model__width': 1 / 32,
  'log_every': 10,
  'checkpoint_every': 10,
  'eval__num_examples': 1_000,  # A tenth of the test set: a smoke run checks the plumbing.
}


@dataclasses.dataclass
class StudyContext:
  """Where a study writes and how big it runs.

  Attributes:
    name: the study's name (its directory under `workdir` and `out`).
    workdir: root of the arms' training directories.
    out: root of the results.
    smoke: tiny runs (the `smoke` config option, few steps) for tests; results of
      a smoke run are not findings.
    jobs: arms trained at a time by `train_arms`: 1 trains them one after another in
      this process; more runs them in as many worker processes, each on one core
      (two single-threaded programs beat one two-threaded program on small models:
      study 9 in results/studies/README.md).
    overwrite: delete each arm's earlier run and train it again.
  """

  name: str
  workdir: pathlib.Path
  out: pathlib.Path
  smoke: bool = False
  jobs: int = 1
  overwrite: bool = False

  @property
  def out_dir(self) -> pathlib.Path:
    return self.out / self.name

  def steps(self, full: int) -> int:
    """`full` training steps, or 20 in smoke mode."""
    return 20 if self.smoke else full

  def config(self, spec: str, **fields: object) -> ml_collections.ConfigDict:
    """`configs/FILE.py:ARG` with `fields` overridden; tiny in smoke mode.

    Smoke mode appends the `smoke` option, except to the Inception proxy (`,small`),
    whose smoke option would switch to ImageNet: that one is only narrowed. Studies
    train on one device (their batches of 32 or 60 do not split over every mesh).
    """
    defaults = {'num_devices': 1}
    if spec.endswith(',small'):
      defaults |= _SMALL_INCEPTION_IN_STUDIES
      defaults |= _SMALL_INCEPTION_SMOKE if self.smoke else {}
    elif self.smoke:
      spec += ',smoke'
    return override(load_config(spec), **{**defaults, **fields})


@dataclasses.dataclass
class Arm:
  """One finished (or diverged) training run of a study.

  Attributes:
    scalars: every logged tag -> [(step, value)].
    diverged_at: the step whose loss became non-finite, or None.
    workdir: its training directory.
  """

  scalars: dict[str, Curve]
  diverged_at: int | None
  workdir: pathlib.Path

  def curve(self, tag: str) -> Curve:
    return self.scalars.get(tag, [])

  def final(self, tag: str) -> float | None:
    curve = self.curve(tag)
    return curve[-1][1] if curve else None

  def seed_curves(self, tag: str) -> list[Curve]:
    """Each seed's curve of `PREFIX/NAME` (`PREFIX_seedI/NAME` of a run of several seeds side
    by side; `[curve(tag)]` for one seed; [] when it was never logged)."""
    curves = []
    while curve := self.curve(seed_tag(tag, len(curves))):
      curves.append(curve)
    return curves or [c for c in [self.curve(tag)] if c]

  def seed_finals(self, tag: str) -> list[float]:
    """Each seed's last value of `tag` (`seed_curves`)."""
    return [curve[-1][1] for curve in self.seed_curves(tag)]

  def seed_errors(self, tag: str = 'eval/accuracy', seeds: int = NUM_SEEDS) -> list[float]:
    """Each seed's final error in points, 100 (1 - `tag`); chance (90: ten classes) for
    each of the `seeds` of a diverged arm, whose seeds side by side stop together."""
    if self.diverged_at is not None:
      return [90.0] * seeds
    return [100.0 * (1.0 - accuracy) for accuracy in self.seed_finals(tag)]

  def steps_to(self, tag: str, threshold: float) -> int | None:
    """The first step at which `tag` reached `threshold`, or None."""
    return next((s for s, v in self.curve(tag) if v >= threshold), None)

  def seconds_per_step(self) -> float | None:
    """Wall time per step after the first logging period (which holds the compilation)."""
    elapsed = self.curve('train/elapsed_s')
    if len(elapsed) < 2:
      return None
    (first_step, first), (last_step, last) = elapsed[0], elapsed[-1]
    return (last - first) / (last_step - first_step)


def seed_arms(
  name: str, config: ml_collections.ConfigDict, side_by_side: bool
) -> dict[str, ml_collections.ConfigDict]:
  """The arms that train `config` with NUM_SEEDS seeds: one arm `name` of the seeds side by
  side (`config.num_seeds`), or, for models whose seeds train best as separate programs (the
  Inception proxy), one arm `name_seedI` per seed (seed `config.seed + I`)."""
  if side_by_side:
    return {name: override(config, num_seeds=NUM_SEEDS)}
  return {f'{name}_seed{i}': override(config, seed=config.seed + i) for i in range(NUM_SEEDS)}


@dataclasses.dataclass
class SeededArm:
  """The NUM_SEEDS seeds of one setting, as `seed_arms` trained them (one or several arms)."""

  arms: list[Arm]

  @classmethod
  def collect(cls, trained: dict[str, Arm], name: str) -> SeededArm:
    """The seeds of `name` among `train_arms`' results for `seed_arms(name, ...)`."""
    if name in trained:
      return cls([trained[name]])
    return cls([trained[f'{name}_seed{i}'] for i in range(NUM_SEEDS)])

  @property
  def diverged_at(self) -> int | None:
    """The first step at which any seed's loss was not finite, or None."""
    return min((a.diverged_at for a in self.arms if a.diverged_at is not None), default=None)

  def curves(self, tag: str) -> list[Curve]:
    """Each seed's curve of `tag`."""
    return [curve for arm in self.arms for curve in arm.seed_curves(tag)]

  def finals(self, tag: str) -> list[float | None]:
    """Each seed's last value of `tag`; None for the seeds of a diverged arm (the seeds side
    by side stop together at the first non-finite loss)."""
    seeds_per_arm = NUM_SEEDS if len(self.arms) == 1 else 1
    finals = []
    for arm in self.arms:
      finals += [None] * seeds_per_arm if arm.diverged_at is not None else arm.seed_finals(tag)
    return finals


def train_arm(context: StudyContext, arm: str, config: ml_collections.ConfigDict) -> Arm:
  """Trains (or resumes, or reuses) one arm; divergence is a result, not an error."""
  return _train_arm(context, context.name, arm, config)


def _train_arm(
  context: StudyContext, directory: str, arm: str, config: ml_collections.ConfigDict
) -> Arm:
  workdir = context.workdir / directory / arm
  print(f'[{context.name}] arm {arm!r}: {config.num_steps} steps into {workdir}', flush=True)
  diverged_at = _train(f'{context.name}/{arm}', config, workdir, context.overwrite)
  return Arm(read_metrics(workdir), diverged_at, workdir)


def train_arms(
  context: StudyContext, arms: dict[str, ml_collections.ConfigDict], directory: str | None = None
) -> dict[str, Arm]:
  """Trains (or resumes, or reuses) every arm {name: config}, `context.jobs` at a time.

  The arms train into `context.workdir / directory / name`; `directory` defaults to the
  study's name, and studies that share arms name a common one (a finished arm is reused).
  With jobs > 1 each arm runs in a worker process of its own, single-threaded (XLA_FLAGS
  set for the workers only), its log lines prefixed with the arm's name
  (`bn_repro.studies.pool`). A failure other than divergence, or a signal, stops the
  study at once (`pool.StudyStoppedError`, naming the arm).
  """
  directory = directory or context.name
  if context.jobs == 1:
    return {name: _train_arm(context, directory, name, config) for name, config in arms.items()}
  started = time.perf_counter()
  workdirs = {name: context.workdir / directory / name for name in arms}
  print(
    f'[{context.name}] {len(arms)} arms, {context.jobs} at a time (one core each), '
    f'into {context.workdir / directory}',
    flush=True,
  )

  def report(name: str, done: int) -> None:
    elapsed = time.perf_counter() - started
    eta = elapsed / done * (len(arms) - done)
    print(
      f'[{context.name}] {done}/{len(arms)} arms done ({name}); '
      f'{elapsed / 60:.1f} min so far, about {eta / 60:.1f} min to go',
      flush=True,
    )

  tasks = [
    pool.Task(name, f'{context.name}/{name}', arms[name], workdirs[name])
    for name in workers.compile_once_order(arms)
  ]
  flags = os.environ.get('XLA_FLAGS', '')
  os.environ['XLA_FLAGS'] = f'{flags} {workers.SINGLE_THREADED_XLA_FLAGS}'.strip()
  try:  # Spawned workers copy the environment when they start.
    train = functools.partial(_train, overwrite=context.overwrite)
    diverged = pool.run_tasks(tasks, context.jobs, train, report)
  finally:
    os.environ['XLA_FLAGS'] = flags
    if not flags:
      del os.environ['XLA_FLAGS']
  return {name: Arm(read_metrics(workdirs[name]), diverged[name], workdirs[name]) for name in arms}


def _train(
  label: str, config: ml_collections.ConfigDict, workdir: pathlib.Path, overwrite: bool = False
) -> int | None:
  """Trains one arm (here or in a worker); returns the step it diverged at, or None."""
  with _log_prefix(f'[{label}] '):
    try:
      train.train_and_evaluate(config, workdir, overwrite=overwrite)
    except TrainingDivergedError as error:
      print(f'[{label}] diverged at step {error.step}.', flush=True)
      return error.step
  return None


@contextlib.contextmanager
def _log_prefix(prefix: str) -> Iterator[None]:
  """While active, what `console.OwnInfoOnly` passes goes to stderr as `PREFIX message`."""
  logger = logging.get_absl_logger()
  handler = std_logging.StreamHandler(sys.stderr)
  handler.setFormatter(std_logging.Formatter(f'{prefix}%(message)s'))
  handler.addFilter(console.OwnInfoOnly())
  saved = logger.handlers[:], logger.propagate, logging.get_verbosity()
  logger.handlers, logger.propagate = [handler], False
  logging.set_verbosity(logging.INFO)
  try:
    yield
  finally:
    logger.handlers, logger.propagate = saved[0], saved[1]
    logging.set_verbosity(saved[2])


@dataclasses.dataclass
class TrainedNetwork:
  """A trained network restored on one device, with its data.

  Attributes:
    model: built without a mesh axis (runs on one device).
    params, batch_stats: the restored variables.
    dataset: the in-memory dataset it trained on.
    preprocess: the config's image preprocessing.
  """

  model: object
  params: object
  batch_stats: object
  dataset: datasets.InMemoryDataset
  preprocess: Callable[[jax.Array], jax.Array]

  def test_inputs(self) -> tuple[jax.Array, np.ndarray]:
    """Preprocessed test images `(N, H, W, C)` and labels `(N,)`."""
    return self.preprocess(self.dataset.test_images), self.dataset.test_labels

  def seeds(self, num_seeds: int) -> list[TrainedNetwork]:
    """The networks of a run of `num_seeds` seeds side by side (variables with a leading
    seed axis), one per seed; `[self]` for one seed."""
    if num_seeds == 1:
      return [self]
    return [
      dataclasses.replace(
        self,
        params=jax.tree.map(lambda x, i=i: x[i], self.params),
        batch_stats=jax.tree.map(lambda x, i=i: x[i], self.batch_stats),
      )
      for i in range(num_seeds)
    ]


def initial_network(config: ml_collections.ConfigDict) -> tuple[TrainedNetwork, TrainState]:
  """The network of `config` at initialization (seeded by `config.seed`, every seed for
  several) with its data, and its whole TrainState: the template checkpoints restore into."""
  dataset = datasets.load_dataset(config.input)
  model = models.create_model(config.model, dataset.num_classes)
  state = create_train_state(
    config, model, np.zeros((2,) + dataset.train_images.shape[1:], np.float32)
  )
  preprocess = transforms.get_preprocessor(config.input.preprocess, dataset.pixel_mean)
  return TrainedNetwork(model, state.params, state.batch_stats, dataset, preprocess), state


def restore(config: ml_collections.ConfigDict, checkpoint_dir: pathlib.Path) -> TrainedNetwork:
  """The newest checkpoint in `checkpoint_dir` (WORKDIR/checkpoints, WORKDIR/best_checkpoint
  or WORKDIR/population_checkpoint) of a run of `config`."""
  network, template = initial_network(config)
  checkpointer = Checkpointer(checkpoint_dir, read_only=True)
  if checkpointer.latest_step() is None:
    checkpointer.close()
    raise FileNotFoundError(f'No checkpoint in {checkpoint_dir}.')
  state = checkpointer.restore_latest(template)
  checkpointer.close()
  return dataclasses.replace(network, params=state.params, batch_stats=state.batch_stats)
