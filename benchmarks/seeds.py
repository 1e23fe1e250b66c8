r"""The cost of training several seeds side by side (`config.num_seeds`, jax.vmap) vs one.

  .venv/bin/python -m benchmarks.seeds [--seeds=5] [--steps_per_call=500] [--repeats=3]

The MNIST training loop of configs/mnist.py (both arms) with 1 and with --seeds seeds
in one program, on SYNTHETIC uint8 images (timing only): microseconds per step (all
seeds together) and the ratio to one seed. The issue's target is 5 seeds in at most
2x the time of one. For comparison, the same ratio for the step's matmuls alone
(`benchmarks.roofline.time_step_matmuls`, vmapped over seeds as training is) and the
matmul FLOP rate of each, over the machine's peak measured in the same run.
"""

from absl import app, flags

from benchmarks.roofline import matmul_flops, measure_matmul_peak, time_step_matmuls
from benchmarks.timing import time_training_steps
from bn_repro.configuration.files import load_config, override

_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds trained side by side.')
_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 500, 'Steps fused per host call.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per setting (the best counts).')


def seconds_per_step(program: str, num_seeds: int) -> float:
  """Best seconds per step of `program` ('baseline', 'bn' or 'matmuls alone') for the seeds."""
  if program == 'matmuls alone':
    return time_step_matmuls(784, (100, 100, 100), 10, 60, num_seeds=num_seeds)
  config = override(load_config(f'configs/mnist.py:{program}'), num_seeds=num_seeds)
  _, seconds, _ = time_training_steps(
    config, (28, 28, 1), 10, _STEPS_PER_CALL.value, 1, config.scan_unroll, _REPEATS.value
  )
  return seconds


def main(argv: list[str]) -> None:
  del argv
  num_seeds = _SEEDS.value
  peak = measure_matmul_peak()
  print(f'float32 matmul peak measured: {peak / 1e9:.0f} GFLOP/s')
  print(
    f'| program | 1 seed us/step | {num_seeds} seeds us/step | ratio | roofline 1 / {num_seeds} |'
  )
  print('|---|---|---|---|---|')
  flops = matmul_flops(784, (100, 100, 100), 10, 60)
  for variant in ('baseline', 'bn', 'matmuls alone'):
    seconds = {seeds: seconds_per_step(variant, seeds) for seeds in (1, num_seeds)}
    rates = [flops * s / seconds[s] / peak for s in (1, num_seeds)]
    print(
      f'| {variant} | {seconds[1] * 1e6:.0f} | {seconds[num_seeds] * 1e6:.0f} | '
      f'{seconds[num_seeds] / seconds[1]:.2f} | {rates[0]:.0%} / {rates[1]:.0%} |'
    )


if __name__ == '__main__':
  app.run(main)
