r"""Runs one normalization study (or all) and writes its figure and table.

  scripts/study.sh NAME            # creates the venv first; NAME or 'all'
  python scripts/study.py NAME [--workdir=runs/studies] [--out=results/studies] [--smoke]
                                 [--jobs=N] [--overwrite]
  python scripts/study.py NAME --redraw   # figure and table again from its summary.json

Studies: see bn_repro/studies/__init__.py and results/studies/README.md. A study's
finished arms are reused and interrupted ones resume, so rerunning is cheap. A smoke run
(`--smoke`) goes to runs/smoke/ and never writes into results/.
"""

import os
import pathlib
import sys
import time

from absl import app, flags, logging

from bn_repro.configuration.checks import InvalidConfigError
from bn_repro.configuration.files import REPO_ROOT
from bn_repro.data.offline import DataIntegrityError
from bn_repro.reports.study_results import redraw_results
from bn_repro.studies import STUDIES, check_names, load_study
from bn_repro.studies.common import StudyContext
from bn_repro.studies.pool import StudyStoppedError
from bn_repro.training import console, hparams_experiment
from bn_repro.training.checkpointing import CheckpointStructureError
from bn_repro.training.compilation_cache import enable_compilation_cache
from bn_repro.training.preemption import PreemptedError
from bn_repro.training.workdir import WorkdirError

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Root of the training directories (default runs/studies; runs/smoke/studies).'
)
_OUT = flags.DEFINE_string(
  'out', None, 'Root of the figures and tables (default results/studies; runs/smoke/results).'
)
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny configs and 20 steps (a check, not a result).')
_JOBS = flags.DEFINE_integer(
  'jobs',
  len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1,
  'Arms trained at a time, each in its own single-threaded process (default: one per core '
  'this process may use); 1: one after another in this process.',
  lower_bound=1,
)
_OVERWRITE = flags.DEFINE_bool(
  'overwrite', False, "Delete the arms' runs in --workdir and train them again."
)
_REDRAW = flags.DEFINE_bool(
  'redraw',
  False,
  "Redraw the study's figure and table from its summary.json in --out, training nothing "
  '(studies that draw from their record: those with draw() and table()).',
)

# What a user can cause and fix: one line, no traceback.
_USER_ERRORS = (
  StudyStoppedError,
  WorkdirError,
  CheckpointStructureError,
  InvalidConfigError,
  DataIntegrityError,
  FileNotFoundError,
)


def _folders(smoke: bool) -> tuple[pathlib.Path, pathlib.Path]:
  """The runs' and the results' roots; a smoke run's results never go under results/."""
  workdir = _WORKDIR.value or ('runs/smoke/studies' if smoke else 'runs/studies')
  out = pathlib.Path(_OUT.value or ('runs/smoke/results' if smoke else 'results/studies'))
  committed = (REPO_ROOT / 'results').resolve()
  if smoke and (out.resolve() == committed or committed in out.resolve().parents):
    raise app.UsageError(f'--out={out}: a smoke run never writes into {committed}.')
  return pathlib.Path(workdir), out


def _redraw(context: StudyContext) -> None:
  module = load_study(context.name)
  if not (hasattr(module, 'draw') and hasattr(module, 'table')):
    drawable = [n for n in STUDIES if hasattr(load_study(n), 'draw')]
    raise app.UsageError(
      f'--redraw: {context.name} draws from its runs; expected one of {drawable}.'
    )
  redraw_results(context, module.draw, module.table)
  print(f'Redrew {context.out_dir}/figure.png and table.md from its summary.json.')


def main(argv: list[str]) -> None:
  names = argv[1:]
  if problem := check_names(names):
    raise app.UsageError(problem)
  workdir, out = _folders(_SMOKE.value)
  logging.get_absl_handler().addFilter(console.OwnInfoOnly())
  enable_compilation_cache()
  selected = list(STUDIES) if names[0] == 'all' else names
  print(f"Writing the study's figure, table and summary into {out}/ (replacing what is there).")
  for name in selected:
    started = time.perf_counter()
    context = StudyContext(
      name, workdir, out, smoke=_SMOKE.value, jobs=_JOBS.value, overwrite=_OVERWRITE.value
    )
    if _REDRAW.value:
      _redraw(context)
      continue
    try:
      load_study(name).run(context)
    except _USER_ERRORS as error:
      sys.exit(f'FATAL: [{name}] {error}')
    except PreemptedError as stopped:
      sys.exit(f'FATAL: [{name}] {stopped}')
    print(f'Study {name} took {(time.perf_counter() - started) / 60:.1f} min.', flush=True)
    if (workdir / name).is_dir():  # Studies that share arms train them elsewhere.
      lead = hparams_experiment.write_experiment(workdir / name)
      print(f'TensorBoard: tensorboard --logdir={workdir / name} (HParams: {", ".join(lead)}).')


if __name__ == '__main__':
  console.quiet_tensorflow()
  app.run(main)
