r"""Images per second of a BN-Inception training step at 224x224 (batch 32, one BN group).

  .venv/bin/python -m benchmarks.inception_step [--batch_size=32] [--steps=5]

Times the full-size network of configs/inception.py (bn_x5, and the no-BN `inception`
arm in the same process for BN's overhead) on SYNTHETIC uint8 images (timing only),
two unrolled steps per call (on XLA:CPU one step per call runs several times slower; see
benchmarks/README.md), on the default device. Compilation is excluded.
"""

import jax
from absl import app, flags

from benchmarks.timing import time_training_steps
from bn_repro.config_files import load_config, override

_BATCH = flags.DEFINE_integer('batch_size', 32, 'Examples per step (one BN group).')
_STEPS = flags.DEFINE_integer('steps', 4, 'Timed steps per variant (in calls of 2).')
_SIZE = flags.DEFINE_integer('image_size', 224, 'Image side in pixels.')


def time_variant(variant: str) -> tuple[float, int]:
  """Returns (seconds per step, parameters) of a training step of `variant`."""
  config = override(
    load_config(f'configs/inception.py:{variant}'),
    batch_size=_BATCH.value,
    model__bn__group_size=_BATCH.value,
    steps_per_call=2,
    input__image_size=_SIZE.value,
  )
  shape = (_SIZE.value, _SIZE.value, 3)
  _, seconds, num_params = time_training_steps(
    config, shape, 1000, 2, calls=max(1, _STEPS.value // 2), scan_unroll=True
  )
  return seconds, num_params


def main(argv: list[str]) -> None:
  del argv
  device = jax.devices()[0]
  print(
    f'device: {device.device_kind} ({device.platform}); batch {_BATCH.value}, '
    f'{_SIZE.value}x{_SIZE.value}, synthetic images'
  )
  print('| variant | parameters | ms/step | images/s |')
  print('|---|---|---|---|')
  seconds = {}
  for variant in ('bn_x5', 'inception'):
    seconds[variant], num_params = time_variant(variant)
    print(
      f'| {variant} | {num_params:,} | {seconds[variant] * 1e3:.0f} | '
      f'{_BATCH.value / seconds[variant]:.1f} |'
    )
  print(f'BN step / no-BN step: {seconds["bn_x5"] / seconds["inception"]:.2f}')


if __name__ == '__main__':
  app.run(main)
