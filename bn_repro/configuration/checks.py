"""Checks of config values that the locked ConfigDict cannot express, run before any compute."""

import ml_collections

from bn_repro.data.datasets import STREAMING_DATASETS
from bn_repro.data.ordering import SHUFFLES
from bn_repro.data.transforms import PREPROCESSORS
from bn_repro.models import COMPUTE_DTYPES
from bn_repro.models.mlp import BN_POSITIONS
from bn_repro.models.nonlinearities import NONLINEARITIES
from bn_repro.nn.batch_norm import NOISE_REDRAW_MODES, RUNNING_VARIANCES, STOP_GRADIENT_MODES
from bn_repro.nn.normalization import NORMS
from bn_repro.nn.population_stats import ESTIMATORS
from bn_repro.training.optim import SCHEDULES


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None) -> None:
  """Raises InvalidConfigError naming the first bad value and what is expected.

  Runs twice: at flag-parse time with `num_devices=None`, before JAX starts (the
  device checks then use `config.num_devices`, or the global batch as one device's
  if unset), and when training starts, with the real device count.
  """
  if num_devices is None:
    num_devices = config.num_devices or 1
  _check_run(config, num_devices)
  _check_periods(config)
  _check_batch_norm(config, num_devices)
  _check_evaluation(config, num_devices)
  _check_choices(config)


class InvalidConfigError(ValueError):
  """A config value that cannot run, named with what is expected (a user's mistake)."""


def require(ok: bool, message: str) -> None:
  """Raises InvalidConfigError('Invalid config: MESSAGE') unless `ok`."""
  if not ok:
    raise InvalidConfigError(f'Invalid config: {message}')


def _check_run(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Steps, optimizer and batch."""
  require(config.num_steps > 0, f'num_steps={config.num_steps} must be positive.')
  for field in ('learning_rate', 'lr_multiple'):
    require(
      config.optimizer[field] > 0, f'optimizer.{field}={config.optimizer[field]} must be positive.'
    )
  require(config.optimizer.momentum >= 0, f'optimizer.momentum={config.optimizer.momentum} < 0.')
  require(config.batch_size > 0, f'batch_size={config.batch_size} must be positive.')
  require(num_devices > 0, f'num_devices={num_devices} must be positive.')
  require(
    config.batch_size % num_devices == 0,
    f'batch_size={config.batch_size} is not divisible by the {num_devices} devices.',
  )


def _check_batch_norm(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """BN statistics groups: they divide the per-device batch and hold at least 2 examples."""
  group_size = config.model.norm.get('group_size')  # A BatchNorm field.
  if group_size is not None:
    per_device = config.batch_size // num_devices
    require(
      0 < group_size <= per_device and per_device % group_size == 0,
      f'model.norm.group_size={group_size} must divide the per-device batch of '
      f'{per_device} examples.',
    )
  norm = NORMS.get(config.model.norm.kind)  # An unknown kind is refused below.
  if norm is not None and norm.running_statistics:
    examples = config.batch_size if group_size is None else group_size
    require(
      examples >= 2,
      f'model.norm.group_size={group_size} with batch_size={config.batch_size}: each BN '
      f'statistics group has {examples} example(s); the unbiased variance m/(m-1) of '
      'Algorithm 2 needs at least 2 (m counts the values behind a statistic: the examples '
      'of a group for a dense layer, examples x H x W of the feature map for a convolution). '
      'Use a group size (or batch) of at least 2.',
    )


def _check_evaluation(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Multi-crop, evaluation batch, extra evaluation steps, evaluation subset."""
  crops = config.eval.get('crops', 1)
  require(crops in (1, 144), f"eval.crops={crops}; expected 1 or 144 (the paper's multi-crop).")
  require(
    crops == 1 or config.input.dataset in STREAMING_DATASETS,
    f'eval.crops={crops} needs ImageNet (input.dataset in {STREAMING_DATASETS}); '
    f'{config.input.dataset!r} has no multi-crop evaluation. Set eval.crops=1.',
  )
  examples = config.eval.batch_size // crops
  require(
    config.eval.batch_size % crops == 0 and examples % num_devices == 0 and examples > 0,
    f'eval.batch_size={config.eval.batch_size} counts images per evaluation call, crops '
    f'included: with eval.crops={crops} on {num_devices} device(s) it must be a positive '
    f'multiple of {crops * num_devices} (e.g. {crops * num_devices}).',
  )
  for extra_step in config.eval.extra_steps:
    require(
      0 < extra_step <= config.num_steps and extra_step % config.steps_per_call == 0,
      f'eval.extra_steps={tuple(config.eval.extra_steps)}: {extra_step} must be a multiple of '
      f'steps_per_call={config.steps_per_call} in (0, num_steps={config.num_steps}].',
    )
  num_examples = config.eval.num_examples
  require(
    num_examples is None or (num_examples > 0 and config.input.dataset not in STREAMING_DATASETS),
    f'eval.num_examples={num_examples}: a positive count of test examples to evaluate on, for '
    f'in-memory datasets only ({config.input.dataset!r} given); None evaluates them all.',
  )


def _check_periods(config: ml_collections.ConfigDict) -> None:
  """Checkpoints kept, the log/eval/checkpoint periods as multiples of each other, seeds."""
  require(
    config.keep_checkpoints >= 1,
    f'keep_checkpoints={config.keep_checkpoints} must be at least 1: a resume needs a checkpoint.',
  )
  require(
    config.steps_per_call > 0 and config.log_every % config.steps_per_call == 0,
    f'log_every={config.log_every} must be a multiple of steps_per_call={config.steps_per_call}.',
  )
  for field in ('eval_every', 'checkpoint_every'):
    require(
      config[field] > 0 and config[field] % config.log_every == 0,
      f'{field}={config[field]} must be a positive multiple of log_every={config.log_every}.',
    )
  require(config.num_seeds >= 1, f'num_seeds={config.num_seeds} must be at least 1.')
  require(
    config.num_seeds == 1 or config.input.dataset not in STREAMING_DATASETS,
    f'num_seeds={config.num_seeds} needs an in-memory dataset; {config.input.dataset!r} '
    'is streamed. Run the seeds as separate jobs.',
  )
  subset = config.input.get('train_subset_size')
  require(
    subset is None or (subset > 0 and config.input.dataset not in STREAMING_DATASETS),
    f'input.train_subset_size={subset} needs a positive size and an in-memory dataset; '
    f'{config.input.dataset!r} is streamed.',
  )
  chunk = config.input.get('class_chunk', 2)
  require(
    config.input.shuffle != 'class_chunks'
    or (config.input.dataset not in STREAMING_DATASETS and config.batch_size % chunk == 0),
    f"input.shuffle='class_chunks' needs an in-memory dataset and input.class_chunk={chunk} "
    f'dividing batch_size={config.batch_size}; {config.input.dataset!r}.',
  )


def _check_choices(config: ml_collections.ConfigDict) -> None:
  """Every field with a fixed set of choices holds one of them."""
  for field, value, choices in (
    ('model.nonlinearity', config.model.nonlinearity, tuple(NONLINEARITIES)),
    ('input.preprocess', config.input.preprocess, tuple(PREPROCESSORS)),
    ('input.shuffle', config.input.shuffle, SHUFFLES),
    ('schedule.name', config.schedule.name, SCHEDULES),
    ('population_stats.estimator', config.population_stats.estimator, ESTIMATORS),
  ):
    require(value in choices, f'{field}={value!r}; expected one of {choices}.')
  kind = config.model.norm.kind
  require(kind in NORMS, f'model.norm.kind={kind!r}; expected one of {tuple(NORMS)}.')
  require(
    config.population_stats.num_batches >= 0,
    f'population_stats.num_batches={config.population_stats.num_batches} must be >= 0.',
  )
  if 'compute_dtype' in config.model:
    require(
      config.model.compute_dtype in COMPUTE_DTYPES,
      f'model.compute_dtype={config.model.compute_dtype!r}; expected one of {COMPUTE_DTYPES}.',
    )
  if 'bn_position' in config.model:  # The MLP's normalization-study fields.
    position = config.model.bn_position
    require(
      position in BN_POSITIONS, f'model.bn_position={position!r}; expected one of {BN_POSITIONS}.'
    )
    on_input = tuple(kind for kind, norm in NORMS.items() if norm.may_sit_on_input)
    require(
      position == 'preactivation' or kind in on_input,
      f"model.bn_position='input' needs a model.norm.kind in {on_input}, not {kind!r}.",
    )
  for field, choices in (
    ('noise_redraw', NOISE_REDRAW_MODES),
    ('stop_gradient', STOP_GRADIENT_MODES),
    ('running_variance', RUNNING_VARIANCES),
  ):
    value = config.model.norm.get(field, choices[0])  # BatchNorm fields.
    require(value in choices, f'model.norm.{field}={value!r}; expected one of {choices}.')
