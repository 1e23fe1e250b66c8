"""Small-sample tests the report's rules use: the one-sided paired t test."""

import math
from collections.abc import Sequence

import numpy as np

# One-sided 95% quantiles of Student's t with `df` degrees of freedom (standard tables;
# tests/test_report.py checks them against a numerical integration of the t density).
T_95_ONE_SIDED = {2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833}


def paired_t(differences: Sequence[float]) -> float:
  """mean(d) / (sd(d) / sqrt(n)) of paired differences `d` (n >= 2, sd with n - 1); +-inf
  when every difference is the same nonzero value, 0 when all are 0."""
  d = np.asarray(differences, np.float64)
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  if sd == 0:
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)
  return mean / (sd / math.sqrt(len(d)))


def paired_greater(a: Sequence[float], b: Sequence[float]) -> bool:
  """Whether `a` exceeds `b` by a one-sided paired t test at 95% (pairs by position)."""
  if len(a) != len(b) or len(a) - 1 not in T_95_ONE_SIDED:
    raise ValueError(f'paired_greater needs 3 to 10 pairs; got {len(a)} and {len(b)} values.')
  return paired_t(np.subtract(a, b)) > T_95_ONE_SIDED[len(a) - 1]
