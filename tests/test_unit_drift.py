"""Figure 1 over all units (`bn_repro.analysis.unit_drift`): definitions against hand computations,
records that survive torn tails and resumes, and the trainer's records."""

import numpy as np
import pytest

from bn_repro.analysis import unit_drift
from bn_repro.configuration.files import load_config, override
from bn_repro.training import train
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.state import create_train_state


def test_drift_statistics_by_hand():
  """Two units over 6 evaluations, window 2: early = mean of evaluations 0-1, late = 4-5."""
  p50 = np.array([[0.0, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 1.0], [4.0, 1.0], [6.0, 1.0]])
  p15 = p50 - np.array([1.0, 0.5])
  p85 = p50 + np.array([[1.0, 0.5]] * 4 + [[3.0, 0.5]] * 2)
  stats = unit_drift.drift_statistics(p15, p50, p85, window=2)
  # Unit 0: early median 1, late 5 -> 4; width early 2, late 4 -> |log 2|. Unit 1: still.
  np.testing.assert_allclose(stats['location_drift'], [4.0, 0.0])
  np.testing.assert_allclose(stats['spread_drift'], [np.log(2.0), 0.0])
  # Jitter over the second half (evaluations 3-5): differences 2, 2 -> std 0 for unit 0.
  np.testing.assert_allclose(stats['jitter'], [0.0, 0.0])
  noisy = p50.copy()
  noisy[3:, 1] += [0.0, 0.2, 0.0]  # Differences +0.2, -0.2: std 0.2, and no drift.
  assert unit_drift.drift_statistics(p15, noisy, p85, window=2)['jitter'][1] == pytest.approx(0.2)
  with pytest.raises(ValueError, match='at least 2 x window = 8'):
    unit_drift.drift_statistics(p15, p50, p85, window=4)


def test_normalized_percentiles_recover_x_hat_for_either_sign_of_gamma():
  rng = np.random.default_rng(0)
  x_hat = rng.normal(size=(1000, 3))
  gamma, beta = np.array([2.0, -0.5, 1.0]), np.array([0.3, 1.0, -2.0])
  y = gamma * x_hat + beta
  got = unit_drift.normalized_percentiles(unit_drift.unit_percentiles(y), gamma, beta)
  np.testing.assert_allclose(got, np.percentile(x_hat, (15, 50, 85), axis=0), atol=1e-9)


def test_summary_is_median_and_quartiles_over_units_and_seeds():
  summary = unit_drift.summarize([np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])])
  assert summary == {'median': 3.0, 'q25': 2.0, 'q75': 4.0}


def test_records_drop_a_torn_line_and_truncate_to_a_step(tmp_path):
  unit_drift.append_records(tmp_path, [{'step': s, 'layer': '0'} for s in (5, 10, 15)])
  with open(tmp_path / unit_drift.RECORDS_FILE, 'a') as f:
    f.write('{"step": 20, "lay')  # A writer killed mid-line.
  assert [r['step'] for r in unit_drift.read_records(tmp_path)] == [5, 10, 15]
  unit_drift.truncate_records(tmp_path, 10)
  assert [r['step'] for r in unit_drift.read_records(tmp_path)] == [5, 10]
  assert (tmp_path / unit_drift.RECORDS_FILE).read_text().endswith('\n')


@pytest.mark.usefixtures('mock_mnist')
def test_trainer_records_every_unit_per_seed_and_resume_keeps_them_whole(tmp_path):
  config = override(
    load_config('configs/mnist.py:bn,smoke'),
    num_devices=2,
    num_seeds=2,
    num_steps=10,
    population_stats__num_batches=2,
    population_stats__every_eval=True,
  )
  train.train_and_evaluate(config, tmp_path)
  train.train_and_evaluate(override(config, num_steps=20), tmp_path)  # Resumes at 10.
  records = unit_drift.read_records(tmp_path)
  keys = [(r['step'], r['seed'], r['statistics'], r['layer']) for r in records]
  # Steps x seeds x sources, for the last hidden layer only (the model has layers 0 and 1).
  assert len(keys) == len(set(keys)) == 2 * 2 * 2
  assert {r['layer'] for r in records} == {'1'}
  assert {r['step'] for r in records} == {10, 20}
  for statistics in ('moving_average', 'population'):
    runs = unit_drift.last_layer_trajectories(records, statistics)
    assert len(runs) == 2 and all(list(t['steps']) == [10, 20] for t in runs)
  final = [r for r in records if r['step'] == 20 and r['statistics'] == 'moving_average']
  assert all(np.shape(r['values']) == (3, 16) for r in final)
  # gamma and beta are the final parameters of each seed's BN layer.
  from bn_repro import models

  model = models.create_model(config.model, 10, axis_name='batch')
  state = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  state = Checkpointer(tmp_path / 'checkpoints', 2).restore_latest(state)
  for r in final:
    bn = state.params[f'bn{r["layer"]}']
    np.testing.assert_allclose(r['gamma'], np.asarray(bn['scale'])[r['seed']], rtol=1e-6)
    np.testing.assert_allclose(r['beta'], np.asarray(bn['bias'])[r['seed']], rtol=1e-6)
  # The values are the percentiles over the test set of each unit's input to its sigmoid.
  from bn_repro.data import datasets, transforms
  from bn_repro.training.seeds import seed_state

  dataset = datasets.load_dataset(config.input)
  x = transforms.get_preprocessor(config.input.preprocess)(dataset.test_images)
  seed1 = seed_state(state, 1, 2)
  _, sown = model.clone(axis_name=None).apply(
    {'params': seed1.params, 'batch_stats': seed1.batch_stats},
    x,
    train=False,
    mutable=['intermediates'],
  )
  expected = np.percentile(np.asarray(sown['intermediates']['preactivation1'][0]), (15, 50, 85), 0)
  (record,) = [r for r in final if r['seed'] == 1 and r['layer'] == '1']
  np.testing.assert_allclose(record['values'], expected, rtol=1e-5, atol=1e-6)
