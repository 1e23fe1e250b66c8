"""Model registry: build a Flax module from `config.model`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import flax.linen as nn
import jax.numpy as jnp

if TYPE_CHECKING:  # ml_collections is absent where only models run (e.g. GPU benchmarks).
  import ml_collections

from bn_repro.models.inception import BNInception
from bn_repro.models.mlp import MLP


def _shared_fields(
  model_config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None
) -> dict[str, object]:
  """Keyword arguments every model takes: outputs, nonlinearity and its normalization."""
  return {
    'num_classes': num_classes,
    'nonlinearity': model_config.nonlinearity,
    'normalization': model_config.normalization,
    'bn_momentum': model_config.bn.momentum,
    'bn_epsilon': model_config.bn.epsilon,
    'bn_group_size': model_config.bn.group_size,
    'bn_fast_variance': model_config.bn.fast_variance,
    'axis_name': axis_name,
  }


def _create_mlp(
  model_config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None
) -> nn.Module:
  return MLP(
    hidden_sizes=tuple(model_config.hidden_sizes),
    init_std=model_config.init_std,
    bn_position=model_config.bn.position,
    pre_bn_bias=model_config.bn.pre_bn_bias,
    bn_stop_gradient=model_config.bn.stop_gradient,
    **_shared_fields(model_config, num_classes, axis_name),
  )


def _create_inception(
  model_config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None
) -> nn.Module:
  return BNInception(
    dropout_rate=model_config.dropout_rate,
    lrn=model_config.lrn,
    stem=model_config.stem,
    pool_proj_4cd=model_config.pool_proj_4cd,
    conv_bias=model_config.conv_bias,
    width=model_config.width,
    dtype=jnp.dtype(model_config.compute_dtype),
    **_shared_fields(model_config, num_classes, axis_name),
  )


MODELS: dict[str, Callable[..., nn.Module]] = {'mlp': _create_mlp, 'inception': _create_inception}
COMPUTE_DTYPES = ('float32', 'bfloat16')  # BN-Inception's `model.compute_dtype`.


def create_model(
  model_config: ml_collections.ConfigDict, num_classes: int, axis_name: str | None = None
) -> nn.Module:
  """Builds the model named `model_config.name` for `num_classes` outputs."""
  if model_config.name not in MODELS:
    raise ValueError(f'Unknown model {model_config.name!r}; expected one of {sorted(MODELS)}.')
  return MODELS[model_config.name](model_config, num_classes, axis_name)
