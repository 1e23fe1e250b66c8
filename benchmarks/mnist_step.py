r"""Microseconds per MNIST training step (batch 60) and the fraction of the matmul roofline.

  .venv/bin/python -m benchmarks.mnist_step [--steps_per_call=500] [--repeats=5]

Times bn_repro's fused training loop (`lax.scan` of `--steps_per_call` steps per
host call, as in training) for both arms of configs/mnist.py, on SYNTHETIC
uint8 images (timing only; no accuracy is measured). The roofline fraction is
the step's matmul FLOPs divided by its time, over this machine's float32 matmul
rate measured in the same process (best of several square matmuls).
"""

import jax
from absl import app, flags

from benchmarks.roofline import matmul_flops, measure_matmul_peak
from benchmarks.timing import time_training_steps
from bn_repro.configuration.files import load_config

_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 500, 'Steps fused per host call.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per arm (the best is reported).')
_UNROLL = flags.DEFINE_integer('scan_unroll', 1, 'lax.scan unroll factor of the fused steps.')


def time_arm(variant: str, steps_per_call: int, repeats: int) -> tuple[float, int]:
  """Returns (best seconds per step, matmul FLOPs per step)."""
  config = load_config(f'configs/mnist.py:{variant}')
  _, seconds, _ = time_training_steps(
    config,
    (28, 28, 1),
    10,
    steps_per_call,
    calls=1,
    scan_unroll=_UNROLL.value,
    repeats=repeats,
  )
  flops = matmul_flops(784, tuple(config.model.hidden_sizes), 10, config.batch_size)
  return seconds, flops


def main(argv: list[str]) -> None:
  del argv
  peak = measure_matmul_peak()
  print(
    f'device: {jax.devices()[0].device_kind}; float32 matmul peak measured: '
    f'{peak / 1e9:.1f} GFLOP/s'
  )
  print('| arm | us/step | matmul MFLOP/step | achieved GFLOP/s | roofline fraction |')
  print('|---|---|---|---|---|')
  times = {}
  for variant in ('baseline', 'bn'):
    seconds, flops = time_arm(variant, _STEPS_PER_CALL.value, _REPEATS.value)
    times[variant] = seconds
    print(
      f'| {variant} | {seconds * 1e6:.0f} | {flops / 1e6:.2f} | '
      f'{flops / seconds / 1e9:.1f} | {flops / seconds / peak:.0%} |'
    )
  print(f'BN step / baseline step: {times["bn"] / times["baseline"]:.2f}')


if __name__ == '__main__':
  app.run(main)
