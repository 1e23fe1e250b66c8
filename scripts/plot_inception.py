r"""Figure 2 analog and the "steps to match Inception" table from finished variant runs.

  python scripts/plot_inception.py --workdir=runs/inception_small --out=results/inception_small

`--workdir` holds one folder per variant (inception/, bn_baseline/, ...), each with one
training workdir per seed (seed0/, seed1/, ...), as scripts/reproduce_inception.sh writes.
"""

import json
import pathlib
import sys
import time

from absl import app, flags

from bn_repro.reports import inception_table
from bn_repro.training.config_files import load_config_module
from bn_repro.training.records import read_metrics

_WORKDIR = flags.DEFINE_string('workdir', 'runs/inception_small', 'Folder of variant runs.')
_OUT = flags.DEFINE_string('out', 'results/inception_small', 'Where the figure and table go.')
_COMMAND = flags.DEFINE_string('command', None, 'The command to quote in the summary.')
_STARTED_AT = flags.DEFINE_float(
  'started_at', None, 'Unix time at which the whole command started, for its wall time.'
)


def _finished_seeds(variant_dir: pathlib.Path) -> list[pathlib.Path]:
  seeds = sorted(variant_dir.glob('seed*'), key=lambda p: int(p.name.removeprefix('seed')))
  return [s for s in seeds if (s / 'run_info.json').exists()]


def main(argv: list[str]) -> None:
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  names = load_config_module('configs/inception.py').VARIANTS
  seeds = {name: s for name in names if (s := _finished_seeds(workdir / name))}
  if 'inception' not in seeds:
    raise app.UsageError(f'{workdir / "inception"} has no finished seed run: it sets the target.')
  curves, wall_times, configs = {}, {}, {}
  for name, dirs in seeds.items():
    scalars = [read_metrics(seed) for seed in dirs]
    curves[name] = [s['eval/accuracy'] for s in scalars]
    wall_times[name] = [s['train/elapsed_s'][-1][1] for s in scalars]
    configs[name] = json.loads((dirs[0] / 'config.json').read_text())
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
  out = pathlib.Path(_OUT.value)
  end_to_end = None if _STARTED_AT.value is None else time.time() - _STARTED_AT.value
  command = _COMMAND.value or ' '.join(sys.argv)
  record = inception_table.write_summary(
    curves, wall_times, run_info, facts, out, command, end_to_end
  )
  inception_table.plot_figure2(curves, record['target_accuracy'], out / 'figure2.png')
  print((out / 'summary.md').read_text())


if __name__ == '__main__':
  app.run(main)
