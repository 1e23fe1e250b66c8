r"""The device check: what only an accelerator can show, as one table, in one command.

  benchmarks/device_check.sh            # on a GPU machine (under 8 minutes)
  benchmarks/device_check.sh --cpu      # its CPU path: the same rows at toy sizes (under a minute)

Rows, each on SYNTHETIC data (timing only): BN-Inception training steps at 224x224 (batch 32
and 128, float32 and bfloat16 compute) in images/s and ms per step against the
paper-derived target of 13.7 ms per batch-32 step, with the device's peak memory; the
ImageNet input pipeline's JPEG decodes per second (needs TensorFlow; skipped, saying so,
without it); Figure 1's 50,000-step arm, extrapolated from the MNIST step's time; and a
200-step BN-Inception run whose training loss must fall and stay finite. The CPU path
shrinks the images to 32x32 and the network to width 1/16, so the script is known to work
before an accelerator is lent; its numbers are not the device's.
"""

import math
import platform
import sys
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.timing import TrainingBench, time_training_steps
from bn_repro.configuration.files import load_config, override
from bn_repro.data.pipeline import InMemoryTrainInput
from bn_repro.distributed import create_mesh

_CPU = flags.DEFINE_bool('cpu', False, 'Toy sizes, for a machine without an accelerator.')

TARGET_MS = 13.7  # Per batch-32 step: the paper-derived target (benchmarks/README.md).


def _inception(batch: int, size: int, dtype: str, width: float, steps: int = 2):
  return override(
    load_config('configs/inception.py:bn_x5'),
    batch_size=batch,
    model__norm__group_size=min(batch, 32),
    steps_per_call=steps,
    input__image_size=size,
    input__distortion_strength=0.0,
    model__compute_dtype=dtype,
    model__width=width,
  )


def _peak_memory() -> str:
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return '—' if peak is None else f'{peak / 2**30:.2f} GiB'


def step_rows(cpu: bool) -> list[str]:
  """BN-Inception training steps at 224: batch x compute dtype (on the CPU path, the
  200-step run's own steps stand for them: `loss_row`)."""
  if cpu:
    return ['| BN-Inception at 224, batch 32/128, float32/bfloat16 | skipped on the CPU path | |']
  rows = []
  for batch in (32, 128):
    for dtype in ('float32', 'bfloat16'):
      config = _inception(batch, 224, dtype, 1.0)
      _, seconds, _ = time_training_steps(config, (224, 224, 3), 1000, 2, 2, True)
      rows.append(
        f'| BN-Inception 224x224, batch {batch}, {dtype} | {batch / seconds:,.0f} images/s, '
        f'{seconds * 1e3:.1f} ms/step (target {TARGET_MS * batch / 32:.1f} ms) | '
        f'peak {_peak_memory()} |'
      )
  return rows


def input_row() -> str:
  try:
    from benchmarks.imagenet_input import jpeg_decodes_per_second
  except ImportError as error:
    return f'| ImageNet input, JPEG decodes | skipped: {error} | |'
  return f'| ImageNet input, 500x375 JPEG decodes | {jpeg_decodes_per_second(256):,.0f} /s | |'


def figure1_row() -> str:
  config = override(load_config('configs/mnist.py:bn'), num_devices=1, steps_per_call=500)
  _, seconds, _ = time_training_steps(config, (28, 28, 1), 10, 500, 2, 1)
  return (
    f'| Figure 1 arm, 50,000 MNIST steps (from {seconds * 1e6:.0f} us/step) | '
    f'{50_000 * seconds:.0f} s of training | |'
  )


def loss_row(cpu: bool) -> tuple[str, bool]:
  """200 steps of BN-Inception on a learnable synthetic set (each class its own brightness,
  plus noise): the training loss must fall and stay finite."""
  # The CPU path calls one step at a time: ten unrolled steps of BN-Inception compile about
  # ten times as long, and the check is that it runs and learns, not its speed.
  size, width, steps = (32, 1 / 16, 1) if cpu else (224, 1.0, 10)
  config = _inception(8 if cpu else 32, size, 'float32', width, steps=steps)
  bench = TrainingBench(config, (size, size, 3), 10, True)
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 10, len(bench.labels)).astype(np.int32)
  noise = rng.integers(0, 40, bench.images.shape)
  images = (labels[:, None, None, None] * 20 + noise).astype(np.uint8)
  data = InMemoryTrainInput(images, labels, config.input, config.batch_size, 0, create_mesh(1))
  state, losses, started = bench.state, [], 0.0
  for call in range(200 // steps):
    if call == 1:  # The first call compiled.
      started = time.perf_counter()
    state, metrics = bench.chunk(state, data.resident, data.per_steps(steps * call, steps))
    losses += np.asarray(metrics['loss']).tolist()
  ms = (time.perf_counter() - started) / (200 - steps) * 1e3
  first, last = np.mean(losses[:20]), np.mean(losses[-20:])
  ok = all(math.isfinite(v) for v in losses) and last < first
  verdict = 'falls' if ok else 'FAILED: it does not fall or is not finite'
  row = (
    f'| 200-step BN-Inception run, {size}x{size}, batch {config.batch_size} | loss {first:.3f} '
    f'-> {last:.3f}: {verdict} ({ms:.1f} ms/step) | peak {_peak_memory()} |'
  )
  return row, ok


def main(argv: list[str]) -> None:
  del argv
  cpu = _CPU.value
  if not cpu and jax.default_backend() == 'cpu':
    sys.exit('FATAL: no accelerator here; run benchmarks/device_check.sh --cpu for the CPU path.')
  started = time.perf_counter()
  print(
    f'Devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}); '
    f'jax {jax.__version__}; Python {platform.python_version()}'
  )
  print('\n| check | result | memory |\n|---|---|---|')
  for row in step_rows(cpu):
    print(row, flush=True)
  print(input_row(), flush=True)
  print(figure1_row(), flush=True)
  row, ok = loss_row(cpu)
  print(row)
  print(f'\nDevice check {"passed" if ok else "FAILED"} in {time.perf_counter() - started:.0f} s.')
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  app.run(main)
