r"""Draws Figure 1 and writes the summary from a finished (or partial) MNIST workdir.

  python scripts/plot_mnist.py --workdir=runs/mnist --out=results/mnist

`--workdir` holds one folder per arm (`baseline/`, `bn/`), each a training workdir.
"""

import json
import pathlib
import sys
import time

from absl import app, flags

from bn_repro import mnist_report
from bn_repro.tensorboard import read_scalars

_WORKDIR = flags.DEFINE_string('workdir', 'runs/mnist', 'Folder with baseline/ and bn/ runs.')
_OUT = flags.DEFINE_string('out', 'results/mnist', 'Where figure1.png and summary.* go.')
_COMMAND = flags.DEFINE_string('command', None, 'The command to quote in the summary.')
_STARTED_AT = flags.DEFINE_float(
  'started_at', None, 'Unix time at which the whole command started, for its wall time.'
)


def main(argv: list[str]) -> None:
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  arms, infos = {}, {}
  for arm in ('baseline', 'bn'):
    if not (workdir / arm / 'run_info.json').exists():
      raise app.UsageError(f'{workdir / arm} is not a training workdir (no run_info.json).')
    arms[arm] = read_scalars(workdir / arm)
    infos[arm] = json.loads((workdir / arm / 'run_info.json').read_text())
  out = pathlib.Path(_OUT.value)
  mnist_report.plot_figure1(arms, out / 'figure1.png')
  command = _COMMAND.value or ' '.join(sys.argv)
  end_to_end = None if _STARTED_AT.value is None else time.time() - _STARTED_AT.value
  preprocess = {
    json.loads((workdir / arm / 'config.json').read_text())['input']['preprocess'] for arm in arms
  }
  if len(preprocess) != 1:
    raise app.UsageError(f'The arms in {workdir} used different preprocessing: {preprocess}.')
  mnist_report.write_summary(arms, infos, out, command, end_to_end, preprocess.pop())
  print((out / 'summary.md').read_text())
  print(f'Wrote {out / "figure1.png"}, {out / "summary.md"}, {out / "summary.json"}')


if __name__ == '__main__':
  app.run(main)
