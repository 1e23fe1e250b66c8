"""The trainer's study features and the study scripts, on tfds.testing.mock_data."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.configuration.files import load_config, override
from bn_repro.data import datasets, ordering
from bn_repro.reports.study_results import redraw_results
from bn_repro.studies import STUDIES, common, load_study, santurkar_arms, workers
from bn_repro.studies.common import StudyContext, restore
from bn_repro.training import train
from bn_repro.training.evaluate import batch_statistics_accuracy
from bn_repro.training.tensorboard import read_scalars

pytestmark = pytest.mark.usefixtures('mock_mnist')


def _config(variant='bn', **fields):
  fields.setdefault('num_devices', 2)
  return override(load_config(f'configs/mnist.py:{variant},smoke'), **fields)


def test_trainer_population_statistics_follow_algorithm_2(tmp_path):
  config = _config(population_stats__num_batches=3, population_stats__every_eval=True)
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars['eval_population/accuracy']] == [10, 20]

  population = restore(
    config, tmp_path / 'checkpoints'
  )  # The moving-average checkpoint's params...
  final = restore(config, tmp_path / 'population_checkpoint')  # ...and the population one's.
  jax.tree.map(np.testing.assert_array_equal, final.params, population.params)
  # Layer 0 by hand over the first 3 training batches: x W, m = 60 examples per batch.
  dataset = datasets.load_dataset(config.input)
  indices = ordering.batch_indices(len(dataset.train_labels), 60, config.seed, 0, 3)
  kernel = np.asarray(final.params['dense0']['kernel'], np.float64)
  inputs = [
    (dataset.train_images[i].reshape(60, -1) > 127).astype(np.float64) @ kernel for i in indices
  ]
  np.testing.assert_allclose(
    final.batch_stats['bn0']['mean'], np.mean([u.mean(0) for u in inputs], 0), atol=1e-5
  )
  np.testing.assert_allclose(
    final.batch_stats['bn0']['var'], 60 / 59 * np.mean([u.var(0) for u in inputs], 0), rtol=1e-4
  )


def test_parameter_norms_are_logged(tmp_path):
  config = _config(log_param_norms=True)
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  params = restore(config, tmp_path / 'checkpoints').params
  assert scalars['params/dense1/kernel'][-1] == (
    20,
    pytest.approx(float(np.linalg.norm(params['dense1']['kernel'])), rel=1e-5),
  )
  assert not any(tag.startswith('params_seed') for tag in scalars)


def test_parameter_norms_are_logged_per_seed(tmp_path):
  """Each seed's norms: in metrics.jsonl as params_seedI/, in TensorBoard in its seed's run."""
  from bn_repro.records import read_metrics

  config = _config(log_param_norms=True, num_seeds=3, num_devices=1)
  train.train_and_evaluate(config, tmp_path)
  scalars, logged = read_scalars(tmp_path), read_metrics(tmp_path)
  kernels = restore(config, tmp_path / 'checkpoints').params['dense1']['kernel']  # (3, ...)
  norms = [float(np.linalg.norm(k)) for k in kernels]
  assert len(set(norms)) == 3  # Three different runs.
  for seed, norm in enumerate(norms):
    assert logged[f'params_seed{seed}/dense1/kernel'][-1] == (20, pytest.approx(norm, rel=1e-5))
    seed_run = read_scalars(tmp_path / f'seed{seed}')
    assert seed_run['params/dense1/kernel'][-1] == (20, pytest.approx(norm, rel=1e-5))
  assert not any(tag.startswith('params_seed') for tag in scalars)
  assert 'params/bn0/scale' in scalars and 'params/dense0/bias' not in scalars


def test_pre_bn_bias_does_not_change_training(tmp_path):
  """Study 4 as a test: BN(Wu + b) trains exactly like BN(Wu) (Sec. 3.2)."""
  losses = {}
  for variant in ('bn', 'bn_bias'):
    train.train_and_evaluate(_config(variant, num_steps=40), tmp_path / variant)
    losses[variant] = [v for _, v in read_scalars(tmp_path / variant)['train/loss']]
  np.testing.assert_allclose(losses['bn'], losses['bn_bias'], rtol=1e-5)
  assert losses['bn'][-1] < losses['bn'][0]  # It trained.


def _numpy_mlp_logits_with_batch_statistics(params, x, epsilon):
  """The smoke MLP (sigmoid, BN on Wu, no pre-BN bias) in float64 numpy, each hidden
  layer normalized with this batch's own mean and biased variance (Algorithm 1)."""
  h = np.asarray(x, np.float64).reshape(len(x), -1)
  layer = 0
  while f'dense{layer}' in params:
    u = h @ np.asarray(params[f'dense{layer}']['kernel'], np.float64)
    bn = params[f'bn{layer}']
    u_hat = (u - u.mean(axis=0)) / np.sqrt(u.var(axis=0) + epsilon)
    h = 1 / (1 + np.exp(-(np.asarray(bn['scale']) * u_hat + np.asarray(bn['bias']))))
    layer += 1
  return h @ np.asarray(params['logits']['kernel']) + np.asarray(params['logits']['bias'])


def test_batch_statistics_accuracy_normalizes_each_test_batch_on_its_own(tmp_path):
  config = _config()
  train.train_and_evaluate(config, tmp_path)
  network = restore(config, tmp_path / 'checkpoints')
  images, labels = network.test_inputs()
  for batch_size in (4, 10):
    correct = 0
    for start in range(0, len(labels) - len(labels) % batch_size, batch_size):
      logits = _numpy_mlp_logits_with_batch_statistics(
        network.params, images[start : start + batch_size], config.model.norm.epsilon
      )
      correct += int(np.sum(np.argmax(logits, -1) == labels[start : start + batch_size]))
    expected = correct / (len(labels) - len(labels) % batch_size)
    accuracy = batch_statistics_accuracy(
      network.model, network.params, network.batch_stats, images, labels, batch_size
    )
    assert accuracy == pytest.approx(expected)


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


def test_probes_run_on_the_initialization_and_every_checkpoint(tmp_path):
  context = StudyContext('probe_check', tmp_path / 'runs', tmp_path / 'out', smoke=True)
  ((config, arm),) = santurkar_arms.train(context, mlp=[('bn', 0.5)]).mlp.values()

  def probe(value_and_grad, params):
    return {'loss': value_and_grad(params)[0], 'kernel_sum': jnp.sum(params['dense0']['kernel'])}

  trajectory = santurkar_arms.probe_trajectories(config, arm, probe)
  np.testing.assert_array_equal(trajectory['steps'], [0, 10, 20])
  assert trajectory['loss'].shape == (3, santurkar_arms.NUM_SEEDS)
  # Each probe point sees its own saved state: the parameters move between checkpoints,
  # and each seed's differ.
  kernel_sums = trajectory['kernel_sum']
  assert len(np.unique(kernel_sums[:, 0])) == 3 and len(np.unique(kernel_sums[0])) == 3
  assert np.all(np.isfinite(trajectory['loss']))


def test_worker_cores_are_distinct_allowed_cores_or_none(monkeypatch):
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {5, 2, 7}, raising=False)
  assert workers.worker_cores(2) == [2, 5]
  assert workers.worker_cores(3) == [2, 5, 7]
  assert workers.worker_cores(4) == [None] * 4  # More workers than cores: none pinned.


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='the platform cannot pin')
def _arm(scalars, diverged_at=None):
  return common.Arm(scalars, diverged_at, workdir=None)


def test_seed_arms_side_by_side_or_one_arm_per_seed():
  config = _config()
  together = common.seed_arms('mlp', config, side_by_side=True)
  assert list(together) == ['mlp'] and together['mlp'].num_seeds == common.NUM_SEEDS
  apart = common.seed_arms('proxy', config, side_by_side=False)
  assert list(apart) == [f'proxy_seed{i}' for i in range(common.NUM_SEEDS)]
  assert [c.seed for c in apart.values()] == [config.seed + i for i in range(common.NUM_SEEDS)]
  assert all(c.num_seeds == 1 for c in apart.values())


def test_arms_of_one_program_start_one_per_round_so_later_ones_find_it_compiled():
  bn, baseline = _config(), _config('baseline')
  arms = common.seed_arms('bn', bn, side_by_side=False)
  # A constant rate is data of the program (the optimizer's state): same program as 'bn'.
  arms |= common.seed_arms('bn_fast', override(bn, optimizer__learning_rate=8.0), False)
  arms |= common.seed_arms('baseline', baseline, side_by_side=False)
  assert workers.compile_once_order(arms) == [
    'bn_seed0',
    'baseline_seed0',
    'bn_seed1',
    'baseline_seed1',
    'bn_seed2',
    'baseline_seed2',
    'bn_fast_seed0',
    'bn_fast_seed1',
    'bn_fast_seed2',
  ]


def test_seeded_arm_reads_every_seed_whichever_way_they_trained():
  side_by_side = {
    f'eval_seed{i}/accuracy': [(10, 0.1 * i), (20, 0.2 + i)] for i in range(common.NUM_SEEDS)
  }
  seeds = common.SeededArm.collect({'a': _arm(side_by_side)}, 'a')
  assert seeds.finals('eval/accuracy') == [0.2 + i for i in range(common.NUM_SEEDS)]
  assert seeds.curves('eval/accuracy')[1] == [(10, 0.1), (20, 1.2)]
  assert seeds.diverged_at is None
  separate = {
    f'b_seed{i}': _arm({'eval/accuracy': [(10, 0.5 + i)]}, diverged_at=7 if i == 1 else None)
    for i in range(common.NUM_SEEDS)
  }
  seeds = common.SeededArm.collect(separate, 'b')
  assert seeds.finals('eval/accuracy') == [0.5, None, 2.5]  # Seed 1 diverged.
  assert seeds.diverged_at == 7
  diverged = common.SeededArm.collect({'c': _arm(side_by_side, diverged_at=3)}, 'c')
  assert diverged.finals('eval/accuracy') == [None] * common.NUM_SEEDS


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
