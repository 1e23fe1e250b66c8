"""The training state: parameters, BN statistics and optimizer state, and what `init` sees."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from flax.training import train_state
from jax.experimental import multihost_utils

from bn_repro.nn import normalization as norm_lib
from bn_repro.training import optim, seeds


class TrainState(train_state.TrainState):
  """Flax TrainState plus the BN running statistics (`batch_stats` collection)."""

  batch_stats: Any


def create_train_state(
  config: ml_collections.ConfigDict, model: nn.Module, init_batch: jax.Array | np.ndarray
) -> TrainState:
  """Initializes parameters (seeded by `config.seed`), BN statistics and optimizer state.

  `init_batch` `(n, H, W, C)`, preprocessed, is what the model sees at `init` (`init_batch`
  below): only weight normalization's data-dependent initialization depends on its values,
  and it sees any BN layers (mean-only BN after WN) normalize with that batch's statistics,
  as in training (Salimans & Kingma 2016, Sec. 3). With `config.num_seeds` = S > 1, the S
  runs seeded `seed`..`seed + S - 1` are stacked on a leading axis of every array but the
  step (`bn_repro.training.seeds.seed_axes`); a data-dependent init then takes one batch
  per run, `(S, n, H, W, C)`, each run's own (one `(n, H, W, C)` batch, as a template to
  restore checkpoints into, is shared by all).
  """

  data_dependent = norm_lib.get_norm(config.model.norm.kind).needs_data_init

  def init(seed: int | jax.Array, batch: jax.Array | np.ndarray) -> TrainState:
    variables = model.init(
      jax.random.key(seed), batch, train=False, batch_statistics=data_dependent
    )
    return TrainState.create(
      apply_fn=model.apply,
      params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=optim.create_optimizer(config),
    )

  # Run op by op, not jitted: a jitted init rounds some initial values differently (ULPs),
  # and every committed result was trained from these exact values; a conv net's init is
  # slow this way (about a minute for the small BN-Inception on 2 CPU cores).
  if config.num_seeds == 1:
    return init(config.seed, init_batch)
  if data_dependent and np.ndim(init_batch) == 4:  # One (n, H, W, C) batch for every run.
    init_batch = np.broadcast_to(init_batch, (config.num_seeds, *np.shape(init_batch)))
  return seeds.stacked_init(init, config.seed, config.num_seeds, init_batch, data_dependent)


# Examples behind weight normalization's data-dependent initialization: "a minibatch of
# data" of a few hundred examples, as in Salimans & Kingma (2016)'s experiments.
WN_INIT_EXAMPLES = 256


def init_batch(
  config: ml_collections.ConfigDict, inputs: object, preprocess: Callable
) -> np.ndarray:
  """What the model sees at `init`: for weight normalization's data-dependent
  initialization the first WN_INIT_EXAMPLES training examples of each run (process 0's, on
  every process, so the replicated parameters agree; `(S, n, H, W, C)` for S seeds side by
  side, each run's own first examples), else one zero image."""
  if not norm_lib.get_norm(config.model.norm.kind).needs_data_init:
    return np.zeros((1,) + inputs.image_shape, np.float32)
  num_batches = -(-WN_INIT_EXAMPLES // config.batch_size)
  per_seed = [
    np.concatenate(list(inputs.train_batches(num_batches, s)))[:WN_INIT_EXAMPLES]
    for s in range(config.num_seeds)
  ]
  images = per_seed[0] if config.num_seeds == 1 else np.stack(per_seed)
  batch = np.asarray(preprocess(images))
  if jax.process_count() > 1:
    batch = multihost_utils.broadcast_one_to_all(batch)
  return batch
