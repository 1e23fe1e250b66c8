r"""Figure 2 analog and the "steps to match Inception" table from finished variant runs.

  python scripts/plot_inception.py --workdir=runs/inception_small --out=results/inception_small

`--workdir` holds one training workdir per variant (inception/, bn_baseline/, ...).
"""

import json
import pathlib
import sys

from absl import app, flags

from bn_repro import inception_report
from bn_repro.tensorboard import read_scalars

_WORKDIR = flags.DEFINE_string('workdir', 'runs/inception_small', 'Folder of variant runs.')
_OUT = flags.DEFINE_string('out', 'results/inception_small', 'Where the figure and table go.')
_COMMAND = flags.DEFINE_string('command', None, 'The command to quote in the summary.')


def main(argv: list[str]) -> None:
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  variants = {
    name: read_scalars(workdir / name)
    for name in inception_report.VARIANT_ORDER
    if (workdir / name / 'run_info.json').exists()
  }
  if 'inception' not in variants:
    raise app.UsageError(f'{workdir / "inception"} has no finished run: it sets the target.')
  run_info = json.loads((workdir / 'inception' / 'run_info.json').read_text())
  out = pathlib.Path(_OUT.value)
  record = inception_report.write_summary(
    variants, run_info, out, _COMMAND.value or ' '.join(sys.argv)
  )
  inception_report.plot_figure2(variants, record['target_accuracy'], out / 'figure2.png')
  print((out / 'summary.md').read_text())


if __name__ == '__main__':
  app.run(main)
