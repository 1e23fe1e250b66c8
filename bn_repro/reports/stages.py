"""The stages of `scripts/reproduce_all.sh`, their summary files and the wall time those
record. Standard library only: the script reads it before any virtualenv exists,

  python3 bn_repro/reports/stages.py results   # prints 'STAGE MINUTES' per stage (0: none)
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # Run as a script too.
from bn_repro.studies import stage_studies  # noqa: E402  (standard library only)


def _studies(stage: str) -> tuple[str, ...]:
  return tuple(f'studies/{name}/summary.json' for name in stage_studies(stage))


# Stage of scripts/reproduce_all.sh -> (the arithmetic floor of its fixed protocol on the
# 2-core CPU in minutes, where benchmarks/README.md measured one, else None; its summary
# files, whose recorded wall times are the stage's measured time).
STAGES = {
  'figure1': (3, ('mnist/summary.json',)),
  'regime_map': (22, _studies('regime_map')),
  'inception_proxy': (None, ('inception_small/summary.json',)),
  'ics_probes': (None, _studies('ics_probes')),
  'studies': (None, _studies('studies')),
  'family': (None, _studies('family')),
}


def load_summary(results: pathlib.Path, relative: str) -> dict | None:
  path = results / relative
  return json.loads(path.read_text()) if path.exists() else None


def stage_seconds(summary: dict) -> float | None:
  """The summary's command's wall time, plus the training time of calibration attempts that
  ran before it (the Inception proxy's failed ones: their runs are not this command's)."""
  earlier = sum(
    a.get('wall_time_s') or 0.0 for a in summary.get('calibration', []) if not a['passed']
  )
  for key in ('end_to_end_wall_time_s', 'wall_time_s'):
    if summary.get(key) is not None:
      return float(summary[key]) + earlier
  return None


def stage_minutes(results: pathlib.Path) -> dict[str, float | None]:
  """{stage: the wall time its summary files record, in minutes (None: none recorded)}."""
  out = {}
  for stage, (_, files) in STAGES.items():
    recorded = [t for f in files if (s := load_summary(results, f)) and (t := stage_seconds(s))]
    out[stage] = sum(recorded) / 60 if recorded else None
  return out


if __name__ == '__main__':
  results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'results')
  for name, minutes in stage_minutes(results).items():
    print(name, 0 if minutes is None else round(minutes))
