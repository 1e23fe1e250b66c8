"""Figure 1(b, c) over all units and seeds: how far each unit's nonlinearity input moves.

The paper's Fig. 1(b, c) plots the 15th, 50th and 85th percentiles of one "typical"
sigmoid's input over training, without BN (the distribution moves) and with BN (it stays).
Here every unit of a layer is measured, in every seed, and movement is split into parts
that the paper's picture mixes:

For one unit, with per-evaluation percentiles p15[e], p50[e], p85[e] over the test set at
evaluations e = 0..E-1 (steps s_0 < ... < s_{E-1}), and a window of W evaluations:
- early(x) = the mean of x[e] over the first W evaluations; late(x) = over the last W.
- location drift = |late(p50) - early(p50)|, in units of the nonlinearity's input.
- spread drift = |log(late(p85 - p15) / early(p85 - p15))| (0: the width kept; log 2: doubled
  or halved).
- jitter = the standard deviation of the consecutive differences p50[e+1] - p50[e] over the
  second half of the evaluations: evaluation-to-evaluation noise late in training (for BN,
  partly the moving averages' own noise), reported apart and never added to drift.
A layer's summary is the median and interquartile range of a per-unit quantity over all
units of all seeds (`summarize`).

For BN layers the input is gamma x_hat + beta; the percentiles of x_hat follow exactly from
those of the input, gamma and beta (`normalized_percentiles`), so whether BN's spread moves
through x_hat or through gamma is read off the same records.

Records: `WORKDIR/unit_percentiles.jsonl`, one JSON line per (evaluation, seed, statistics
source, layer), appended by the trainer (`bn_repro.training.train`), read with a torn last line
dropped, and cut back to the resumed step on resume like the event files.
"""

import pathlib
from collections.abc import Sequence

import numpy as np

from bn_repro import records

RECORDS_FILE = 'unit_percentiles.jsonl'
PERCENTILES = (15, 50, 85)


def unit_percentiles(values: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> np.ndarray:
  """Per-unit percentiles `(P, U)` of `values` `(N, U)` (examples x units)."""
  return np.percentile(np.asarray(values, np.float64), percentiles, axis=0)


def normalized_percentiles(
  percentiles: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> np.ndarray:
  """Percentiles `(P, U)` of x_hat = (y - beta) / gamma from those of y = gamma x_hat + beta.

  A negative gamma reverses the order: the q-th percentile of x_hat is then the
  (100 - q)-th of y, mapped; `percentiles` must be symmetric (15, 50, 85).
  """
  mapped = (np.asarray(percentiles) - beta) / gamma
  return np.where(gamma > 0, mapped, mapped[::-1])


def drift_statistics(
  p15: np.ndarray, p50: np.ndarray, p85: np.ndarray, window: int = 5
) -> dict[str, np.ndarray]:
  """Per-unit location drift, spread drift and jitter (module docstring) from `(E, U)` arrays.

  Raises:
    ValueError: fewer than 2 * `window` evaluations (early and late would overlap).
  """
  p15, p50, p85 = (np.asarray(a, np.float64) for a in (p15, p50, p85))
  evaluations = p50.shape[0]
  if evaluations < 2 * window:
    raise ValueError(
      f'{evaluations} evaluations; drift needs at least 2 x window = {2 * window} (window='
      f'{window}) so that the early and late windows do not overlap.'
    )
  width = p85 - p15
  early, late = slice(0, window), slice(evaluations - window, evaluations)
  steps_late = np.diff(p50[evaluations // 2 :], axis=0)
  return {
    'location_drift': np.abs(p50[late].mean(axis=0) - p50[early].mean(axis=0)),
    'spread_drift': np.abs(np.log(width[late].mean(axis=0) / width[early].mean(axis=0))),
    'jitter': steps_late.std(axis=0),
  }


def summarize(per_unit: Sequence[np.ndarray]) -> dict[str, float]:
  """Median and interquartile range over all units of all seeds (one array per seed)."""
  values = np.concatenate([np.ravel(a) for a in per_unit])
  q25, median, q75 = np.percentile(values, (25, 50, 75))
  return {'median': float(median), 'q25': float(q25), 'q75': float(q75)}


def append_records(workdir: pathlib.Path, new_records: list[dict]) -> None:
  """Appends per-unit records (dicts with a 'step') to `WORKDIR/RECORDS_FILE`."""
  records.append(pathlib.Path(workdir) / RECORDS_FILE, new_records)


def read_records(workdir: pathlib.Path) -> list[dict]:
  """Every whole record of `WORKDIR/RECORDS_FILE`; a torn last line is dropped."""
  return records.read(pathlib.Path(workdir) / RECORDS_FILE)


def truncate_records(workdir: pathlib.Path, last_step: int) -> None:
  """Keeps the records of steps <= `last_step` (a resume replays the rest)."""
  records.truncate(pathlib.Path(workdir) / RECORDS_FILE, last_step)


def last_layer(records: list[dict]) -> str:
  """The last hidden layer among `records` (the one the paper's Figure 1 shows)."""
  return max((r['layer'] for r in records), key=int)


def last_layer_trajectories(
  records: list[dict], statistics: str = 'moving_average'
) -> list[dict[str, np.ndarray]]:
  """`trajectories` of the last hidden layer, one per seed, in seed order."""
  records = [r for r in records if r['statistics'] == statistics]
  layer = last_layer(records)
  seeds = sorted({r['seed'] for r in records})
  return [trajectories(records, layer, seed, statistics) for seed in seeds]


def trajectories(
  records: list[dict], layer: str, seed: int = 0, statistics: str = 'moving_average'
) -> dict[str, np.ndarray]:
  """{'steps': (E,), 'p15', 'p50', 'p85': (E, U), and 'gamma', 'beta': (E, U) for BN layers}
  of one layer, seed and statistics source, in step order."""
  chosen = sorted(
    (
      r
      for r in records
      if r['layer'] == layer and r['seed'] == seed and r['statistics'] == statistics
    ),
    key=lambda r: r['step'],
  )
  if not chosen:
    raise KeyError(f'No records of layer {layer!r}, seed {seed}, statistics {statistics!r}.')
  out = {'steps': np.array([r['step'] for r in chosen])}
  for i, p in enumerate(chosen[0]['percentiles']):
    out[f'p{p:g}'] = np.array([r['values'][i] for r in chosen])
  for name in ('gamma', 'beta'):
    if chosen[0].get(name) is not None:
      out[name] = np.array([r[name] for r in chosen])
  return out
