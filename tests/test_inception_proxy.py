"""The Inception proxy's design: the training subset, the validity gate, the rows it gates,
and rebuilding a finished run's config."""

import json

import numpy as np
import pytest

from bn_repro.configuration.files import config_of_run, load_config, override
from bn_repro.data.datasets import InMemoryDataset, SubsetSizeError, class_balanced_subset
from bn_repro.reports import claims, inception_table


def _dataset(labels: list[int]) -> InMemoryDataset:
  labels = np.array(labels, np.int32)
  images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)
  return InMemoryDataset(images, labels, images[:2], labels[:2], num_classes=3)


def test_class_balanced_subset_takes_the_first_of_each_class_in_stored_order():
  data = _dataset([2, 0, 0, 1, 2, 0, 1, 1, 2, 0])
  subset = class_balanced_subset(data, 6)
  # Two of each class, the first ones stored: indices 0, 1, 2, 3, 4, 6.
  np.testing.assert_array_equal(subset.train_images.reshape(-1), [0, 1, 2, 3, 4, 6])
  np.testing.assert_array_equal(subset.train_labels, [2, 0, 0, 1, 2, 1])
  np.testing.assert_array_equal(subset.test_labels, data.test_labels)
  with pytest.raises(
    SubsetSizeError, match='train_subset_size=7 must be a positive multiple of the 3'
  ):
    class_balanced_subset(data, 7)
  with pytest.raises(
    SubsetSizeError, match='needs 4 examples of class 1; the training split has 3'
  ):
    class_balanced_subset(data, 12)


def test_validity_gate_compares_the_smoothed_accuracy_at_half_and_end():
  steps = [500 * i for i in range(1, 17)]  # 500 .. 8,000; T/2 = 4,000 is the 8th.
  plateau = [(s, 0.90) for s in steps]
  rising = [(s, 0.80 + 0.1 * s / 8000) for s in steps]
  # Smoothed at 8,000: the mean of 7,000, 7,500, 8,000; at 4,000: of 3,000 .. 5,000.
  expected = np.mean([0.1 * s / 8000 for s in (7000, 7500, 8000)]) - 0.1 * 4000 / 8000
  assert inception_table.plateau_gain(rising) == pytest.approx(expected)
  assert inception_table.plateau_gain(plateau) == pytest.approx(0.0)
  assert inception_table.validity_gate([plateau, plateau])['passed']
  gate = inception_table.validity_gate([plateau, rising])
  assert not gate['passed'] and gate['per_seed_gain'][1] == pytest.approx(expected)


def _summary(gate_passed: bool, pilot_diverged: bool) -> dict:
  variant = {'steps_to_target_per_seed': [1000, 1200, 900], 'max_accuracy_per_seed': [0.9] * 3}
  return {
    'validity_gate': {
      'rule': 'r',
      'per_seed_gain': [0.02 - 0.02 * gate_passed],
      'passed': gate_passed,
    },
    'pilot_bn_x30': {'steps': 300, 'diverged': pilot_diverged, 'final_loss': None},
    'variants': {
      'inception': {
        'steps_to_target_per_seed': [8000, 7000, 7500],
        'max_accuracy_per_seed': [0.8] * 3,
      },
      'bn_baseline': variant,
      'bn_x5': variant,
      'bn_x30': variant,
    },
  }


def _target_rows() -> list[claims.Claim]:
  return [c for c in claims.CLAIMS if c.summary == 'inception_small/summary.json'][:3]


def _verdicts(summary: dict) -> dict[str, str]:
  return {c.claim: c.judge(summary)[1] for c in _target_rows()}


def test_a_failed_gate_makes_the_target_rows_not_testable_never_not_reproduced():
  assert set(_verdicts(_summary(True, False)).values()) == {claims.REPRODUCED}
  failed = _verdicts(_summary(False, False))
  assert set(failed.values()) == {claims.NOT_TESTABLE}
  reason = _target_rows()[2].judge(_summary(False, False))[0]
  assert 'validity gate failed' in reason and '+2.00' in reason


def test_a_diverged_pilot_makes_only_the_x30_row_not_testable():
  verdicts = list(_verdicts(_summary(True, True)).values())
  assert verdicts == [claims.REPRODUCED, claims.REPRODUCED, claims.NOT_TESTABLE]


def test_config_of_run_rebuilds_a_run_config_from_its_json():
  trained = override(
    load_config('configs/inception.py:bn_x5,small,smoke'), seed=4, eval__extra_steps=(1, 3)
  )
  saved = json.loads(trained.to_json_best_effort())
  rebuilt = config_of_run('configs/inception.py:bn_x5,small', saved)
  assert rebuilt.to_json_best_effort(sort_keys=True) == trained.to_json_best_effort(sort_keys=True)
  with pytest.raises(KeyError, match='no field model.nope'):
    config_of_run('configs/inception.py:bn_x5,small', {'model': {'nope': 1}})
