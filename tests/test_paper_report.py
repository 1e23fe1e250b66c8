"""The generated report: its rules on hand-made summaries (test-only numbers, not results),
and the committed results/REPORT.md equal to what the generator writes from the committed
summary files."""

import json
import math

import numpy as np
import pytest

from bn_repro.configuration.files import REPO_ROOT
from bn_repro.reports import claims, judges, paper_report, statistics


def _fig1_summary(gap: float, std: float) -> dict:
  marks = {m: 0.97 for m in judges.MARKS}
  stds = {m: std for m in judges.MARKS}

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
  assert judges.fig1a_two_standard_errors(_fig1_summary(2.1 * se, std))[1] == claims.REPRODUCED
  assert judges.fig1a_two_standard_errors(_fig1_summary(1.9 * se, std))[1] == claims.NOT_REPRODUCED
  ours, _ = judges.fig1a_two_standard_errors(_fig1_summary(0.005, std))
  assert 'at 5 of 5 marks' in ours and '+0.50 points' in ours


def test_inception_speedup_rule():
  def summary(bn_steps):
    return {
      'variants': {
        'inception': {'steps_to_target_per_seed': [2400, 2500, 2600]},
        'bn_x5': {'steps_to_target_per_seed': bn_steps},
      }
    }

  judge = judges.inception_faster('bn_x5', 5.0)
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


def test_every_claim_row_has_its_seven_cells():
  """A measured '|x - y|' in a cell is escaped, so no row splits into more columns."""
  import re

  report = (REPO_ROOT / 'results' / 'REPORT.md').read_text()
  table = report.split('| where | claim |')[1].split('\n\n')[0].splitlines()[2:]
  assert len(table) == len(paper_report.CLAIMS)
  for row in table:
    assert len(re.findall(r'(?<!\\)\|', row)) == 8, row


def test_t_quantiles_match_a_numerical_integration_of_the_t_density():
  for df, quantile in statistics.T_95_ONE_SIDED.items():
    x = np.linspace(-60.0, quantile, 400_001)
    density = (1 + x**2 / df) ** (-(df + 1) / 2)
    density /= math.sqrt(df) * math.gamma(0.5) * math.gamma(df / 2) / math.gamma((df + 1) / 2)
    assert np.trapezoid(density, x) == pytest.approx(0.95, abs=2e-4), df


def test_paired_t_by_hand():
  # d = 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt(3)) = 3.464 > 2.920 (df 2).
  assert statistics.paired_t([1.0, 2.0, 3.0]) == pytest.approx(2 * math.sqrt(3))
  assert statistics.paired_greater([2, 3, 4], [1, 1, 1])
  assert not statistics.paired_greater([2, 1, 4], [1, 1, 1])  # t = 1.0 / (1.53 / 1.73) = 1.13.
  assert statistics.paired_t([0.5, 0.5]) == math.inf


def _paired_summary(bn_ahead: list[float], bn_steps: list[int | None]) -> dict:
  base = {
    'num_seeds': 5,
    'steps': 50_000,
    'final_test_accuracy': 0.975,
    'test_accuracy_at_per_seed': {m: [0.97] * 5 for m in judges.MARKS},
    'steps_to_accuracy_per_seed': {'0.97': [9_000] * 5},
  }
  bn = {
    **base,
    'final_test_accuracy': 0.975 + float(np.mean(bn_ahead)),
    'test_accuracy_at_per_seed': {m: [0.97 + d for d in bn_ahead] for m in judges.MARKS},
    'steps_to_accuracy_per_seed': {'0.97': bn_steps},
  }
  return {
    'settings': {'lr2': {'arms': {'baseline': base}}, 'lr0.5': {'arms': {'bn': bn}}},
  }


def test_fig1a_paired_rule():
  ahead = [0.002, 0.003, 0.001, 0.004, 0.002]
  ours, verdict = judges.fig1a_paired(_paired_summary(ahead, [7_000, 8_000, 6_500, 7_500, 8_500]))
  assert verdict == claims.REPRODUCED and 'at 5 of 5 marks' in ours and '5 paired seeds' in ours
  # Ahead on accuracy, but one seed never reaches 97%: not faster by the test.
  ours, verdict = judges.fig1a_paired(_paired_summary(ahead, [7_000, None, 6_500, 7_500, 8_500]))
  assert verdict == claims.PARTLY and 'never' in ours and 'not faster' in ours
  mixed = [0.002, -0.003, 0.001, -0.004, 0.002]
  assert judges.fig1a_paired(_paired_summary(mixed, [9_000] * 5))[1] == claims.NOT_REPRODUCED


def _cell(lr, std, base_accuracy, location_ratios, spread):
  drift = {'location_drift': {'median': 0.5}, 'spread_drift': {'median': 0.5}}
  return {
    'learning_rate': lr,
    'init_std': std,
    'location_drift_ratio_by_seed': location_ratios,
    'baseline': {
      **drift,
      'location_drift': {'median': 1.0},
      'spread_drift': {'median': spread},
      'final_test_accuracy': base_accuracy,
    },
    'bn': {**drift, 'final_test_accuracy': 0.97},
  }


def test_fig1bc_rule_needs_location_and_spread_and_drops_untrained_cells():
  cells = [
    _cell(0.5, 0.1, 0.97, [2.0, 2.0, 1.0], spread=1.0),  # Spread ratio 2: holds.
    _cell(2.0, 0.1, 0.97, [2.0, 2.0, 2.0], spread=0.6),  # Spread ratio 1.2: does not.
    _cell(0.05, 0.01, 0.48, [4.0, 4.0, 4.0], spread=5.0),  # Baseline untrained: excluded.
  ]
  ours, verdict = judges.fig1bc_location_and_spread({'cells': cells})
  assert verdict == claims.PARTLY
  assert 'Holds in 1 of 2 cells where both arms trained (1 cell excluded' in ours
  assert ours.index('lr 0.5') < ours.index('lr 2')


def test_provenance_says_from_git_whether_a_rule_came_before_or_after_its_results(tmp_path):
  import subprocess

  from bn_repro.reports import provenance

  def git(*args):
    env = {'GIT_AUTHOR_NAME': 't', 'GIT_AUTHOR_EMAIL': 't@t', 'GIT_COMMITTER_NAME': 't'}
    env |= {'GIT_COMMITTER_EMAIL': 't@t', 'PATH': '/usr/bin:/bin'}
    return subprocess.run(
      ['git', *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()

  def commit(files, message):
    for path, text in files.items():
      (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
      (tmp_path / path).write_text(text)
    git('add', '-A')
    git('commit', '-qm', message)
    return git('rev-parse', 'HEAD')

  def claims_file(rules):
    rows = ', '.join(f'Claim({r!r})' for r in rules)
    return f'class Claim:\n  def __init__(self, rule): self.rule = rule\nCLAIMS = ({rows},)\n'

  def summary(run):
    return json.dumps({'commit': run})

  git('init', '-q')
  claims_path = provenance.CLAIMS_FILE
  first = commit({claims_path: claims_file(['old words', 'kept words'])}, 'rules')
  commit({'results/a/summary.json': summary(first), 'results/b/summary.json': summary(first)}, 'x')
  rewritten = commit({claims_path: claims_file(['new words', 'kept words'])}, 'rule rewritten')
  later = commit({'results/b/summary.json': summary(rewritten)}, 'b rerun after the rule')

  class Row:
    def __init__(self, where, rule, summary):
      self.where, self.claim, self.rule, self.summary = where, 'c', rule, f'{summary}/summary.json'

  rows = [
    Row('a', 'new words', 'a'),  # Rewritten after a's results: after.
    Row('b', 'kept words', 'b'),  # Fixed before any result of b: before.
    Row('c', 'new words', 'b'),  # Rewritten after b's first results, before its rerun.
    Row('z', 'unsaid', 'a'),
  ]
  record = provenance.provenance(tmp_path, tmp_path / 'results', rows)
  a, b = record['a | c'], record['b | c']
  assert (a['rule_commit'], a['run_commit'], a['when']) == (rewritten, first, 'after the results')
  assert (b['rule_commit'], b['run_commit'], b['when']) == (first, rewritten, 'before the runs')
  assert record['c | c']['when'] == 'before these runs, after earlier results'
  del later
  assert record['z | c']['when'] == 'not committed yet'


def test_provenance_of_a_docstring_rule_moves_with_its_rule_section_only(tmp_path):
  import subprocess

  from bn_repro.reports import provenance

  def commit(files, message):
    for path, text in files.items():
      (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
      (tmp_path / path).write_text(text)
    env = {'GIT_AUTHOR_NAME': 't', 'GIT_AUTHOR_EMAIL': 't@t', 'GIT_COMMITTER_NAME': 't'}
    env |= {'GIT_COMMITTER_EMAIL': 't@t', 'PATH': '/usr/bin:/bin'}
    for args in (['add', '-A'], ['commit', '-qm', message], ['rev-parse', 'HEAD']):
      out = subprocess.run(['git', *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    return out.stdout.strip()

  def study(design, rule):
    return f'"""Study.\n\n- Design: {design}\n- Rules: {rule}\n"""\n'

  subprocess.run(['git', 'init', '-q'], cwd=tmp_path, check=True)
  claims = 'class Claim:\n  def __init__(self, rule): self.rule = rule\n'
  claims += "CLAIMS = (Claim('study s (its docstring)'),)\n"
  fixed = commit(
    {provenance.CLAIMS_FILE: claims, 'bn_repro/studies/s.py': study('in `a.b`', 'r1')}, 'rule'
  )
  commit({'results/s/summary.json': json.dumps({'commit': fixed})}, 'results')
  commit({'bn_repro/studies/s.py': study('in `a.c`', 'r1')}, 'a module moved')

  class Row:
    where, claim, rule, summary = 'w', 'c', 'study s (its docstring)', 's/summary.json'

  row = provenance.provenance(tmp_path, tmp_path / 'results', [Row()])['w | c']
  assert (row['rule_commit'], row['when']) == (fixed, 'before the runs')
  reworded = commit({'bn_repro/studies/s.py': study('in `a.c`', 'r2')}, 'the rule reworded')
  row = provenance.provenance(tmp_path, tmp_path / 'results', [Row()])['w | c']
  assert (row['rule_commit'], row['when']) == (reworded, 'after the results')
  assert provenance.rule_section(study('d', 'r')) == '- Rules: r'
