"""Loading experiment configs from `configs/FILE.py:ARG` specs, as `--config` does."""

import copy
import importlib.util
import pathlib
import types

import ml_collections

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_config_module(path_text: str) -> types.ModuleType:
  """Imports the config file at `path_text` (relative: to the working dir, else the repo)."""
  path = pathlib.Path(path_text)
  if not path.is_absolute() and not path.exists():
    path = REPO_ROOT / path
  if not path.is_file():
    raise FileNotFoundError(f'Config file {path_text!r} not found (looked in {path.parent}).')
  module_spec = importlib.util.spec_from_file_location(f'bn_repro_config_{path.stem}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Returns `get_config(ARG)` of the config file in `spec` = 'PATH[:ARG]'.

  A relative PATH is taken from the working directory if it exists there, else
  from the repository root, so scripts work from any directory.
  """
  path_text, _, arg = spec.partition(':')
  module = load_config_module(path_text)
  return module.get_config(arg) if arg else module.get_config()


def override(config: ml_collections.ConfigDict, **fields: object) -> ml_collections.ConfigDict:
  """A copy of the locked `config` with dotted `fields` (e.g. `optimizer__learning_rate`) set.

  Double underscores stand for dots; unknown fields raise, as on the command line. The copy
  keeps the config's linked fields (a field defined as another's reference, such as
  `scan_unroll` following `steps_per_call`, follows it here as on the command line).
  """
  config = copy.deepcopy(config)
  for name, value in fields.items():
    *parents, leaf = name.split('__')
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise KeyError(
        f'Unknown config field {name.replace("__", ".")!r}; valid fields here: '
        f'{sorted(node.keys())}.'
      )
    node[leaf] = value
  config.lock()
  return config


def config_of_run(spec: str, saved: dict) -> ml_collections.ConfigDict:
  """`spec`'s config with every field set as `saved` (a run's config.json) holds it: the
  config a finished run trained with, to rebuild its model and restore its checkpoints.

  Raises:
    KeyError: `saved` holds a field `spec`'s config does not have.
  """
  config = load_config(spec)
  fields = {}

  def collect(node: ml_collections.ConfigDict, values: dict, prefix: str) -> None:
    for key, value in values.items():
      if key not in node:
        raise KeyError(f'{spec} has no field {prefix.replace("__", ".")}{key}.')
      current = node[key]
      if isinstance(current, ml_collections.ConfigDict):
        collect(current, value, f'{prefix}{key}__')
      elif (tuple(value) if isinstance(current, tuple) else value) != current:
        fields[f'{prefix}{key}'] = tuple(value) if isinstance(current, tuple) else value

  collect(config, saved, '')
  return override(config, **fields)
