"""Study 14's rules (its docstring) on made-up test errors, one case per verdict."""

from bn_repro.studies.non_iid_batches import judge

ORDERS = ('iid', 'pairs', 'halves')


def _errors(**curves):
  """{kind: {order: [3 per-seed errors]}}: each kind's seed mean per order from
  `curves[kind]` ({order: error}, default 2.0), the seeds +-0.05 around it."""
  kinds = ('batch', 'batch_renorm', 'group', 'none')
  return {
    kind: {o: [curves.get(kind, {}).get(o, 2.0) + d for d in (-0.05, 0.0, 0.05)] for o in ORDERS}
    for kind in kinds
  }


def test_bn_suffers_at_both_orders_one_or_none():
  both = {'pairs': 3.0, 'halves': 6.0}
  assert judge(_errors(batch=both))['bn_suffers']['verdict'] == 'holds'
  assert judge(_errors(batch={'halves': 6.0}))['bn_suffers']['verdict'] == 'partly'
  assert judge(_errors(batch=both, none=both))['bn_suffers']['verdict'] == 'does not hold'


def test_batch_renorm_keeps_half_of_what_bn_lost():
  bn = {'pairs': 3.0, 'halves': 6.0}
  verdicts = judge(_errors(batch=bn, batch_renorm={'pairs': 2.4, 'halves': 3.9}))
  assert verdicts['brn_does_not_suffer']['verdict'] == 'holds'
  verdicts = judge(_errors(batch=bn, batch_renorm={'pairs': 2.4, 'halves': 5.0}))
  assert verdicts['brn_does_not_suffer']['verdict'] == 'partly'
  assert judge(_errors(batch=bn, batch_renorm=bn))['brn_does_not_suffer']['verdict'] == (
    'does not hold'
  )
  assert judge(_errors())['brn_does_not_suffer']['verdict'] == 'not testable here'


def test_group_norm_unmoved_or_moved_as_the_control():
  assert judge(_errors())['gn_does_not_suffer']['verdict'] == 'holds'
  moved = {'halves': 3.0}
  assert judge(_errors(group=moved, none=moved))['gn_does_not_suffer']['verdict'] == 'partly'
  assert judge(_errors(group=moved))['gn_does_not_suffer']['verdict'] == 'does not hold'
