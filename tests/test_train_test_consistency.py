"""Study 16's rules (its docstring) on made-up test errors."""

from bn_repro.studies.train_test_consistency import judge


def _errors(batch_statistics, frozen_tail, population=5.0):
  """{g: {measure: 3 per-seed errors}}: population `population` at every g, the other two
  from {g: error} (default: the population's)."""
  out = {}
  for g in (2, 4, 8, 32):
    means = {
      'moving_averages': population,
      'population': population,
      'batch_statistics': batch_statistics.get(g, population),
      'frozen_tail': frozen_tail.get(g, population),
    }
    out[g] = {m: [v - 0.1, v, v + 0.1] for m, v in means.items()}
  return out


def test_batch_statistics_evaluation_helps_at_both_small_groups_one_or_none():
  verdicts = judge(_errors({2: 4.0, 4: 4.4}, {}))
  assert verdicts['batch_statistics_evaluation_helps']['verdict'] == 'holds'
  assert judge(_errors({2: 4.0}, {}))['batch_statistics_evaluation_helps']['verdict'] == 'partly'
  verdicts = judge(_errors({2: 6.0, 4: 4.8}, {}))
  assert verdicts['batch_statistics_evaluation_helps']['verdict'] == 'does not hold'


def test_frozen_tail_helps_at_both_small_groups_one_or_none():
  assert judge(_errors({}, {2: 3.0, 4: 4.5}))['frozen_tail_helps']['verdict'] == 'holds'
  assert judge(_errors({}, {4: 4.5}))['frozen_tail_helps']['verdict'] == 'partly'
  assert judge(_errors({}, {2: 4.9, 4: 5.2}))['frozen_tail_helps']['verdict'] == 'does not hold'
