"""The normalization choices every model offers, and the layers each choice builds.

- 'none': y = g(W u + b), the paper's baselines.
- 'batch': y = g(BN(W u)), Algorithm 1 on the pre-activation (Sec. 3.2).
- 'mean_only_batch': y = g(gamma (W u - E[W u]) + beta): BN without the division
  by the standard deviation (the paper's Sec. 2 example normalizes this way).
- 'weight': weight normalization, y = g(W u + b) with w = s v/||v|| per output
  unit (Salimans & Kingma 2016, eq. 2) and data-dependent initialization.
- 'weight_mean_only_batch': WN followed by mean-only BN (Salimans & Kingma 2016,
  Sec. 3): WN supplies the scale s, mean-only BN the centring and beta.
"""

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp

from bn_repro.models import xla_cpu
from bn_repro.models.batch_norm import BatchNorm
from bn_repro.models.weight_norm import WeightNormConv, WeightNormDense

NORMALIZATIONS = ('none', 'batch', 'mean_only_batch', 'weight', 'weight_mean_only_batch')


def check_normalization(normalization: str) -> None:
  if normalization not in NORMALIZATIONS:
    raise ValueError(f'Unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}.')


def uses_weight_norm(normalization: str) -> bool:
  """Whether the linear layers are weight-normalized (and need a data batch at `init`)."""
  return normalization in ('weight', 'weight_mean_only_batch')


def uses_batch_norm(normalization: str) -> bool:
  return normalization in ('batch', 'mean_only_batch', 'weight_mean_only_batch')


def linear_layer(
  normalization: str,
  features: int,
  *,
  use_bias: bool,
  kernel_init: nn.initializers.Initializer,
  kernel_size: tuple[int, int] | None = None,
  strides: int = 1,
  dtype: jnp.dtype | None = None,
  name: str | None = None,
) -> nn.Module:
  """A dense layer (`kernel_size=None`) or SAME-padded NHWC convolution for `normalization`.

  Weight-normalized layers draw their own direction v (N(0, 0.05^2)) and ignore
  `kernel_init`; they always learn s, and b if `use_bias`, and compute in float32.
  `dtype` is the computation dtype of the plain layers (None: the input's).
  """
  if uses_weight_norm(normalization):
    if kernel_size is None:
      return WeightNormDense(features, use_bias=use_bias, name=name)
    return WeightNormConv(
      features, kernel_size=kernel_size, strides=strides, use_bias=use_bias, name=name
    )
  if kernel_size is None:
    return nn.Dense(features, use_bias=use_bias, kernel_init=kernel_init, dtype=dtype, name=name)
  return nn.Conv(
    features,
    kernel_size,
    strides=strides,
    padding='SAME',
    use_bias=use_bias,
    kernel_init=kernel_init,
    dtype=dtype,
    conv_general_dilated=xla_cpu.conv_general_dilated,  # 1x1 convolutions as matmuls.
    name=name,
  )


def batch_norm_factory(
  normalization: str,
  bn: Mapping[str, object],
  *,
  batch_statistics: bool,
  axis_name: str | None,
) -> functools.partial | None:
  """`BatchNorm` bound to `normalization`'s kind and the fields `bn`, or None without BN.

  `bn`: `BatchNorm` fields as the config sets them (`config.model.bn`: momentum, epsilon,
  group_size, ...). `batch_statistics`: normalize with the mini-batch statistics and update
  the running averages (Algorithm 1), else with the stored statistics (Algorithm 2,
  step 11). Mean-only BN under WN learns no gamma (WN's scale s plays that role).
  """
  if not uses_batch_norm(normalization):
    return None
  return functools.partial(
    BatchNorm,
    use_running_average=not batch_statistics,
    mean_only=normalization != 'batch',
    use_scale=normalization != 'weight_mean_only_batch',
    axis_name=axis_name,
    **bn,
  )
