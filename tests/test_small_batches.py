"""Study 13's rules (its docstring) on made-up test errors, one case per verdict."""

import pytest

from bn_repro.studies.small_batches import judge

BATCHES = (2, 4, 8, 16, 32)


def _errors(**curves):
  """{kind: {B: [3 per-seed errors]}}: each kind's seed mean at B from `curves[kind]` (a
  function of B, default 2.0 everywhere), the seeds +-0.05 around it."""
  kinds = ('batch', 'batch_renorm', 'group', 'layer', 'none')
  flat = lambda b: 2.0  # noqa: E731
  return {
    kind: {b: [curves.get(kind, flat)(b) + d for d in (-0.05, 0.0, 0.05)] for b in BATCHES}
    for kind in kinds
  }


def _bn_rises(b):
  return {2: 5.0, 4: 3.0, 8: 2.4}.get(b, 2.0)


def test_bn_degrades_beyond_the_control_or_only_as_the_control_does():
  verdict = judge(_errors(batch=_bn_rises))['bn_degrades']
  assert verdict['verdict'] == 'holds'
  assert verdict['bn_rise'] == pytest.approx(3.0)
  assert judge(_errors(batch=_bn_rises, none=_bn_rises))['bn_degrades']['verdict'] == 'partly'
  assert judge(_errors())['bn_degrades']['verdict'] == 'does not hold'
  # A rise of 0.6 points with the seed ranges overlapping does not count.
  errors = _errors(batch=lambda b: 2.6 if b == 2 else 2.0)
  errors['batch'][32] = [1.2, 2.0, 2.8]
  assert judge(errors)['bn_degrades']['verdict'] == 'does not hold'


def test_group_norm_flat_or_flat_net_of_the_control():
  assert judge(_errors())['gn_independent']['verdict'] == 'holds'
  moves = lambda b: 2.0 + (1.0 if b == 2 else 0.0)  # noqa: E731
  assert judge(_errors(group=moves, none=moves))['gn_independent']['verdict'] == 'partly'
  assert judge(_errors(group=moves))['gn_independent']['verdict'] == 'does not hold'


def test_batch_renorm_recovers_half_of_bns_loss_where_bn_lost():
  recovers = lambda b: {2: 3.0, 4: 2.2}.get(b, 2.0)  # noqa: E731  Shares 2/3 and 0.8.
  verdict = judge(_errors(batch=_bn_rises, batch_renorm=recovers))['brn_recovers']
  assert verdict['verdict'] == 'holds' and verdict['bn_degraded_at'] == [2, 4]
  assert verdict['share_recovered'][2] == pytest.approx(2 / 3)
  at_4_only = lambda b: {2: 4.5, 4: 2.2}.get(b, 2.0)  # noqa: E731
  assert judge(_errors(batch=_bn_rises, batch_renorm=at_4_only))['brn_recovers']['verdict'] == (
    'partly'
  )
  assert judge(_errors(batch=_bn_rises, batch_renorm=_bn_rises))['brn_recovers']['verdict'] == (
    'does not hold'
  )
  assert judge(_errors())['brn_recovers']['verdict'] == 'not testable here'


def test_batch_renorm_matches_bn_at_the_largest_batch():
  assert judge(_errors())['brn_matches_bn']['verdict'] == 'holds'
  worse = lambda b: 2.6 if b == 32 else 2.0  # noqa: E731
  assert judge(_errors(batch_renorm=worse))['brn_matches_bn']['verdict'] == 'does not hold'
