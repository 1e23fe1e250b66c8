"""A study's outputs: figure.png, table.md and summary.json, each with its provenance."""

import json
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from bn_repro.training.run_info import git_commit, hardware_description


class StudyOutput(Protocol):
  """What a study's outputs are named by (`bn_repro.studies.common.StudyContext`)."""

  name: str
  out_dir: object
  smoke: bool


def write_results(
  context: StudyOutput,
  figure: object,
  table: list[str],
  record: dict[str, object],
  started: float,
  data: str,
) -> None:
  """Saves `figure` (matplotlib) as figure.png and writes table.md (the table and a
  provenance line) and summary.json (`record` with data, hardware, commit and wall time)
  into `context.out_dir`."""
  import matplotlib.pyplot as plt

  out = context.out_dir
  out.mkdir(parents=True, exist_ok=True)
  figure.savefig(out / 'figure.png', dpi=110, bbox_inches='tight')
  plt.close(figure)
  wall = time.perf_counter() - started
  provenance = (
    f'Command: `scripts/study.sh {context.name}{" --smoke" if context.smoke else ""}`. '
    f'Data: {data}. Hardware: '
    f'{hardware_description()}. Commit {git_commit()}. Study wall time {wall / 60:.1f} min'
    f'{" (SMOKE RUN: tiny configs, not a result)" if context.smoke else ""}.'
  )
  (out / 'table.md').write_text('\n'.join(table + ['', provenance]) + '\n')
  record = {
    **record,
    'study': context.name,
    'data': data,
    'hardware': hardware_description(),
    'commit': git_commit(),
    'wall_time_s': round(wall, 1),
    'smoke': context.smoke,
  }
  (out / 'summary.json').write_text(json.dumps(record, indent=2, default=float) + '\n')
  print('\n'.join(table), flush=True)


def redraw_results(
  context: StudyOutput,
  draw: Callable[[dict, StudyOutput], object],
  table: Callable[[dict, StudyOutput], list[str]],
) -> None:
  """Redraws figure.png and table.md's table from the summary.json a run wrote into
  `context.out_dir`, keeping table.md's provenance line (the run's command, commit and wall
  time): a change of presentation without training again. `draw` and `table` are the
  study's own, which its run uses on the same record."""
  import matplotlib.pyplot as plt

  out = context.out_dir
  record = json.loads((out / 'summary.json').read_text())
  figure = draw(record, context)
  figure.savefig(out / 'figure.png', dpi=110, bbox_inches='tight')
  plt.close(figure)
  provenance = (out / 'table.md').read_text().rstrip('\n').split('\n')[-1]
  (out / 'table.md').write_text('\n'.join(table(record, context) + ['', provenance]) + '\n')


def plot_over_seeds(
  ax: object,
  x: Sequence[float],
  per_x: Sequence[Sequence[float]],
  style: str,
  label: str,
  color: str | None = None,
) -> None:
  """Plots at each x the mean of its per-seed values `per_x[i]`, with a bar from the lowest
  seed to the highest."""
  means = np.array([np.mean(v) for v in per_x])
  spread = [means - [min(v) for v in per_x], [max(v) for v in per_x] - means]
  ax.errorbar(x, means, yerr=spread, fmt=style, capsize=3, label=label, color=color)


def plain_log_axis(ax: object) -> None:
  """A log-scale y axis whose tick labels read as plain numbers (3, 6, 20), not 6 x 10^0."""
  from matplotlib import ticker

  ax.set_yscale('log')
  plain = ticker.FuncFormatter(lambda value, _: f'{value:g}')
  ax.yaxis.set_major_formatter(plain)
  ax.yaxis.set_minor_formatter(plain)
