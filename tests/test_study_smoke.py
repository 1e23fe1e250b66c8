"""Every study's smoke run (tiny configs on tfds.testing.mock_data): its figure, table and
record, and for a study drawn from its record, the same table redrawn from summary.json."""

import json

import numpy as np
import pytest

from bn_repro.reports.study_results import redraw_results
from bn_repro.studies import STUDIES, common, load_study, santurkar_arms
from bn_repro.studies.common import StudyContext

pytestmark = pytest.mark.usefixtures('mock_mnist')


def _run_smoke_study(name, root):
  """Runs study `name` in smoke mode under `root`; checks its three outputs (and, for a
  study drawn from its record, that `--redraw` rebuilds the same table and a figure from
  summary.json) and returns its summary record."""
  module = load_study(name)
  context = StudyContext(name, root / 'runs', root / 'out', smoke=True)
  module.run(context)
  out = root / 'out' / name
  assert (out / 'figure.png').stat().st_size > 10_000
  table = (out / 'table.md').read_text()
  assert 'SMOKE RUN' in table
  record = json.loads((out / 'summary.json').read_text())
  assert record['study'] == name and record['smoke']
  if hasattr(module, 'draw'):
    (out / 'figure.png').unlink()
    redraw_results(context, module.draw, module.table)
    assert (out / 'table.md').read_text() == table
    assert (out / 'figure.png').stat().st_size > 10_000
  return record


# Studies whose whole smoke grid runs here; the others run on a shrunk grid (_SHRUNK_GRIDS)
# or share their arms (_SANTURKAR_STUDIES, on one module-scoped workdir).
_SMOKE_STUDIES = (
  'bias_redundancy',
  'group_size',
  'stats_in_gradient',
  'inference_statistics',
  'where_to_normalize',
  'small_batches',
  'non_iid_batches',
  'precise_statistics',
  'train_test_consistency',
)
_SANTURKAR_STUDIES = ('noisy_bn', 'ics_measure', 'loss_landscape')


def test_every_study_has_a_smoke_test():
  covered = {*_SMOKE_STUDIES, *_SHRUNK_GRIDS, *_SANTURKAR_STUDIES}
  assert covered == set(STUDIES), covered ^ set(STUDIES)


@pytest.mark.parametrize('name', _SMOKE_STUDIES)
def test_study_writes_figure_table_and_record(tmp_path, name):
  record = _run_smoke_study(name, tmp_path)
  if name == 'bias_redundancy':
    assert max(record['max_abs_difference_first_1000_steps'].values()) < 1e-4
    assert len(record['final_test_accuracy']['bn']['per_seed']) == 3
  if name == 'group_size':
    for measures in record['by_group_size'].values():
      assert len(measures['test_batch_statistics']['per_seed']) == 3
      assert len(measures['test_population']['per_seed']) == 3
  if name == 'stats_in_gradient':  # Every number per seed, the seeds different runs.
    accuracy = record['arms']['bn']['final_test_accuracy']
    assert len(accuracy['per_seed']) == record['num_seeds'] == 3
    assert len(set(record['arms']['bn']['final_bias_norm']['per_seed'])) == 3
  if name == 'inference_statistics':
    # The moving averages' momentum is read at inference only: the same training.
    assert record['momentum_arms_parameter_gap'] == 0.0
    assert len(record['population_unbiased']['1']['per_seed']) == 3
    assert len(record['population_minus_ema_during_training']) == 3
  if name == 'small_batches':  # Every kind at both smoke batch sizes; BN's population too.
    assert set(record['test_error']) == {'batch', 'batch_renorm', 'group', 'layer', 'none'}
    for kind, by_batch in record['test_error'].items():
      assert set(by_batch) == {'2', '32'}
      assert len(by_batch['2']['test_error']['per_seed']) == 3
      assert (by_batch['2']['test_error_population'] is not None) == (kind == 'batch')
    assert set(record['verdicts']) == {
      'bn_degrades',
      'gn_independent',
      'brn_recovers',
      'brn_matches_bn',
    }
  if name == 'non_iid_batches':  # Every kind under every batch order, per seed.
    for by_order in record['errors'].values():
      assert set(by_order) == {'iid', 'pairs', 'halves'}
      assert len(by_order['pairs']['test_error']['per_seed']) == 3
    assert set(record['verdicts']) == {'bn_suffers', 'brn_does_not_suffer', 'gn_does_not_suffer'}
  if name == 'train_test_consistency':  # Four inferences per group size, per seed.
    for by_measure in record['test_error'].values():
      assert all(len(v['per_seed']) == 3 for v in by_measure.values()), by_measure
  if name == 'precise_statistics':  # Per checkpoint and seed; the momentum arms' same weights.
    assert set(record['momentum_arms_parameter_gap'].values()) == {0.0}
    for by_batch in record['test_error'].values():
      assert set(by_batch) == {'32', '256', '1024'}
      assert [len(seeds) for seeds in by_batch['256']] == [3, 3]  # Checkpoints at 10 and 20.


@pytest.fixture(scope='module')
def santurkar_runs(tmp_path_factory):
  """One workdir for studies 11 and 12, which share their MLP arms."""
  return tmp_path_factory.mktemp('santurkar')


def test_santurkar_ics_study_gives_a_verdict_per_measure(santurkar_runs):
  record = _run_smoke_study('ics_measure', santurkar_runs)
  assert record['santurkar_claim'] in ('holds', 'does not hold', 'mixed')
  assert set(record['claim_holds_by_measure']) == {'l2', 'relative_l2', 'cosine'}
  layers = record['measures']['l2']['later']['2']
  assert len(layers) >= 2  # dense1.. and the logits layer.
  assert record['num_cells'] == 2 * 2 * len(layers) == len(record['cells'])  # windows x rates
  for measure in ('l2', 'relative_l2', 'cosine', 'gradient_norm'):
    for window in ('early', 'later'):
      for layers in record['measures'][measure][window].values():
        for arms in layers.values():
          values = np.array([arms['baseline'], arms['bn']])
          assert values.shape == (2, santurkar_arms.NUM_SEEDS) and np.all(np.isfinite(values))
  assert isinstance(record['earlier_reading']['santurkar_claim_holds'], bool)
  shared = santurkar_runs / 'runs' / santurkar_arms.SHARED_DIRECTORY
  assert {'bn_lr2', 'baseline_lr0.5'} <= {p.name for p in (shared / 'mlp').iterdir()}
  assert {'bn_lr2', 'baseline_lr0.5'} <= {p.name for p in (shared / 'mlp_early').iterdir()}


def test_santurkar_landscape_study_reports_every_measure_per_seed(santurkar_runs):
  record = _run_smoke_study('loss_landscape', santurkar_runs)
  assert record['santurkar_claim'] in ('holds', 'does not hold', 'mixed')
  measures = record['measures']
  assert set(measures) == {
    'loss_variation',
    'gradient_predictiveness',
    'beta_smoothness',
    'normalized_loss_variation',
    'relative_gradient_change',
    'scale_invariant_beta',
  }
  for name, settings in measures.items():
    expected = {'0.5', '2'} | ({'proxy_0.01'} if name != 'scale_invariant_beta' else set())
    assert set(settings) == expected, name
    for setting, arms in settings.items():
      assert set(arms) == {'baseline', 'bn'}
      seeds = 1 if setting == 'proxy_0.01' else 3  # Smoke: one proxy seed.
      assert all(len(v) == seeds and np.all(np.isfinite(v)) for v in arms.values())
  cells = record['verdicts']['scale_invariant_beta']['cells']
  assert len(cells) == 4 and all(c['seeds'] == 3 for c in cells)


def test_noisy_bn_study_attributes_the_cost_with_its_control(santurkar_runs, monkeypatch):
  # Smoke: the rates the other Santurkar studies trained, the sweep at one of them.
  noisy_bn = load_study('noisy_bn')
  monkeypatch.setattr(noisy_bn, 'LEARNING_RATES', (0.5, 2.0))
  monkeypatch.setattr(noisy_bn, 'SWEEP_RATES', (2.0,))
  record = _run_smoke_study('noisy_bn', santurkar_runs)
  proxy = record['inception_proxy']
  assert set(proxy['measures']) == {'baseline', 'bn', 'bn_noisy', 'bn_noisy_fixed'}
  for arm, m in proxy['measures'].items():
    assert len(m['population']) == len(m['running']) == 1, arm  # Smoke: one proxy seed.
  mlp = record['mlp']
  assert set(mlp) == {'0.5', '2'}
  assert {'bn_noisy_0.3', 'bn_noisy_0.1'} <= set(mlp['2']['measures'])
  assert set(mlp['0.5']['measures']) == {'baseline', 'bn', 'bn_noisy', 'bn_noisy_fixed'}
  for setting in [*mlp.values(), proxy]:
    share = setting['shift_share_of_cost']
    assert (share is None) == (setting['cost_attributed_to'] is None)
    for verdict in setting['verdicts'].values():
      assert isinstance(verdict['population']['about_as_well_as_bn'], bool)


# The studies whose full smoke grids train dozens of arms (32 arms, 28 proxy runs, 24 arms
# of 50 evaluations), each on a shrunk grid: every part runs (and redraws, `_run_smoke_study`).
_SHRUNK_GRIDS = {
  'nonlinearity_grid': {
    'NONLINEARITIES': ('sigmoid', 'relu'),
    'NORMALIZATIONS': {'none': 'baseline', 'WN': 'wn'},
    'LEARNING_RATES': (0.5,),
  },
  'learning_rates': {'MLP_RATES': (0.5, 128.0), 'INCEPTION_MULTIPLES': (1.0,)},
  'weight_norm': {
    'MODELS': {'mlp': ('configs/mnist.py:bn', 30_000, (0.5, 2.0), 500, 0.97)},
    'NORMALIZATIONS': {'BN': 'batch', 'WN': 'weight'},
  },
  'fig1_regimes': {'LEARNING_RATES': (0.5, 2.0), 'INIT_STDS': (0.1,)},
}


@pytest.mark.parametrize('name', sorted(_SHRUNK_GRIDS))
def test_study_on_a_shrunk_grid(tmp_path, monkeypatch, name):
  module = load_study(name)
  for constant, value in _SHRUNK_GRIDS[name].items():
    monkeypatch.setattr(module, constant, value)
  monkeypatch.setattr(common, 'NUM_SEEDS', 1 if name == 'learning_rates' else 3)
  _check_shrunk_record(name, _run_smoke_study(name, tmp_path))


def _check_shrunk_record(name: str, record: dict) -> None:
  if name == 'learning_rates':  # Every (model, variant, rate) of the shrunk sweep, per seed.
    assert len(record['sweep']) == 6 and all(len(r['seeds']) == 1 for r in record['sweep'])
    assert set(record['weight_scale']) == {'bn', 'bn, epsilon 0', 'baseline'}
  elif name == 'weight_norm':  # Each arm's better rate, its curve and divergences per rate.
    assert [r['normalization'] for r in record['arms']] == ['BN', 'WN']
    for row in record['arms']:
      assert set(row['seeds_diverged_by_learning_rate']) == {'0.5', '2'}
      assert row['mean_curve'] and row['best_learning_rate'] in (0.5, 2.0)
  elif name == 'fig1_regimes':  # Both cells, each verdict per cell.
    assert len(record['cells']) == 2, record.keys()
  else:
    assert len(record['runs']) == 4
    trained = [r for r in record['runs'] if not r['diverged_at']]
    assert all(len(r['final_test_accuracy']['per_seed']) == 3 for r in trained)
