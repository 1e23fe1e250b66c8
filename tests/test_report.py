"""Figure 1 summary numbers from event files, against values computed by hand.

The scalars here are synthetic (test-only) trajectories, not training results.
"""

import json

import numpy as np
import pytest

from bn_repro import records
from bn_repro.reports import figure1, inception_table, paper_report
from bn_repro.training.tensorboard import SummaryWriter, read_scalars


def _synthetic_arm(accuracies, p15, p50, p85):
  steps = [10_000 * (i + 1) for i in range(len(accuracies))]
  return {
    'eval/accuracy': list(zip(steps, accuracies, strict=True)),
    'preactivation/layer2/unit_p15': list(zip(steps, p15, strict=True)),
    'preactivation/layer2/unit_p50': list(zip(steps, p50, strict=True)),
    'preactivation/layer2/unit_p85': list(zip(steps, p85, strict=True)),
    'preactivation/layer0/unit_p50': list(zip(steps, [100.0] * len(steps), strict=True)),
    'train/elapsed_s': [(steps[-1], 12.5)],
  }


def test_summary_numbers():
  arm = _synthetic_arm(
    [0.94, 0.955, 0.972, 0.971, 0.975], [-2, -3, -4, -3, -2], [0, 1, 0, 0, 0], [2, 2, 2, 3, 5]
  )
  summary = figure1.summarize_arm(arm)
  assert summary['final_test_accuracy'] == 0.975
  assert summary['test_accuracy_at'] == {
    '10000': 0.94,
    '20000': 0.955,
    '30000': 0.972,
    '40000': 0.971,
    '50000': 0.975,
  }
  assert summary['steps_to_accuracy'] == {'0.95': 20_000, '0.97': 30_000, '0.98': None}
  # Ranges 2, 1, 3 of the last hidden layer (layer 2; layer 0 is ignored).
  assert summary['typical_unit_ranges']['mean'] == pytest.approx(2.0)
  assert summary['percentile_drift'] is None  # No all-unit records for this arm.
  assert summary['train_wall_time_s'] == 12.5


def _records(p50_by_seed):
  """Unit records of layer 1 (two units) for each seed's `(evaluations, 2)` medians."""
  return [
    {
      'step': 500 * (e + 1),
      'seed': seed,
      'statistics': 'moving_average',
      'layer': '1',
      'percentiles': [15, 50, 85],
      'values': [list(row - 1.0), list(row), list(row + 1.0)],
    }
    for seed, p50 in enumerate(p50_by_seed)
    for e, row in enumerate(np.asarray(p50, float))
  ]


def test_percentile_drift_is_the_median_location_drift_over_units_and_seeds():
  # 10 evaluations, window 5: unit drifts |mean(last 5) - mean(first 5)|.
  ramp = np.arange(10.0)[:, None] * np.array([1.0, 0.0])  # unit 0 drifts 5, unit 1 stays.
  records = _records([ramp, 2 * ramp])  # seed 1: unit 0 drifts 10.
  arm = _synthetic_arm([0.9, 0.95], [-1, -1], [0, 0], [1, 1])
  summary = figure1.summarize_arm(arm, records)
  assert summary['percentile_drift'] == pytest.approx(np.median([5.0, 0.0, 10.0, 0.0]))
  assert summary['drift']['spread_drift']['median'] == 0.0


def test_event_roundtrip_keeps_last_value_of_a_repeated_step(tmp_path):
  writer = SummaryWriter(tmp_path)
  writer.write_scalars(10, {'eval/accuracy': 0.5})
  writer.write_scalars(20, {'eval/accuracy': 0.6})
  writer.close()
  writer = SummaryWriter(tmp_path)  # A resumed run logs step 20 again.
  writer.write_scalars(20, {'eval/accuracy': 0.7})
  writer.close()
  assert read_scalars(tmp_path)['eval/accuracy'] == [(10, 0.5), (20, pytest.approx(0.7))]


def test_figure_and_summary_files(tmp_path):
  arms = {
    'baseline': _synthetic_arm([0.9, 0.96], [-3, -1], [0, 1], [3, 4]),
    'bn': _synthetic_arm([0.95, 0.98], [-1, -1], [0, 0], [1, 1.5]),
  }
  infos = {'baseline': {'commit': 'abc', 'hardware': '1 x cpu'}, 'bn': {}}
  settings = {
    'lr2': {'learning_rate': 2.0, 'init_std': 0.1, 'arms': {a: (s, []) for a, s in arms.items()}},
    'lr0.5': {
      'learning_rate': 0.5,
      'init_std': 0.1,
      'arms': {a: (s, _records([np.zeros((10, 2))])) for a, s in arms.items()},
    },
  }
  figure1.plot_figure1(settings, tmp_path / 'figure1.png')
  figure1.write_summary(settings, infos, tmp_path, 'cmd')
  assert (tmp_path / 'figure1.png').read_bytes()[:4] == b'\x89PNG'
  record = json.loads((tmp_path / 'summary.json').read_text())
  assert record['arms']['bn']['steps_to_accuracy']['0.98'] == 20_000
  assert record['settings']['lr0.5']['learning_rate'] == 0.5
  assert record['settings']['lr0.5']['arms']['bn']['percentile_drift'] == 0.0
  assert record['wall_time_s'] == 50.0 and record['commit'] == 'abc'
  assert '| steps to 98% test accuracy | — | 20,000 |' in (tmp_path / 'summary.md').read_text()


def test_multi_seed_summary_reports_the_spread_over_seeds(tmp_path):
  per_seed = [[0.94, 0.970], [0.96, 0.974], [0.95, 0.978]]
  arm = _synthetic_arm([0.95, 0.974], [-1, -1], [0, 0], [1, 1])
  for seed, accuracies in enumerate(per_seed):
    arm[f'eval_seed{seed}/accuracy'] = list(zip((10_000, 20_000), accuracies, strict=True))
  # The trainer also logs the seeds' spread, which is not a seed.
  arm['eval_seed_sd/accuracy'] = [(10_000, 0.01), (20_000, 0.004)]
  summary = figure1.summarize_arm(arm)
  assert summary['num_seeds'] == 3
  assert summary['final_test_accuracy_per_seed'] == [0.970, 0.974, 0.978]
  assert summary['test_accuracy_std_over_seeds_at']['20000'] == pytest.approx(0.004)
  assert summary['test_accuracy_std_over_seeds_at']['10000'] == pytest.approx(0.01)
  settings = {
    'lr2': {'learning_rate': 2.0, 'init_std': 0.1, 'arms': {'baseline': (arm, []), 'bn': (arm, [])}}
  }
  figure1.plot_figure1(settings, tmp_path / 'figure1.png')
  figure1.write_summary(settings, {'baseline': {}}, tmp_path, 'cmd')
  assert '| test accuracy at 20k steps | 0.9740 ± 0.0040 |' in (tmp_path / 'summary.md').read_text()


def test_summary_names_the_preprocessing_the_runs_used(tmp_path):
  arm = _synthetic_arm([0.9, 0.96], [-3, -1], [0, 1], [3, 4])
  settings = {'lr2': {'learning_rate': 2.0, 'init_std': 0.1, 'arms': {'bn': (arm, [])}}}
  record = figure1.write_summary(settings, {'bn': {}}, tmp_path, 'cmd', None, 'scaled')
  assert record['data'].endswith('intensities scaled to [0, 1]')
  assert 'binarized' not in (tmp_path / 'summary.md').read_text()


def test_inception_table_smoothing_target_and_steps_by_hand():
  steps = [10, 20, 30, 40, 50, 60]
  rising = list(zip(steps, [0.125, 0.5, 0.625, 0.875, 0.75, 0.75], strict=True))
  flat = [(s, 0.5) for s in steps]
  # Centred windows of 5, shrunk at the ends: means of 3, 4, 5, 5, 4 and 3 evaluations.
  np.testing.assert_allclose(
    inception_table.smoothed(rising),
    [1.25 / 3, 2.125 / 4, 2.875 / 5, 3.5 / 5, 3.0 / 4, 2.375 / 3],
  )
  # The lower of the two seeds' last-5 means: 3.5 / 5 = 0.7 and 0.5.
  assert inception_table.target_accuracy([rising, flat]) == 0.5
  assert inception_table.steps_to_target(rising, 0.5) == 20  # Smoothed 0.53125 at step 20.
  assert inception_table.steps_to_target(flat, 0.5) == 10
  assert inception_table.steps_to_target(rising, 0.9) is None
  assert inception_table.median_steps([40, None, 20]) == 40
  assert inception_table.median_steps([None, None, 20]) is None
  assert inception_table.median_steps([10, 20]) == 15


def test_inception_table_summary_over_seeds():
  steps = [10, 20, 30, 40, 50, 60]
  rising = list(zip(steps, [0.125, 0.5, 0.625, 0.875, 0.75, 0.75], strict=True))
  flat = [(s, 0.5) for s in steps]
  fast = [(s, 1.0) for s in steps]
  target, variants = inception_table.summarize_variants(
    {'inception': [rising, flat], 'bn_x5': [fast]}, {'inception': [3.0, 5.0], 'bn_x5': [2.0]}
  )
  assert target == 0.5
  assert variants['inception']['steps_to_target_per_seed'] == [20, 10]
  assert variants['inception']['steps_to_target'] == 15
  assert variants['inception']['max_accuracy'] == (0.875 + 0.5) / 2
  assert variants['inception']['final_accuracy_per_seed'] == [0.75, 0.5]
  assert variants['inception']['wall_time_s'] == 4.0
  assert variants['bn_x5']['speedup_over_inception'] == 1.5  # 15 steps / 10 steps.


def test_inception_summary_records_the_commands_wall_time_for_the_report(tmp_path):
  curves = {'inception': [[(10, 0.5), (20, 0.5)]]}
  out = tmp_path / 'inception_small'
  facts = {'num_steps': 20, 'eval_every': 10, 'extra_eval_steps': [], 'eval_examples': None}
  facts['schedule'] = 'constant'
  run_info = {'commit': 'abc', 'hardware': 'cpu'}
  inception_table.write_summary(curves, {'inception': [1.0]}, run_info, facts, out, 'cmd', 1800.0)
  assert json.loads((out / 'summary.json').read_text())['end_to_end_wall_time_s'] == 1800.0
  assert 'Wall time of the whole command: 30.0 min' in (out / 'summary.md').read_text()
  stages = '\n'.join(paper_report._stages(tmp_path))
  assert '| inception_proxy | 30.0 min | — |' in stages


def test_metrics_json_lines_survive_a_torn_tail_and_truncate_on_resume(tmp_path):
  writer = SummaryWriter(tmp_path)
  writer.write_scalars(10, {'eval/accuracy': 0.3, 'train/loss': 1.7})
  writer.write_scalars(20, {'eval/accuracy': 0.71})
  writer.close()
  # The event files, read by bn_repro's own TFRecord reader, are the reference.
  assert records.read_metrics(tmp_path) == read_scalars(tmp_path)
  path = tmp_path / records.METRICS_FILE
  with open(path, 'a') as f:
    f.write('{"step": 30, "eval/acc')  # A writer killed mid-line.
  assert records.read_metrics(tmp_path) == read_scalars(tmp_path)
  records.truncate(path, 10)
  assert records.read_metrics(tmp_path) == {
    'eval/accuracy': [(10, float(np.float32(0.3)))],
    'train/loss': [(10, float(np.float32(1.7)))],
  }
