"""Model registry: name -> Flax module class, built from `config.model`.

Every field of `config.model` but `name` is a field of the model class of that name, and
`config.model.norm` is the normalization: its `kind` (a key of
`bn_repro.nn.normalization.NORMS`) and its layer's fields, which the model hands to
`make_norm` untouched: a new option of a normalization layer is that layer's field and its
default in the config, nothing in between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
from flax.core import FrozenDict

if TYPE_CHECKING:  # ml_collections is absent where only models run (e.g. GPU benchmarks).
  import ml_collections

from bn_repro.models.inception import BNInception
from bn_repro.models.mlp import MLP

MODELS: dict[str, type[nn.Module]] = {'mlp': MLP, 'inception': BNInception}
COMPUTE_DTYPES = ('float32', 'bfloat16')  # BN-Inception's `model.compute_dtype`.


def create_model(
  model_config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None = None
) -> nn.Module:
  """Builds `MODELS[model_config.name]` from the other fields of `model_config`."""
  if model_config.name not in MODELS:
    raise ValueError(f'Unknown model {model_config.name!r}; expected one of {sorted(MODELS)}.')
  fields = model_config.to_dict()
  del fields['name']
  fields['norm'] = FrozenDict(fields['norm'])
  return MODELS[model_config.name](num_classes=num_classes, axis_name=axis_name, **fields)
