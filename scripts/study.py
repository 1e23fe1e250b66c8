r"""Runs one normalization study (or all) and writes its figure and table.

  scripts/study.sh NAME            # creates the venv first; NAME or 'all'
  python scripts/study.py NAME [--workdir=runs/studies] [--out=results/studies] [--smoke]
                                 [--jobs=N]

Studies: see bn_repro/studies/__init__.py and results/studies/README.md. A study's
finished arms are reused and interrupted ones resume, so rerunning is cheap.
"""

import os
import pathlib
import sys
import time

from absl import app, flags, logging

from bn_repro.studies import STUDIES, load_study
from bn_repro.studies.common import StudyContext
from bn_repro.training import console
from bn_repro.training.compilation_cache import enable_compilation_cache

_WORKDIR = flags.DEFINE_string('workdir', 'runs/studies', 'Root of the training directories.')
_OUT = flags.DEFINE_string('out', 'results/studies', 'Root of the figures and tables.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny configs and 20 steps (a check, not a result).')
_JOBS = flags.DEFINE_integer(
  'jobs',
  os.cpu_count() or 1,
  'Arms trained at a time, each in its own single-threaded process, by studies that '
  'declare their arms up front (fig1_regimes); 1: one after another in this process.',
  lower_bound=1,
)


def main(argv: list[str]) -> None:
  names = argv[1:]
  if len(names) != 1 or (names[0] not in STUDIES and names[0] != 'all'):
    sys.exit(f'Usage: study.py NAME; NAME is one of {sorted(STUDIES)} or all (got {names}).')
  logging.get_absl_handler().addFilter(console.OwnInfoOnly())
  enable_compilation_cache()
  selected = list(STUDIES) if names[0] == 'all' else names
  for name in selected:
    started = time.perf_counter()
    context = StudyContext(
      name,
      pathlib.Path(_WORKDIR.value),
      pathlib.Path(_OUT.value),
      smoke=_SMOKE.value,
      jobs=_JOBS.value,
    )
    load_study(name).run(context)
    print(f'Study {name} took {(time.perf_counter() - started) / 60:.1f} min.', flush=True)


if __name__ == '__main__':
  console.quiet_tensorflow()
  app.run(main)
