"""The package's shape: the README's layout table matches the tree, no import loops, imports
that run only downward (ground floor: records, distributed, heartbeat; then the layers, nn), and
functions and modules stay small enough to hold in mind (80 and 400 lines)."""

import ast
import pathlib
import re

from bn_repro.configuration.files import REPO_ROOT

PACKAGE = REPO_ROOT / 'bn_repro'
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def _modules() -> dict[str, pathlib.Path]:
  """Dotted name -> file of every module and package in bn_repro."""
  out = {}
  for path in PACKAGE.rglob('*.py'):
    parts = path.relative_to(REPO_ROOT).with_suffix('').parts
    out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return out


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
  """The bn_repro modules `path` imports anywhere in it (top level or inside functions)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('bn_repro'):
      for alias in node.names:
        name = f'{node.module}.{alias.name}'
        found.add(name if name in modules else node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith('bn_repro'))
  return found & set(modules)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state: dict[str, int] = {}
  path: list[str] = []

  def visit(module: str) -> list[str] | None:
    state[module] = 1
    path.append(module)
    for dependency in sorted(graph[module]):
      if state.get(dependency) == 1:
        return path[path.index(dependency) :] + [dependency]
      if dependency not in state and (found := visit(dependency)):
        return found
    path.pop()
    state[module] = 2
    return None

  for module in sorted(graph):
    if module not in state and (found := visit(module)):
      return found
  return None


def test_cycle_finder_finds_a_loop():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_loops_in_bn_repro():
  modules = _modules()
  graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
  assert _cycle(graph) is None


# Floors, lowest first: a module imports only from its own floor or the floors below it.
FLOORS = (
  ('bn_repro.records', 'bn_repro.distributed', 'bn_repro.heartbeat'),
  ('bn_repro.nn',),
  ('bn_repro.models', 'bn_repro.data', 'bn_repro.analysis'),
  ('bn_repro.training', 'bn_repro.configuration'),
  ('bn_repro.reports', 'bn_repro.studies', 'bn_repro.ensemble', 'bn_repro.main'),
)


def _floor(module: str) -> int | None:
  for level, prefixes in enumerate(FLOORS):
    if any(module == p or module.startswith(p + '.') for p in prefixes):
      return level
  return None


def test_imports_run_downward():
  modules = _modules()
  upward = [
    f'{name} -> {dependency}'
    for name, path in modules.items()
    if (level := _floor(name)) is not None
    for dependency in _imports(path, modules)
    if (_floor(dependency) or 0) > level
  ]
  assert not upward, f'imports that run upward: {upward}'
  assert all(_floor(name) is not None for name in modules if name != 'bn_repro'), [
    name for name in modules if name != 'bn_repro' and _floor(name) is None
  ]


def test_functions_and_modules_stay_small():
  too_long = []
  for path in [*PACKAGE.rglob('*.py'), *(REPO_ROOT / 'configs').glob('*.py')]:
    text = path.read_text()
    if len(text.splitlines()) > MAX_MODULE_LINES:
      too_long.append(f'{path}: {len(text.splitlines())} lines')
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          too_long.append(f'{path}:{node.lineno} {node.name}: {lines} lines')
  assert not too_long


def test_readme_layout_table_matches_the_tree():
  """Every module is named in the README's layout table, except the studies' own modules:
  their list is the study registry (`bn_repro.studies.STUDIES`), which the studies README
  follows (test_every_study_is_one_module_and_one_record_the_readers_agree_on)."""
  from bn_repro.studies import STUDIES

  readme = (REPO_ROOT / 'README.md').read_text()
  table = readme[readme.index('## Layout') :]
  table = table[: table.index('\n## ')] if '\n## ' in table else table
  rows = [line for line in table.splitlines() if line.startswith('| `bn_repro/')]
  listed = {}
  for row in rows:
    path, description = re.match(r'\| `([^`]+)` \| (.*) \|$', row).groups()
    assert (REPO_ROOT / path).exists(), f'README layout names {path}, which does not exist'
    listed[path] = description
  for path in sorted(PACKAGE.rglob('*.py')):
    if path.name == '__init__.py':
      continue
    relative = path.relative_to(REPO_ROOT).as_posix()
    package = path.parent.relative_to(REPO_ROOT).as_posix() + '/'
    named = relative in listed or (package in listed and f'`{path.name}`' in listed[package])
    named = named or (package == 'bn_repro/studies/' and path.stem in STUDIES)
    assert named, f'{relative} is not in the README layout table'


def test_every_study_is_one_module_and_one_record_the_readers_agree_on():
  """The study registry is the one list: each record has its module, a row of the studies
  README with its number, and its stage runs it (reproduce_all.sh and the report's stage
  table read the stage's studies from the registry)."""
  from bn_repro.reports.stages import STAGES
  from bn_repro.studies import STUDIES, stage_studies

  readme = (REPO_ROOT / 'results' / 'studies' / 'README.md').read_text()
  for name, study in STUDIES.items():
    assert (PACKAGE / 'studies' / f'{name}.py').exists(), name
    assert re.search(rf'^\| {study.number} \| \[`{name}`\]', readme, re.M), name
    assert f'studies/{name}/summary.json' in STAGES[study.stage][1], name
    assert name in stage_studies(study.stage)
  script = (REPO_ROOT / 'scripts' / 'reproduce_all.sh').read_text()
  assert not [name for name in STUDIES if name in script.split('run_stage()')[1]]


def _readme_paths() -> list[tuple[str, str]]:
  """(README, path) for every repository path the READMEs name (`configs/…`, `scripts/…`,
  `results/…`, ...); brace lists are expanded and upper-case placeholders (`NAME`) match
  any name. Run outputs (`runs/…`) are not in the repository and are left out."""
  readmes = [REPO_ROOT / 'README.md', REPO_ROOT / 'benchmarks' / 'README.md']
  readmes += sorted((REPO_ROOT / 'results').glob('**/README.md'))
  pattern = re.compile(
    r'(?<![\w/.-])((?:configs|bn_repro|scripts|tests|results|benchmarks|\.ci)/[\w./{},*-]*'
    r'|requirements[\w-]*\.txt)'
  )
  found = set()
  for readme in readmes:
    for path in pattern.findall(readme.read_text()):
      for expanded in _expand_braces(path.rstrip('.,')):
        found.add((str(readme.relative_to(REPO_ROOT)), re.sub(r'\b[A-Z]{2,}\b', '*', expanded)))
  return sorted(found)


def _expand_braces(text: str) -> list[str]:
  match = re.search(r'\{([^{}]*)\}', text)
  if match is None:
    return [text]
  return [
    expanded
    for choice in match[1].split(',')
    for expanded in _expand_braces(text[: match.start()] + choice + text[match.end() :])
  ]


def test_every_path_the_readmes_name_exists():
  paths = _readme_paths()
  assert len(paths) > 50  # The pattern finds them: the READMEs name dozens.
  missing = [(readme, path) for readme, path in paths if not list(REPO_ROOT.glob(path))]
  assert not missing, f'paths the READMEs name that do not exist: {missing}'
