r"""Learning-rate sweep of the MNIST baseline (no BN), to choose the LR both arms use.

The paper does not state the learning rate. We pick the value that gives the
BASELINE its best final test accuracy and use it for BN too, so BN gets no
tuning advantage. Writes results/mnist/lr_sweep.{md,json}.

  scripts/sweep_mnist_lr.sh  (creates the venv, then runs this)
  python scripts/sweep_mnist_lr.py --workdir=runs/mnist_lr_sweep --out=results/mnist
"""

import json
import pathlib
import time

from absl import app, flags

from bn_repro.configuration.files import load_config, override
from bn_repro.training import train
from bn_repro.training.run_info import git_commit, hardware_description

_WORKDIR = flags.DEFINE_string('workdir', 'runs/mnist_lr_sweep', 'Where the runs go.')
_OUT = flags.DEFINE_string('out', 'results/mnist', 'Where the table goes.')
_RATES = flags.DEFINE_list(
  'learning_rates', ['0.1', '0.25', '0.5', '1', '2', '4', '8'], 'Learning rates to try.'
)
_VARIANTS = flags.DEFINE_list('variants', ['baseline', 'bn'], 'configs/mnist.py variants.')
_STEPS = flags.DEFINE_integer('num_steps', 50_000, 'Training steps per run.')


def main(argv: list[str]) -> None:
  del argv
  rows = []
  for variant in _VARIANTS.value:
    for rate in _RATES.value:
      config = override(
        load_config(f'configs/mnist.py:{variant}'),
        optimizer__learning_rate=float(rate),
        num_steps=_STEPS.value,
        checkpoint_every=_STEPS.value,
      )
      start = time.perf_counter()
      workdir = pathlib.Path(_WORKDIR.value) / f'{variant}_lr{rate}'
      metrics = train.train_and_evaluate(config, workdir)
      rows.append(
        {
          'variant': variant,
          'learning_rate': float(rate),
          'final_test_accuracy': metrics['accuracy'],
          'wall_time_s': round(time.perf_counter() - start, 1),
        }
      )
      print(rows[-1], flush=True)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  record = {
    'num_steps': _STEPS.value,
    'hardware': hardware_description(),
    'commit': git_commit(),
    'runs': rows,
  }
  (out / 'lr_sweep.json').write_text(json.dumps(record, indent=2))
  lines = [
    f'Final test accuracy after {_STEPS.value} steps (batch 60, plain SGD, real MNIST, '
    f'{record["hardware"]}, commit {record["commit"]}).',
    '',
    '| learning rate | ' + ' | '.join(_VARIANTS.value) + ' |',
    '|---|' + '---|' * len(_VARIANTS.value),
  ]
  for rate in _RATES.value:
    cells = [
      f'{r["final_test_accuracy"]:.4f}'
      for v in _VARIANTS.value
      for r in rows
      if r['variant'] == v and r['learning_rate'] == float(rate)
    ]
    lines.append(f'| {rate} | ' + ' | '.join(cells) + ' |')
  (out / 'lr_sweep.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
