"""The normalization studies: `scripts/study.sh NAME` runs one, writing
`results/studies/NAME/{figure.png, table.md, summary.json}`.

Each module trains its arms with the ordinary trainer and configs and exposes
`run(context: bn_repro.studies.common.StudyContext)`. Modules are imported on demand
(`load_study`), so importing this package loads no study and no plotting library, and
needs nothing but the standard library (`scripts/study.sh` checks a study's name with it
before creating the virtualenv, `scripts/reproduce_all.sh` and `reports/stages.py` read
each stage's studies from it). A new study is its module and its record in STUDIES.
"""

import dataclasses
import importlib
import types


@dataclasses.dataclass(frozen=True)
class Study:
  """One study's record: what `study.py`, `reproduce_all.sh`, the report's stage table and
  the READMEs read. Its code is `bn_repro/studies/NAME.py`, its results
  `results/studies/NAME/`.

  Attributes:
    number: its number in results/studies/README.md.
    question: what it asks, in a few words.
    stage: the `scripts/reproduce_all.sh` stage that runs it.
  """

  number: int
  question: str
  stage: str


# Name -> record, in the order of results/studies/README.md (and of each stage's runs).
STUDIES: dict[str, Study] = {
  'stats_in_gradient': Study(1, "Sec. 2's bias example", 'studies'),
  'inference_statistics': Study(2, 'Algorithm 2 vs moving averages', 'studies'),
  'where_to_normalize': Study(3, 'BN on Wu vs on u', 'studies'),
  'bias_redundancy': Study(4, 'BN(Wu + b) = BN(Wu)', 'studies'),
  'nonlinearity_grid': Study(5, 'Nonlinearity x normalization', 'studies'),
  'learning_rates': Study(6, 'Higher learning rates, weight scale', 'studies'),
  'weight_norm': Study(7, 'WN vs BN', 'studies'),
  'group_size': Study(8, 'Statistics batch size', 'studies'),
  'fig1_regimes': Study(9, "Where Figure 1's picture holds", 'regime_map'),
  'noisy_bn': Study(10, 'BN with shifting noise (Santurkar et al.)', 'ics_probes'),
  'ics_measure': Study(11, "Santurkar et al.'s ICS", 'ics_probes'),
  'loss_landscape': Study(12, 'Loss landscape along the gradient', 'ics_probes'),
  'small_batches': Study(13, 'Small batches: BN, Batch Renorm, GroupNorm', 'family'),
  'non_iid_batches': Study(14, 'Non-i.i.d. batches: BN, Batch Renorm, GroupNorm', 'family'),
  'precise_statistics': Study(15, 'EMA vs population statistics over training', 'family'),
  'train_test_consistency': Study(16, 'Small normalization batch: EvalBN, FrozenBN tail', 'family'),
}


def stage_studies(stage: str) -> list[str]:
  """The studies `scripts/reproduce_all.sh`'s `stage` runs, in order."""
  return [name for name, study in STUDIES.items() if study.stage == stage]


def load_study(name: str) -> types.ModuleType:
  """The module of study `name` (a key of STUDIES)."""
  if name not in STUDIES:
    raise ValueError(f'Unknown study {name!r}; expected one of {sorted(STUDIES)}.')
  return importlib.import_module(f'bn_repro.studies.{name}')


def check_names(names: list[str]) -> str | None:
  """Why `names` (study.py's positional arguments) do not name one study or 'all', or None."""
  if len(names) == 1 and (names[0] in STUDIES or names[0] == 'all'):
    return None
  return f'Expected one study name, one of {sorted(STUDIES)} or all; got {names}.'


if __name__ == '__main__':
  # python bn_repro/studies/__init__.py ARGS: exits 2 on a bad study name (study.sh);
  # python bn_repro/studies/__init__.py --stage=STAGE: prints that stage's studies.
  import sys

  if len(sys.argv) == 2 and sys.argv[1].startswith('--stage='):
    print(' '.join(stage_studies(sys.argv[1].removeprefix('--stage='))))
    sys.exit(0)
  problem = check_names([a for a in sys.argv[1:] if not a.startswith('-')])
  if problem:
    print(f'FATAL: {problem}', file=sys.stderr)
    sys.exit(2)
