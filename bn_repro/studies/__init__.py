"""The normalization studies: `scripts/study.sh NAME` runs one, writing
`results/studies/NAME/{figure.png, table.md, summary.json}`.

Each module trains its arms with the ordinary trainer and configs and exposes
`run(context: bn_repro.studies.common.StudyContext)`. Modules are imported on demand
(`load_study`), so importing this package loads no study and no plotting library, and
needs nothing but the standard library (`scripts/study.sh` checks a study's name with it
before creating the virtualenv).
"""

import importlib
import types

# Name -> what it asks, in the order of results/studies/README.md.
STUDIES: dict[str, str] = {
  'stats_in_gradient': "1. Sec. 2's bias example",
  'inference_statistics': '2. Algorithm 2 vs moving averages',
  'where_to_normalize': '3. BN on Wu vs on u',
  'bias_redundancy': '4. BN(Wu + b) = BN(Wu)',
  'nonlinearity_grid': '5. Nonlinearity x normalization',
  'learning_rates': '6. Higher learning rates, weight scale',
  'weight_norm': '7. WN vs BN',
  'group_size': '8. Statistics batch size',
  'fig1_regimes': "9. Where Figure 1's picture holds",
  'noisy_bn': '10. BN with shifting noise (Santurkar et al.)',
  'ics_measure': "11. Santurkar et al.'s ICS",
  'loss_landscape': '12. Loss landscape along the gradient',
}


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


if __name__ == '__main__':  # python bn_repro/studies/__init__.py ARGS: exits 2 on a bad name.
  import sys

  problem = check_names([a for a in sys.argv[1:] if not a.startswith('-')])
  if problem:
    print(f'FATAL: {problem}', file=sys.stderr)
    sys.exit(2)
