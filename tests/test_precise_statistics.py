"""Study 15's rules (its docstring) on made-up checkpoint errors, one case per verdict."""

from bn_repro.studies.precise_statistics import judge


def _measured(ema, population, mid=None):
  """{B: measure()'s entry}: `ema[B]` and `population[B]` the seed-mean test error at each
  of 4 checkpoints (3 seeds at +-0.01), N = 10^3 equal to 10^4 unless `mid` says."""
  mid = mid or population

  def seeds(curve):
    return [[v - 0.01, v, v + 0.01] for v in curve]

  return {
    b: {
      'steps': [1, 2, 3, 4],
      'ema': {0.99: seeds(ema[b]), 0.9: seeds(ema[b])},
      'population': {100: seeds(mid[b]), 1000: seeds(mid[b]), 10000: seeds(population[b])},
    }
    for b in ema
  }


STEADY = [3.0, 2.5, 2.2, 2.2]
LAGGING = {32: [3.1, 2.6, 2.3, 2.3], 256: [3.5, 2.8, 2.4, 2.2], 1024: [6.0, 3.5, 2.9, 2.3]}


def test_population_at_least_as_accurate_and_largest_gain_at_large_batch_early():
  verdicts = judge(_measured(LAGGING, {b: STEADY for b in LAGGING}))
  assert verdicts['population_as_accurate']['verdict'] == 'holds'
  assert verdicts['gain_large_batch_early']['verdict'] == 'holds'
  # The EMA better by 0.5 points at B=32: population statistics only partly as accurate.
  ema = {**LAGGING, 32: [v - 0.5 for v in STEADY]}
  verdicts = judge(_measured(ema, {b: STEADY for b in LAGGING}))
  assert verdicts['population_as_accurate']['verdict'] == 'partly'
  # The same gap everywhere: neither larger at large batch nor early.
  flat = {b: [v + 0.3 for v in STEADY] for b in LAGGING}
  assert judge(_measured(flat, {b: STEADY for b in LAGGING}))['gain_large_batch_early'][
    'verdict'
  ] == ('does not hold')


def test_steadier_and_enough_samples():
  jumpy = {b: [3.0, 2.5, 2.9, 2.1] for b in LAGGING}
  verdicts = judge(_measured(jumpy, {b: STEADY for b in LAGGING}))
  assert verdicts['population_steadier']['verdict'] == 'holds'
  verdicts = judge(_measured({b: STEADY for b in LAGGING}, jumpy))
  assert verdicts['population_steadier']['verdict'] == 'does not hold'
  assert verdicts['thousand_samples_suffice']['verdict'] == 'holds'
  mid = {**{b: STEADY for b in LAGGING}, 1024: [3.0, 2.5, 2.2, 2.6]}
  verdicts = judge(_measured(LAGGING, {b: STEADY for b in LAGGING}, mid))
  assert verdicts['thousand_samples_suffice']['verdict'] == 'partly'
