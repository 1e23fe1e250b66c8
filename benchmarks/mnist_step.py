r"""Microseconds per MNIST training step (batch 60) and the fraction of the matmul roofline.

  .venv/bin/python -m benchmarks.mnist_step [--steps_per_call=500] [--repeats=5]

Times bn_repro's fused training loop (`lax.scan` of `--steps_per_call` steps per
host call, as in training) for both arms of configs/mnist.py, on SYNTHETIC
uint8 images (timing only; no accuracy is measured). The roofline fraction is
the step's matmul FLOPs divided by its time, over this machine's float32 matmul
rate measured in the same process (best of several square matmuls).
"""

import time

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.timing import time_training_steps
from bn_repro.config_files import load_config

_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 500, 'Steps fused per host call.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per arm (the best is reported).')
_UNROLL = flags.DEFINE_integer('scan_unroll', 1, 'lax.scan unroll factor of the fused steps.')


def matmul_flops(
  image_size: int, hidden_sizes: tuple[int, ...], num_classes: int, batch: int
) -> int:
  """Matmul FLOPs of one SGD step of the MLP: forward, weight and input gradients.

  Forward 2*B*sum(in*out); weight gradients the same; input gradients for every
  layer but the first (the data needs none).
  """
  sizes = (image_size, *hidden_sizes, num_classes)
  products = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
  return 2 * batch * (3 * sum(products) - products[0])


def measure_matmul_peak(seconds_per_size: float = 1.0) -> float:
  """Best sustained float32 FLOP/s over square matmuls of a few sizes, default device.

  Each size runs back to back for `seconds_per_size`, longer than a CPU quota
  period, so short bursts above the machine's share do not inflate the peak.
  """
  best = 0.0
  for n in (512, 1024, 2048):
    a = jnp.ones((n, n), jnp.float32)
    dot = jax.jit(lambda x: x @ x)
    dot(a).block_until_ready()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds_per_size:
      dot(a).block_until_ready()
      count += 1
    best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
  return best


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
