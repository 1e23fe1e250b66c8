r"""Figure 2 analog and the "steps to match Inception" table from finished variant runs.

  python scripts/plot_inception.py --workdir=runs/inception_small --out=results/inception_small
  python scripts/plot_inception.py --workdir=runs/inception_small --calibrate

`--workdir` holds one folder per variant (inception/, bn_baseline/, ...), each with one
training workdir per seed (seed0/, seed1/, ...), as scripts/reproduce_inception.sh writes,
and for the CPU proxy `calibration.json` and `pilot_bn_x30/`.

`--calibrate` checks the validity gate on the finished Inception runs (before any BN arm
runs, configs/inception.py), records the attempt in WORKDIR/calibration.json and exits 1
when the gate fails.
"""

import datetime
import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

from bn_repro.configuration.files import config_of_run, load_config_module, override
from bn_repro.records import read_metrics
from bn_repro.reports import inception_table

_WORKDIR = flags.DEFINE_string('workdir', 'runs/inception_small', 'Folder of variant runs.')
_OUT = flags.DEFINE_string('out', 'results/inception_small', 'Where the figure and table go.')
_COMMAND = flags.DEFINE_string('command', None, 'The command to quote in the summary.')
_STARTED_AT = flags.DEFINE_float(
  'started_at', None, 'Unix time at which the whole command started, for its wall time.'
)
_CALIBRATE = flags.DEFINE_bool(
  'calibrate', False, 'Check the validity gate on the Inception runs and record the attempt.'
)

CALIBRATION_FILE = 'calibration.json'
PILOT_DIR = 'pilot_bn_x30'
# Training accuracy of a run: the mean of its last this many logged training-batch accuracies.
TRAIN_ACCURACY_LOGS = 5


def _finished_seeds(variant_dir: pathlib.Path) -> list[pathlib.Path]:
  """The seed workdirs whose evaluations reached their config's last step."""
  seeds = sorted(variant_dir.glob('seed*'), key=lambda p: int(p.name.removeprefix('seed')))
  finished = []
  for seed in seeds:
    if not (seed / 'config.json').exists():
      continue
    num_steps = json.loads((seed / 'config.json').read_text())['num_steps']
    curve = read_metrics(seed).get('eval/accuracy', [])
    if curve and curve[-1][0] == num_steps:
      finished.append(seed)
  return finished


def _first_start(run: pathlib.Path) -> str:
  """When the run first started (ISO time from its run_info.json; '' if not recorded)."""
  starts = json.loads((run / 'run_info.json').read_text()).get('starts') or [{}]
  return starts[0].get('time', '')


def _earlier_calibration_seconds(attempts: list[dict], started_at: float | None) -> float:
  """Training time of the failed calibration attempts that ran before this command (their
  runs are not in its wall time); an attempt without a start time counts as earlier."""
  if started_at is None:
    return 0.0
  command_start = datetime.datetime.fromtimestamp(started_at).astimezone()
  return sum(
    a.get('wall_time_s') or 0.0
    for a in attempts
    if not a['passed']
    and (not a.get('started') or datetime.datetime.fromisoformat(a['started']) < command_start)
  )


def _train_accuracy(scalars: dict) -> float:
  return float(np.mean([a for _, a in scalars['train/accuracy'][-TRAIN_ACCURACY_LOGS:]]))


def calibrate(workdir: pathlib.Path) -> bool:
  """Records one calibration attempt (the gate on the finished Inception seeds) in
  WORKDIR/calibration.json, once per design and set of seeds; returns whether it passed."""
  seeds = _finished_seeds(workdir / 'inception')
  if not seeds:
    raise app.UsageError(f'{workdir / "inception"} has no finished seed run to calibrate on.')
  config = json.loads((seeds[0] / 'config.json').read_text())
  scalars = [read_metrics(seed) for seed in seeds]
  gate = inception_table.validity_gate([s['eval/accuracy'] for s in scalars])
  attempt = {
    'num_steps': config['num_steps'],
    'base_learning_rate': config['optimizer']['learning_rate'],
    'subset_size': config['input'].get('train_subset_size'),
    'seeds': [seed.name for seed in seeds],
    'gain_points': gate['per_seed_gain'],
    'train_accuracy': [_train_accuracy(s) for s in scalars],
    'passed': gate['passed'],
    # Training time of the attempt: its slowest seed's (the seeds train side by side).
    'wall_time_s': max(s['train/elapsed_s'][-1][1] for s in scalars),
    'started': min(_first_start(seed) for seed in seeds),
  }
  path = workdir / CALIBRATION_FILE
  attempts = json.loads(path.read_text()) if path.exists() else []
  design = ('num_steps', 'base_learning_rate', 'subset_size', 'seeds')
  same = [i for i, a in enumerate(attempts) if all(a.get(k) == attempt[k] for k in design)]
  if same:  # This design's runs again (a rerun of the command): keep one record of them.
    attempts[same[-1]] = {
      **attempt,
      'started': attempts[same[-1]].get('started') or attempt['started'],
    }
  else:
    attempts.append(attempt)
  path.write_text(json.dumps(attempts, indent=2) + '\n')
  gains = ', '.join(f'{100 * g:+.2f}' for g in gate['per_seed_gain'])
  print(
    f'Calibration (T={attempt["num_steps"]:,}, base LR {attempt["base_learning_rate"]:g}, '
    f'{len(seeds)} Inception seeds): gains from T/2 to T {gains} points; gate '
    f'{"passed" if gate["passed"] else "FAILED"} ({gate["rule"]}).'
  )
  return gate['passed']


def _full_test_accuracies(variant: str, seed_dir: pathlib.Path) -> tuple[float, float]:
  """The run's best checkpoint (by its evaluation subset) and final checkpoint, each scored
  on the whole test set with the running statistics."""
  from bn_repro.studies.common import restore
  from bn_repro.training.evaluate import running_statistics_accuracy

  saved = json.loads((seed_dir / 'config.json').read_text())
  config = override(config_of_run(f'configs/inception.py:{variant},small', saved), num_devices=1)
  accuracies = []
  for checkpoint in ('best_checkpoint', 'checkpoints'):
    network = restore(config, seed_dir / checkpoint)
    images, labels = network.test_inputs()
    accuracies.append(
      running_statistics_accuracy(
        network.model, network.params, network.batch_stats, images, labels
      )
    )
  return accuracies[0], accuracies[1]


def _pilot(workdir: pathlib.Path) -> dict | None:
  pilot = workdir / PILOT_DIR
  if not (pilot / 'config.json').exists():
    return None
  scalars = read_metrics(pilot)
  steps = json.loads((pilot / 'config.json').read_text())['num_steps']
  losses = scalars.get('train/loss', [])
  diverged = (pilot / 'diverged').exists()
  return {
    'steps': steps,
    'diverged': diverged,
    'final_loss': None if diverged or not losses else losses[-1][1],
  }


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines while re-scoring checkpoints.
  workdir = pathlib.Path(_WORKDIR.value)
  if _CALIBRATE.value:
    sys.exit(0 if calibrate(workdir) else 1)
  names = load_config_module('configs/inception.py').VARIANTS
  seeds = {name: s for name in names if (s := _finished_seeds(workdir / name))}
  if 'inception' not in seeds:
    raise app.UsageError(f'{workdir / "inception"} has no finished seed run: it sets the target.')
  curves, wall_times, configs, extras = {}, {}, {}, {}
  for name, dirs in seeds.items():
    scalars = [read_metrics(seed) for seed in dirs]
    curves[name] = [s['eval/accuracy'] for s in scalars]
    wall_times[name] = [s['train/elapsed_s'][-1][1] for s in scalars]
    configs[name] = json.loads((dirs[0] / 'config.json').read_text())
    extras[name] = {'train_accuracy': [_train_accuracy(s) for s in scalars]}
    if configs[name]['eval']['num_examples'] is not None:  # Re-scored on the whole test set.
      rescored = [_full_test_accuracies(name, seed) for seed in dirs]
      extras[name]['max_accuracy_full_test'] = [best for best, _ in rescored]
      extras[name]['final_accuracy_full_test'] = [final for _, final in rescored]
  run_info = json.loads((seeds['inception'][0] / 'run_info.json').read_text())
  config = configs['inception']
  schedule = config['schedule']
  speedups = sorted({c['schedule']['decay_speedup'] for c in configs.values()})
  facts = {
    'num_steps': config['num_steps'],
    'eval_every': config['eval_every'],
    'extra_eval_steps': config['eval']['extra_steps'],
    'eval_examples': config['eval']['num_examples'],  # None: the whole test set.
    'schedule': (
      f'{schedule["name"]}: LR x{schedule["decay_rate"]} every {schedule["decay_steps"]} steps '
      f"divided by the variant's decay speed-up ({', '.join(f'{x:g}' for x in speedups)}; "
      'configs/inception.py)'
    ),
  }
  design = None
  if config['input'].get('train_subset_size') is not None:
    calibration = workdir / CALIBRATION_FILE
    attempts = json.loads(calibration.read_text()) if calibration.exists() else []
    design = {
      'subset_size': config['input']['train_subset_size'],
      'num_steps_per_variant': {name: c['num_steps'] for name, c in configs.items()},
      'calibration': attempts,
      'earlier_calibration_wall_time_s': _earlier_calibration_seconds(attempts, _STARTED_AT.value),
      'pilot_bn_x30': _pilot(workdir),
      'target_accuracy_full_test': min(extras['inception']['final_accuracy_full_test']),
    }
  out = pathlib.Path(_OUT.value)
  end_to_end = None if _STARTED_AT.value is None else time.time() - _STARTED_AT.value
  command = _COMMAND.value or ' '.join(sys.argv)
  record = inception_table.write_summary(
    curves, wall_times, run_info, facts, out, command, end_to_end, extras, design
  )
  inception_table.plot_figure2(curves, record['target_accuracy'], out / 'figure2.png')
  print((out / 'summary.md').read_text())


if __name__ == '__main__':
  app.run(main)
