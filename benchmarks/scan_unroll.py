r"""How many steps to fuse per host call, and whether to unroll them, per model family.

  .venv/bin/python -m benchmarks.scan_unroll

Times one training step, in ms, of (a) the small BN-Inception proxy
(configs/inception.py:bn_x5,small) and (b) the MNIST MLP (configs/mnist.py:bn), fused
`k` steps per call with `lax.scan` rolled (unroll=1) or fully unrolled, on SYNTHETIC
data (timing only), plus each program's compile time. On XLA:CPU a rolled loop body
runs convolutions several times slower than straight-line code, while the tiny MLP is
fastest rolled; the configs' `steps_per_call` and `scan_unroll` follow this table.
"""

import jax
from absl import app

from benchmarks.timing import time_training_steps
from bn_repro.configuration.files import load_config, override

CASES = (
  ('configs/inception.py:bn_x5,small', (1, 2, 5), 40),
  ('configs/mnist.py:bn', (1, 100), 1000),
)


def time_case(
  spec: str, steps_per_call: int, unroll: bool, total_steps: int
) -> tuple[float, float]:
  """Returns (compile seconds, seconds per step)."""
  config = override(load_config(spec), steps_per_call=steps_per_call)
  calls = max(1, total_steps // steps_per_call)
  compile_s, seconds, _ = time_training_steps(
    config, (28, 28, 1), 10, steps_per_call, calls, scan_unroll=True if unroll else 1
  )
  return compile_s, seconds


def main(argv: list[str]) -> None:
  del argv
  print(f'device: {jax.devices()[0].device_kind}')
  print('| config | steps per call | unroll | compile s | ms/step |')
  print('|---|---|---|---|---|')
  for spec, fused, total in CASES:
    for steps_per_call in fused:
      for unroll in (False, True):
        if unroll and steps_per_call == 1:
          continue  # One step is always emitted unrolled (bn_repro.training.steps).
        if unroll and steps_per_call > 10:
          continue  # Unrolling 100 MLP steps compiles for minutes and runs slower.
        compile_s, per_step = time_case(spec, steps_per_call, unroll, total)
        mode = 'full' if unroll or steps_per_call == 1 else 'rolled'
        print(
          f'| {spec} | {steps_per_call} | {mode} | {compile_s:.0f} | {per_step * 1e3:.2f} |',
          flush=True,
        )


if __name__ == '__main__':
  app.run(main)
