"""Optimizer and learning-rate schedule from `config.optimizer` and `config.schedule`.

The paper's Sec. 4.2.1 changes are separate factors here so each can be ablated
alone: `lr_multiple` (x5, x30), `weight_decay_factor` (1/5), `decay_speedup` (6x).
"""

import jax
import ml_collections
import optax
from ml_collections import config_dict


def optimizer_config(
  learning_rate: float,
  *,
  lr_multiple: float = 1.0,
  momentum: float = 0.0,
  weight_decay: float = 0.0,
  weight_decay_factor: float = 1.0,
) -> ml_collections.ConfigDict:
  """The `config.optimizer` group: SGD with momentum and L2 weight decay."""
  return ml_collections.ConfigDict(
    {
      'name': 'sgd',
      'learning_rate': learning_rate,
      'lr_multiple': lr_multiple,
      'momentum': momentum,
      'weight_decay': weight_decay,
      'weight_decay_factor': weight_decay_factor,
    }
  )


def schedule_config(
  name: str = 'constant',
  *,
  decay_rate: float = 1.0,
  decay_steps: int = 1,
  decay_speedup: float = 1.0,
) -> ml_collections.ConfigDict:
  """The `config.schedule` group: 'constant' or 'exponential' (staircase) decay."""
  return ml_collections.ConfigDict(
    {
      'name': name,
      'decay_rate': decay_rate,
      'decay_steps': config_dict.FieldReference(decay_steps, field_type=int),
      'decay_speedup': decay_speedup,
    }
  )


SCHEDULES = ('constant', 'exponential')


def peak_learning_rate(optimizer: ml_collections.ConfigDict) -> float:
  return optimizer.learning_rate * optimizer.lr_multiple


def create_learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """lr(step) = peak * decay_rate ** floor(step * decay_speedup / decay_steps), or constant."""
  peak, schedule = peak_learning_rate(config.optimizer), config.schedule
  if schedule.name == 'constant':
    return optax.constant_schedule(peak)
  if schedule.name == 'exponential':
    return optax.exponential_decay(
      peak,
      transition_steps=schedule.decay_steps / schedule.decay_speedup,
      decay_rate=schedule.decay_rate,
      staircase=True,
    )
  raise ValueError(f'Unknown schedule {schedule.name!r}; expected one of {SCHEDULES}.')


def rate_is_state(config: ml_collections.ConfigDict) -> bool:
  """Whether `create_optimizer` holds the learning rate in the optimizer state (a constant
  schedule's), so that it is data of the compiled step rather than one of its constants."""
  return config.schedule.name == 'constant'


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD (with momentum if > 0) plus L2 weight decay on weight matrices and kernels; a
  constant learning rate is held in the optimizer state (`inject_hyperparams`).

  The decay adds lambda * w to the gradient, i.e. lambda/2 * ||w||^2 in the loss,
  with lambda = weight_decay * weight_decay_factor; biases, BN's beta and gamma
  are not decayed.
  """
  optimizer = config.optimizer
  if optimizer.name != 'sgd':
    raise ValueError(f"Unknown optimizer {optimizer.name!r}; expected 'sgd'.")
  decay = optimizer.weight_decay * optimizer.weight_decay_factor
  momentum = optimizer.momentum or None
  if rate_is_state(config):
    # The rate as optimizer state (a traced scalar), not a constant of the compiled step:
    # runs that differ only by their rate (an LR sweep, a study's rates, each with its seeds)
    # share one compiled program. Same arithmetic, same updates bit for bit.
    sgd = optax.inject_hyperparams(optax.sgd, static_args=('momentum',))(
      learning_rate=peak_learning_rate(optimizer), momentum=momentum
    )
  else:
    sgd = optax.sgd(create_learning_rate_schedule(config), momentum=momentum)
  if not decay:
    return sgd
  kernels_only = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
  return optax.chain(optax.add_decayed_weights(decay, mask=kernels_only), sgd)
