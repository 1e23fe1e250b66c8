r"""When each claim's rule was fixed, read from git, for REPORT.md's provenance column.

  python -m bn_repro.reports.provenance results   # writes results/rule_provenance.json

For each row of `claims.CLAIMS` with a summary file: the commit from which
`bn_repro/reports/claims.py` has held the row's rule in its present words (`rule_commit`;
for a rule that is a study's docstring, the later of that and the docstring's rule section,
from its first line opening '- Rule' to its end: a module renamed in the design's prose
does not move it), the commit the summary's numbers were produced at (`run_commit`, the
summary's own `commit`), the oldest commit that added a summary file of the same claim
(`first_results_commit`: a claim read on two summaries, or on a copy of an earlier
design's, has one history), and
`when`:
- 'before the runs': the rule was committed before the numbers' code (an ancestor of it)
  and before the first results of the claim existed;
- 'before these runs, after earlier results': before the numbers' code, but results of the
  claim (from an earlier design or version) existed when the rule was written;
- 'after the results': the numbers were produced before the rule was committed.
The report reads the committed JSON (a shallow clone has no history to read).
"""

import ast
import json
import pathlib
import subprocess
import sys
from collections.abc import Callable, Sequence

CLAIMS_FILE = 'bn_repro/reports/claims.py'
PROVENANCE_FILE = 'rule_provenance.json'


def _git(repo: pathlib.Path, *args: str) -> str:
  return subprocess.run(
    ['git', *args], cwd=repo, capture_output=True, text=True, check=True
  ).stdout.strip()


def _file_at(repo: pathlib.Path, commit: str, path: str) -> str | None:
  try:
    return _git(repo, 'show', f'{commit}:{path}')
  except subprocess.CalledProcessError:  # The file did not exist at that commit.
    return None


def _rules(source: str | None) -> dict[str, bool]:
  """{rule: True} for every rule of a version of claims.py (its CLAIMS, executed in
  isolation): a rule is known by its words, whichever row holds it."""
  if source is None:
    return {}
  namespace: dict[str, object] = {'__name__': 'claims_of_a_commit'}
  exec(compile(source, CLAIMS_FILE, 'exec'), namespace)
  return {c.rule: True for c in namespace['CLAIMS']}


def rule_section(source: str | None) -> str | None:
  """A study module's rules: its docstring from the first line opening '- Rule' to the end
  (the whole docstring where no line does)."""
  if source is None:
    return None
  lines = (ast.get_docstring(ast.parse(source)) or '').splitlines()
  start = next((i for i, line in enumerate(lines) if line.startswith('- Rule')), 0)
  return '\n'.join(lines[start:])


def row_key(where: str, claim: str) -> str:
  return f'{where} | {claim}'


def unchanged_since(
  repo: pathlib.Path, path: str, extract: Callable[[str | None], dict[str, object]]
) -> dict[str, str]:
  """{key: the oldest commit from which `extract(path's text)[key]` has been as it is now},
  over the commits that touched `path`."""
  history = _git(repo, 'log', '--format=%H', '--', path).split()  # Newest first.
  current = extract(_file_at(repo, history[0], path))
  since = dict.fromkeys(current, history[0])
  still = set(current)
  for commit in history[1:]:
    older = extract(_file_at(repo, commit, path))
    for key in list(still):
      if older.get(key) == current[key]:
        since[key] = commit
      else:
        still.discard(key)
  return since


def _newer(repo: pathlib.Path, a: str, b: str) -> str:
  return b if _is_ancestor(repo, a, b) else a


def _older(repo: pathlib.Path, a: str, b: str) -> str:
  return a if _is_ancestor(repo, a, b) else b


def _is_ancestor(repo: pathlib.Path, older: str, newer: str) -> bool:
  return (
    subprocess.run(
      ['git', 'merge-base', '--is-ancestor', older, newer], cwd=repo, capture_output=True
    ).returncode
    == 0
  )


def provenance(
  repo: pathlib.Path, results: pathlib.Path, claims: Sequence[object] | None = None
) -> dict[str, dict[str, str | None]]:
  """{row key: {'rule_commit', 'run_commit', 'first_results_commit', 'when'}} for every
  claim with a summary file (module docstring); `claims` defaults to `claims.CLAIMS`."""
  if claims is None:
    from bn_repro.reports import claims as claims_module

    claims = claims_module.CLAIMS
  fixed = unchanged_since(repo, CLAIMS_FILE, _rules)
  first_results = {}  # Claim -> its oldest results, over every row (and summary) of it.
  for claim in claims:
    if claim.summary is not None and (added := _first_added(repo, results / claim.summary)):
      known = first_results.get(claim.claim)
      first_results[claim.claim] = added if known is None else _older(repo, known, added)
  return {
    row_key(claim.where, claim.claim): _row(
      repo, results, claim, fixed.get(claim.rule), first_results.get(claim.claim)
    )
    for claim in claims
    if claim.summary is not None
  }


def _first_added(repo: pathlib.Path, summary: pathlib.Path) -> str | None:
  path = str(summary.absolute().relative_to(repo.absolute()))
  added = _git(repo, 'log', '--diff-filter=A', '--format=%H', '--', path).split()
  return added[-1] if added else None


def _row(
  repo: pathlib.Path, results: pathlib.Path, claim: object, rule: str | None, first: str | None
) -> dict[str, str | None]:
  summary = results / claim.summary
  run = json.loads(summary.read_text()).get('commit') if summary.exists() else None
  run = run.split()[0].removesuffix('-dirty') if run and run != 'unknown' else None
  if rule and 'its docstring' in claim.rule:  # The rule's words are a study's docstring.
    module = f'bn_repro/studies/{pathlib.Path(claim.summary).parent.name}.py'
    rule = _newer(
      repo, rule, unchanged_since(repo, module, lambda s: {'doc': rule_section(s)})['doc']
    )
  if rule is None:
    when = 'not committed yet'
  elif run and run != rule and _is_ancestor(repo, run, rule):
    when = 'after the results'
  elif first and first != rule and _is_ancestor(repo, first, rule):
    when = 'before these runs, after earlier results'
  else:
    when = 'before the runs'
  return {'rule_commit': rule, 'run_commit': run, 'first_results_commit': first, 'when': when}


def main(argv: list[str]) -> None:
  results = pathlib.Path(argv[1] if len(argv) > 1 else 'results')
  repo = pathlib.Path(_git(results, 'rev-parse', '--show-toplevel'))
  record = provenance(repo, results)
  (results / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + '\n')
  for key, row in record.items():
    print(f'{(row["rule_commit"] or "-")[:7]} {row["when"]}: {key}')


if __name__ == '__main__':
  main(sys.argv)
