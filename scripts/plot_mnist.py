r"""Draws Figure 1 and writes the summary from a finished (or partial) MNIST workdir.

  python scripts/plot_mnist.py --workdir=runs/mnist --out=results/mnist --settings=lr2,lr0.5

`--workdir` holds one folder per setting (`lr2/`, ...), each with one training workdir per
arm (`baseline/`, `bn/`). The first setting is the primary one (summary.json's `arms`).
"""

import json
import pathlib
import sys
import time

from absl import app, flags

from bn_repro.analysis import unit_drift
from bn_repro.records import read_metrics
from bn_repro.reports import figure1

_WORKDIR = flags.DEFINE_string('workdir', 'runs/mnist', 'Folder with SETTING/{baseline,bn}/.')
_SETTINGS = flags.DEFINE_list('settings', ['lr2', 'lr0.5'], 'Setting folders, primary first.')
_OUT = flags.DEFINE_string('out', 'results/mnist', 'Where figure1.png and summary.* go.')
_COMMAND = flags.DEFINE_string('command', None, 'The command to quote in the summary.')
_STARTED_AT = flags.DEFINE_float(
  'started_at', None, 'Unix time at which the whole command started, for its wall time.'
)


def main(argv: list[str]) -> None:
  del argv
  settings, infos, preprocess = {}, {}, set()
  for name in _SETTINGS.value:
    arms, configs = {}, {}
    for arm in ('baseline', 'bn'):
      workdir = pathlib.Path(_WORKDIR.value) / name / arm
      if not (workdir / 'run_info.json').exists():
        raise app.UsageError(f'{workdir} is not a training workdir (no run_info.json).')
      arms[arm] = (read_metrics(workdir), unit_drift.read_records(workdir))
      configs[arm] = json.loads((workdir / 'config.json').read_text())
      infos.setdefault(arm, json.loads((workdir / 'run_info.json').read_text()))
      preprocess.add(configs[arm]['input']['preprocess'])
    config = configs['bn']
    settings[name] = {
      'learning_rate': config['optimizer']['learning_rate'],
      'init_std': config['model']['init_std'],
      'arms': arms,
    }
  if len(preprocess) != 1:
    raise app.UsageError(
      f'The runs in {_WORKDIR.value} used different preprocessing: {preprocess}.'
    )
  out = pathlib.Path(_OUT.value)
  figure1.plot_figure1(settings, out / 'figure1.png')
  command = _COMMAND.value or ' '.join(sys.argv)
  end_to_end = None if _STARTED_AT.value is None else time.time() - _STARTED_AT.value
  figure1.write_summary(settings, infos, out, command, end_to_end, preprocess.pop())
  print((out / 'summary.md').read_text())
  print(f'Wrote {out / "figure1.png"}, {out / "summary.md"}, {out / "summary.json"}')


if __name__ == '__main__':
  app.run(main)
