r"""The cost of training several seeds side by side (`config.num_seeds`, jax.vmap) vs one.

  .venv/bin/python -m benchmarks.seeds [--seeds=5] [--steps_per_call=500] [--repeats=3]

The MNIST training loop of configs/mnist.py (both arms) with 1 and with --seeds seeds
in one program, on SYNTHETIC uint8 images (timing only): microseconds per step (all
seeds together) and the ratio to one seed. The issue's target is 5 seeds in at most
2x the time of one.
"""

from absl import app, flags

from benchmarks.timing import time_training_steps
from bn_repro.config_files import load_config, override

_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds trained side by side.')
_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 500, 'Steps fused per host call.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per setting (the best counts).')


def main(argv: list[str]) -> None:
  del argv
  print(f'| arm | 1 seed us/step | {_SEEDS.value} seeds us/step | ratio |')
  print('|---|---|---|---|')
  for variant in ('baseline', 'bn'):
    seconds = {}
    for seeds in (1, _SEEDS.value):
      config = override(load_config(f'configs/mnist.py:{variant}'), num_seeds=seeds)
      _, seconds[seeds], _ = time_training_steps(
        config, (28, 28, 1), 10, _STEPS_PER_CALL.value, 1, config.scan_unroll, _REPEATS.value
      )
    print(
      f'| {variant} | {seconds[1] * 1e6:.0f} | {seconds[_SEEDS.value] * 1e6:.0f} | '
      f'{seconds[_SEEDS.value] / seconds[1]:.2f} |'
    )


if __name__ == '__main__':
  app.run(main)
