"""What a run shows in TensorBoard beyond the scalars every run logs.

- Text (at step 0): the config and the run record (commit, package versions, hardware,
  command), as in WORKDIR/config.json and run_info.json.
- HParams: every config field, flattened (`model.norm.momentum`), as a hyperparameter of the
  run (integers as text, so that they show as integers; the trial id is the run's folder
  relative to TensorBoard's logdir, as in its run selector), so that one
  `tensorboard --logdir=runs` lists all variants, seeds and study arms in the HParams
  table and parallel-coordinates view; their metrics are the runs' scalars
  (`eval/accuracy`, whose last value is the final one, and `eval/best_accuracy`).
  `hparams_experiment.py` puts the fields that tell a logdir's runs apart first.
- Histograms (at each evaluation): each hidden layer's nonlinearity inputs on the first
  HISTOGRAM_EXAMPLES test examples, `preactivation/layerI` (examples x units values), so
  the Distributions dashboard draws the paper's Figure 1(b, c) for every layer, and BN's
  gamma and beta, `scale_shift/layerI/gamma|beta` (named to sort after the paper's figure:
  the dashboard opens on its first group).
- One run per seed: a run of S > 1 seeds side by side in WORKDIR also writes WORKDIR/seedI
  (seed `config.seed + I`) with that seed's train and eval scalars under the single-run
  tags (`eval/accuracy`, not `eval_seedI/accuracy`), its histograms and its hparams, so
  TensorBoard's run selector compares seeds. WORKDIR's own run holds the seeds' mean
  (`eval/accuracy`) and standard deviation (`eval_seed_sd/accuracy`): one place per number
  (the per-seed tags stay in WORKDIR/metrics.jsonl for scripts). WORKDIR's own histograms
  are seed 0's (`config.seed`'s) when it has one seed; with several they live in the seed
  runs only.
"""

import json
import pathlib
import re

import numpy as np

from bn_repro.training.tensorboard import SummaryWriter, truncate_events

HISTOGRAM_EXAMPLES = 1_000  # 100,000 values per MLP layer: 5 ms to bin.


def flatten_config(config: dict, prefix: str = '') -> dict[str, bool | int | float | str]:
  """`{'model': {'norm': {'momentum': 0.99}}}` -> `{'model.norm.momentum': 0.99}`; values that
  are not bool, int, float or str (tuples, None) become their JSON text."""
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(flatten_config(value, f'{name}.'))
    elif isinstance(value, bool | int | float | str):
      flat[name] = value
    else:
      flat[name] = json.dumps(value)
  return flat


def seed_logdir(workdir: pathlib.Path, index: int) -> pathlib.Path:
  """Where seed `index` of a multi-seed run writes its own TensorBoard run."""
  return pathlib.Path(workdir) / f'seed{index}'


class Dashboards:
  """A run's text, hparams, histograms and per-seed runs (module docstring).

  `writer` is the run's own SummaryWriter (WORKDIR); `step` the step the run starts from
  (text and hparams are written at a fresh start only: a resumed run keeps its step-0
  events); `enabled` False on every process but 0.
  """

  def __init__(
    self,
    writer: SummaryWriter,
    workdir: pathlib.Path,
    config_json: str,
    run_info_json: str,
    step: int,
    enabled: bool,
  ):
    config = json.loads(config_json)
    self._writer = writer
    self._seed_writers = []
    if config['num_seeds'] > 1:
      for index in range(config['num_seeds']):
        if enabled:
          truncate_events(seed_logdir(workdir, index), step)
        self._seed_writers.append(
          SummaryWriter(seed_logdir(workdir, index), enabled, metrics_file=False)
        )
    if step:
      return
    hparams = {
      name: str(value) if type(value) is int else value
      for name, value in flatten_config(config).items()
    }
    writer.write_hparams(hparams)
    writer.write_text(
      0,
      {
        'config': f'```\n{config_json}\n```',
        'run_info': f'```\n{run_info_json}\n```',
      },
    )
    for index, seed_writer in enumerate(self._seed_writers):
      seed_hparams = {**hparams, 'seed': str(config['seed'] + index), 'num_seeds': '1'}
      seed_writer.write_hparams(seed_hparams)

  def write_train_scalars(self, step: int, per_seed: dict[str, np.ndarray]) -> None:
    """Train scalars `{tag: (S,) values}` into the seed runs (a no-op for one seed)."""
    for index, seed_writer in enumerate(self._seed_writers):
      seed_writer.write_scalars(step, {tag: float(v[index]) for tag, v in per_seed.items()})

  def write_evaluation(
    self,
    step: int,
    prefix: str,
    seed_metrics: list[dict[str, float]],
    preactivations: list[dict[str, np.ndarray]],
    params: list[dict],
  ) -> None:
    """Each seed's evaluation metrics `[{NAME: value}]` as its run's `PREFIX/NAME` (with
    several seeds), and each seed's histograms: its preactivations `{preactivationI: (N, U)}`
    and parameters."""
    for index, seed_writer in enumerate(self._seed_writers):
      seed_writer.write_scalars(
        step, {f'{prefix}/{name}': value for name, value in seed_metrics[index].items()}
      )
    for index, seed_writer in enumerate(self._seed_writers or [self._writer]):
      seed_writer.write_histograms(step, _histograms(preactivations[index], params[index]))

  def close(self) -> None:
    for seed_writer in self._seed_writers:
      seed_writer.close()


def _histograms(preactivations: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
  histograms = {
    f'preactivation/layer{name.removeprefix("preactivation")}': values[:HISTOGRAM_EXAMPLES]
    for name, values in preactivations.items()
  }
  for group, values in params.items():
    if (match := re.fullmatch(r'bn(\d+)', group)) is not None:
      for field, label in (('scale', 'gamma'), ('bias', 'beta')):
        if field in values:
          histograms[f'scale_shift/layer{match[1]}/{label}'] = np.asarray(values[field])
  return histograms
