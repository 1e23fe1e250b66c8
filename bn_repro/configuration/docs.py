"""`python -m bn_repro.main --list`: the config files, their variants, and every field
of one config with its value and the one-line comment written beside it in the source.

Field docs are read from where the fields are set (a comment at the end of the line, or
the comment lines just above it), so they cannot drift from a second copy.
"""

import ast
import io
import pathlib
import tokenize

import ml_collections

from bn_repro.configuration.files import REPO_ROOT, load_config_module

CONFIG_DIR = REPO_ROOT / 'configs'


def describe_config_files() -> str:
  """Each config file's first docstring line, variants and options."""
  lines = ['Config files (--config=FILE:VARIANT[,OPTION]):']
  for path in sorted(CONFIG_DIR.glob('*.py')):
    module = load_config_module(str(path))
    if not hasattr(module, 'get_config'):
      continue
    summary = (module.__doc__ or '').strip().splitlines()[0]
    lines += [
      f'  configs/{path.name}: {summary}',
      f'    variants: {", ".join(module.VARIANTS)}',
      f'    options:  {", ".join(module.OPTIONS)}',
    ]
  lines.append('Fields of one: python -m bn_repro.main --list --config=configs/FILE.py:VARIANT')
  return '\n'.join(lines)


def describe_fields(config: ml_collections.ConfigDict, config_path: pathlib.Path) -> str:
  """`--config.FIELD=VALUE  # doc` for every leaf field of `config`."""
  docs = {}
  for source in (CONFIG_DIR / 'common.py', config_path):
    docs |= field_docs(source)
  lines = []
  for name, value in _leaves(config):
    doc = docs.get(name, '')
    lines.append(f'--config.{name}={value!r}' + (f'  # {doc}' if doc else ''))
  return '\n'.join(lines)


def field_docs(path: pathlib.Path) -> dict[str, str]:
  """{'a.b': comment} for each `config.a.b = ...` in `path` that has a comment beside or
  just above it (the above-comment's lines joined); the fields of a block builder of
  configs/common.py get the block's place in the config as prefix (`_block_prefixes`)."""
  blocks = _block_prefixes()
  text = path.read_text()
  tokens = [
    t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT
  ]
  trailing, whole_line = {}, {}
  for t in tokens:
    (whole_line if t.line.strip() == t.string else trailing)[t.start[0]] = t.string[1:].strip()
  docs = {}
  for function in ast.walk(ast.parse(text)):
    if not isinstance(function, ast.FunctionDef):
      continue
    prefix = blocks.get(function.name, '')
    for node in ast.walk(function):
      if not isinstance(node, ast.Assign) or len(node.targets) != 1:
        continue
      name = _config_attribute(node.targets[0])
      if name is None:
        continue
      doc = trailing.get(node.end_lineno)
      if doc is None:
        above, line = [], node.lineno - 1
        while line in whole_line:
          above.insert(0, whole_line[line])
          line -= 1
        doc = ' '.join(above)
      if doc:
        docs[prefix + name] = doc
  return docs


def _block_prefixes() -> dict[str, str]:
  """{'input_config': 'input.', ...}: where the config files mount each block built by
  configs/common.py (`config.input = common.input_config(...)`)."""
  prefixes = {}
  for path in CONFIG_DIR.glob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
        continue
      call, name = node.value, _config_attribute(node.targets[0])
      if (
        name is not None
        and isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == 'common'
      ):
        prefixes[call.func.attr] = f'{name}.'
  return prefixes


def _config_attribute(target: ast.expr) -> str | None:
  """'a.b' for the target `config.a.b`, else None."""
  parts = []
  while isinstance(target, ast.Attribute):
    parts.insert(0, target.attr)
    target = target.value
  if isinstance(target, ast.Name) and target.id == 'config' and parts:
    return '.'.join(parts)
  return None


def _leaves(config: ml_collections.ConfigDict, prefix: str = '') -> list[tuple[str, object]]:
  out = []
  for key in sorted(config.keys()):
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      out += _leaves(value, f'{prefix}{key}.')
    else:
      out.append((prefix + key, value))
  return out
