"""The generated report: its rules on hand-made summaries (test-only numbers, not results),
and the committed results/REPORT.md equal to what the generator writes from the committed
summary files."""

import json
import math

from bn_repro.reports import claims, paper_report
from bn_repro.training.config_files import REPO_ROOT


def _fig1_summary(gap: float, std: float) -> dict:
  marks = {m: 0.97 for m in claims.MARKS}
  stds = {m: std for m in claims.MARKS}

  def arm(shift):
    return {
      'num_seeds': 3,
      'test_accuracy_at': {m: v + shift for m, v in marks.items()},
      'test_accuracy_std_over_seeds_at': stds,
      'final_test_accuracy': 0.97 + shift,
    }

  return {
    'settings': {'lr2': {'learning_rate': 2.0, 'arms': {'baseline': arm(0.0), 'bn': arm(gap)}}}
  }


def test_fig1a_rule_counts_marks_beyond_two_standard_errors():
  std = 0.003  # Standard error of the gap: 0.003 * sqrt(2) / sqrt(3) = 0.00245.
  se = std * math.sqrt(2) / math.sqrt(3)
  assert claims._fig1a(_fig1_summary(2.1 * se, std))[1] == claims.REPRODUCED
  assert claims._fig1a(_fig1_summary(1.9 * se, std))[1] == claims.NOT_REPRODUCED
  ours, _ = claims._fig1a(_fig1_summary(0.005, std))
  assert 'at 5 of 5 marks' in ours and '+0.50 points' in ours


def test_inception_speedup_rule():
  def summary(bn_steps):
    return {
      'variants': {
        'inception': {'steps_to_target_per_seed': [2400, 2500, 2600]},
        'bn_x5': {'steps_to_target_per_seed': bn_steps},
      }
    }

  judge = claims._inception_faster('bn_x5', 5.0)
  assert judge(summary([400, 500, 500]))[1] == claims.REPRODUCED
  assert judge(summary([400, 1000, 500]))[1] == claims.PARTLY
  assert judge(summary([400, None, None]))[1] == claims.NOT_REPRODUCED


def test_missing_and_smoke_summaries_are_not_run(tmp_path):
  (tmp_path / 'mnist').mkdir()
  (tmp_path / 'mnist' / 'summary.json').write_text(json.dumps({'smoke': True}))
  report = paper_report.render(tmp_path)
  rows = [line for line in report.splitlines() if line.startswith('| Fig. 1(a)')]
  assert rows and '**not run**' in rows[0]
  assert report.count('**not testable here**') == 1


def test_committed_report_is_the_generators_output():
  results = REPO_ROOT / 'results'
  assert (results / 'REPORT.md').read_text() == paper_report.render(results), (
    'results/REPORT.md differs from its generator: run python -m bn_repro.reports.paper_report'
  )
