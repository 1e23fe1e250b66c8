"""Every measured number a README states is in a summary file a command wrote.

The rule, checked on README.md and every README under results/: a number written with at
least three decimals (0.9728, 0.100) or in scientific notation with a decimal mantissa
(4.11e-06) must appear in one of the summary files under results/ (summary.md/json,
table.md, lr_sweep.md/json), as written there or as a JSON value rounded to the README's
precision. Numbers that are not measurements (constants of a formula) are listed in
CONSTANTS with what they are. Rounded statements of magnitude ('3e-8', '0.04-0.22 points')
are not covered by the rule.
"""

import json
import pathlib
import re

import pytest

from bn_repro.configuration.files import REPO_ROOT

NUMBER = re.compile(r'(?<![\w.])(\d+\.\d{3,}(?:e[-+]?\d+)?|\d+\.\d+e[-+]?\d+)(?![\w])')
CONSTANTS = {
  '1.017': 'the unbiased-variance factor m/(m-1) for m = 60',
  '1.7159': "LeCun's scaled tanh, 1.7159 tanh(2x/3)",
}
READMES = [REPO_ROOT / 'README.md', *sorted((REPO_ROOT / 'results').glob('**/README.md'))]


def _summary_files() -> list[pathlib.Path]:
  results = REPO_ROOT / 'results'
  patterns = ('**/summary.md', '**/summary.json', '**/table.md', '**/lr_sweep.*')
  return sorted({path for pattern in patterns for path in results.glob(pattern)})


def _json_floats(tree: object) -> list[float]:
  if isinstance(tree, float):
    return [tree]
  if isinstance(tree, dict):
    tree = list(tree.values())
  if isinstance(tree, list):
    return [value for item in tree for value in _json_floats(item)]
  return []


def _written_forms(value: float) -> set[str]:
  forms = {f'{value:.{digits}f}' for digits in range(3, 7)}
  return forms | {f'{value:.{digits}e}' for digits in range(1, 4)}


@pytest.fixture(scope='module')
def summary_numbers() -> set[str]:
  numbers = set()
  for path in _summary_files():
    text = path.read_text()
    numbers.update(NUMBER.findall(text))
    if path.suffix == '.json':
      for value in _json_floats(json.loads(text)):
        numbers.update(_written_forms(value))
  return numbers


@pytest.mark.parametrize('readme', READMES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_readme_numbers_are_in_summary_files(readme, summary_numbers):
  missing = [
    f'line {i}: {number}'
    for i, line in enumerate(readme.read_text().splitlines(), 1)
    for number in NUMBER.findall(line)
    if number not in summary_numbers and number not in CONSTANTS
  ]
  assert not missing, f'{readme.name} states numbers no summary file holds: {missing}'


def test_the_rule_catches_a_number_without_a_source(summary_numbers):
  assert NUMBER.findall('peaks at 0.964 (b below 4.11e-06)') == ['0.964', '4.11e-06']
  assert '98.76543' not in summary_numbers  # A number no command wrote.


def test_the_quick_starts_wall_times_are_its_summarys():
  """The README's time for `scripts/reproduce_mnist.sh` is the committed summary's run."""
  summary = json.loads((REPO_ROOT / 'results/mnist/summary.json').read_text())
  readme = ' '.join((REPO_ROOT / 'README.md').read_text().split())
  stated = re.search(
    r'reproduce_mnist\.sh` at commit (\w+) .*?: (\d+) s for the whole command.*?'
    r'trained for (\d+) s summed',
    readme,
  )
  assert stated is not None, 'README: the MNIST timing sentence is missing'
  assert summary['commit'].startswith(stated[1])
  assert int(stated[2]) == round(summary['end_to_end_wall_time_s'])
  assert int(stated[3]) == round(summary['wall_time_s'])


def test_the_studies_tables_wall_times_are_their_summaries():
  """results/studies/README.md's wall-time column holds each study's summary.json time."""
  readme = (REPO_ROOT / 'results/studies/README.md').read_text()
  rows = re.findall(r'^\| \d+ \| \[`(\w+)`\]\(\w+/table\.md\) \| ([^|]*) \|', readme, re.M)
  assert len(rows) >= 16
  for name, cell in rows:
    summary = json.loads((REPO_ROOT / 'results/studies' / name / 'summary.json').read_text())
    minutes = f'{summary["wall_time_s"] / 60:.1f}'
    assert minutes in re.findall(r'\d+\.\d', cell), (name, cell, minutes)


def test_the_figure_1_tables_steps_to_97_are_its_summarys():
  """README's Figure 1 table: steps to 97% per setting and arm, from results/mnist/summary.json
  (whole numbers, which the three-decimal rule does not reach)."""
  settings = json.loads((REPO_ROOT / 'results/mnist/summary.json').read_text())['settings']
  readme = (REPO_ROOT / 'README.md').read_text()
  row = re.search(r'^\| steps to 97% \(mean curve\) \|(.*)\|$', readme, re.M)
  assert row is not None, 'README: the steps-to-97% row is missing'
  stated = [cell.strip().replace(',', '') for cell in row[1].split('|')]
  expected = [
    str(settings[setting]['arms'][arm]['steps_to_accuracy']['0.97'])
    for setting in ('lr2', 'lr0.5')
    for arm in ('baseline', 'bn')
  ]
  assert stated == expected
