"""Entry point: `python -m bn_repro.main --config=configs/mnist.py:bn --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=0.1`;
an unknown field or variant stops the run before any compute, naming the valid ones.

  python -m bn_repro.main --list                                # config files, variants
  python -m bn_repro.main --list --config=configs/mnist.py:bn   # fields, values, docs

Exit status: 0 trained; 1 a FATAL line (bad config, workdir, data, ...); 3 the training
loss became non-finite (a result for a sweep, not a crash; the last good checkpoint is
kept); 128 + N stopped by signal N after a checkpoint (rerun to resume).
"""

import sys

from absl import app, flags, logging

from bn_repro.configuration import command_line
from bn_repro.configuration.checks import InvalidConfigError
from bn_repro.data.datasets import SubsetSizeError
from bn_repro.data.imagenet import ImageNetNotPreparedError
from bn_repro.data.offline import DataIntegrityError
from bn_repro.distributed import DeviceCountError
from bn_repro.training import console, train
from bn_repro.training.checkpointing import CheckpointStructureError
from bn_repro.training.compilation_cache import enable_compilation_cache
from bn_repro.training.diagnostics import TrainingDivergedError
from bn_repro.training.preemption import PreemptedError
from bn_repro.training.workdir import WorkdirError

DIVERGED_EXIT_STATUS = 3
flags.adopt_module_key_flags(command_line)  # --help lists the command's flags.


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(console.OwnInfoOnly())
  command_line.initialize_distributed()
  enable_compilation_cache()
  try:
    train.train_and_evaluate(
      command_line.CONFIG.value,
      command_line.WORKDIR.value,
      overwrite=command_line.OVERWRITE.value,
      defaults=command_line.config_defaults(),
    )
  except PreemptedError as stopped:
    logging.warning('%s', stopped)
    sys.exit(128 + stopped.signum)
  except (
    InvalidConfigError,
    WorkdirError,
    DataIntegrityError,
    ImageNetNotPreparedError,
    DeviceCountError,
    CheckpointStructureError,
    SubsetSizeError,
  ) as error:
    sys.exit(f'FATAL: {error}')
  except TrainingDivergedError as error:
    print(f'FATAL: {error}', file=sys.stderr, flush=True)
    sys.exit(DIVERGED_EXIT_STATUS)
  except KeyboardInterrupt:  # Ctrl-C before training began (afterwards it checkpoints).
    sys.exit('FATAL: interrupted (Ctrl-C) during startup; nothing was trained or saved.')


if __name__ == '__main__':
  console.quiet_tensorflow()
  app.run(main, flags_parser=command_line.parse_flags)
