"""Ensemble evaluation: average the class probabilities of several models (the paper's
6-model BN-Inception ensemble, Sec. 4.2.3), counted exactly over a padded split.

Command (the members are runs of one config, e.g. several seeds):
  python -m bn_repro.ensemble --config=configs/inception.py:bn_x5 \
      --workdirs=runs/bn_x5_s0,runs/bn_x5_s1 [--checkpoint=best] [--config.eval.crops=144]
prints top-1 and top-5 test accuracy of the ensemble and of each member. With multi-crop
batches `(B, crops, H, W, C)` each member's probabilities are averaged over the crops
first (GoogLeNet's multi-crop protocol), then over the members.
"""

import json
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence

import flax.linen as nn
import flax.struct
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.distributed import AXIS, gathered_to_host, put_global
from bn_repro.training.state import TrainState
from bn_repro.training.steps import mean_probabilities_over_crops

CHECKPOINTS = {
  'latest': 'checkpoints',
  'best': 'best_checkpoint',
  'population': 'population_checkpoint',
}


def make_predict_fn(
  model: nn.Module, preprocess: Callable[[jax.Array], jax.Array], mesh: Mesh
) -> Callable[[TrainState, jax.Array], jax.Array]:
  """Jitted `(state, images) -> class probabilities (B, K)`, inference mode.

  `images` are `(B, H, W, C)`, or `(B, crops, H, W, C)`, whose crops' probabilities are
  averaged per example.
  """

  def predict(state, images):
    crops = images.shape[1] if images.ndim == 5 else 0
    flat = images.reshape((-1,) + images.shape[2:]) if crops else images
    logits = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, preprocess(flat), train=False
    )
    return mean_probabilities_over_crops(logits, max(crops, 1))

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS)))


def evaluate_ensemble(
  predict_fn: Callable[[TrainState, jax.Array], jax.Array],
  states: Sequence[TrainState],
  batches: Iterable[tuple[jax.Array, jax.Array, jax.Array]],
  mesh: Mesh,
) -> dict[str, object]:
  """Top-1 and top-5 accuracy of the mean of the members' probabilities, and of each member.

  Args:
    predict_fn: from `make_predict_fn`.
    states: the members (same model, e.g. checkpoints of several runs).
    batches: sharded (images, labels, mask) batches; mask False marks padding.

  Returns:
    {'accuracy', 'top5_accuracy', 'count', 'members': [{'accuracy', 'top5_accuracy'}, ...]}
    over the examples whose mask is True.
  """
  states = [put_global(s, NamedSharding(mesh, P())) for s in states]
  correct = np.zeros((len(states) + 1, 2), np.int64)  # Row 0: the ensemble; then members.
  count = 0
  for images, labels, mask in batches:
    member_probs = [gathered_to_host(predict_fn(s, images)) for s in states]
    labels, mask = gathered_to_host((labels, mask))
    for row, probs in enumerate([np.mean(member_probs, axis=0), *member_probs]):
      top5 = np.argsort(-probs, axis=-1)[:, :5]
      correct[row, 0] += int(np.sum((np.argmax(probs, -1) == labels) & mask))
      correct[row, 1] += int(np.sum(np.any(top5 == labels[:, None], axis=-1) & mask))
    count += int(mask.sum())
  accuracies = [{'accuracy': c1 / count, 'top5_accuracy': c5 / count} for c1, c5 in correct]
  return {**accuracies[0], 'count': count, 'members': accuracies[1:]}


@flax.struct.dataclass
class Member:
  """What inference needs of a trained network: its parameters and BN statistics."""

  params: object
  batch_stats: object


def restore_members(workdirs: Sequence[pathlib.Path], checkpoint: str) -> list[tuple[str, Member]]:
  """Each workdir's `checkpoint` ('latest', 'best' or 'population'), its parameters and BN
  statistics only (whatever optimizer or schedule it trained with), opened read-only; a run
  of several seeds side by side gives one member per seed. Returns (label, member) pairs.

  Raises:
    FileNotFoundError: a workdir has no such checkpoint, naming it.
  """
  from bn_repro.training.checkpointing import Checkpointer

  members = []
  for workdir in map(pathlib.Path, workdirs):
    directory = workdir / CHECKPOINTS[checkpoint]
    missing = FileNotFoundError(f'{directory} holds no checkpoint (--checkpoint={checkpoint}).')
    try:
      checkpointer = Checkpointer(directory, read_only=True)
    except FileNotFoundError:
      raise missing from None
    step = checkpointer.latest_step()
    variables = None if step is None else checkpointer.restore_variables(step)
    checkpointer.close()
    if variables is None:
      raise missing
    seeds = _num_seeds(workdir)
    if seeds == 1:
      members.append((str(workdir), Member(**variables)))
      continue
    for seed in range(seeds):
      of_seed = jax.tree.map(lambda x, s=seed: x[s], variables)
      members.append((f'{workdir} (seed {seed})', Member(**of_seed)))
  return members


def _num_seeds(workdir: pathlib.Path) -> int:
  """The seeds its run trained side by side (its config.json; 1 if it has none)."""
  try:
    return int(json.loads((workdir / 'config.json').read_text()).get('num_seeds', 1))
  except (OSError, json.JSONDecodeError):
    return 1


def check_members(members: list[tuple[str, Member]], template: Member) -> None:
  """Raises ValueError naming the first member whose variables do not fit the model."""
  want = jax.tree.structure(template), [np.shape(x) for x in jax.tree.leaves(template)]
  for label, member in members:
    if (jax.tree.structure(member), [np.shape(x) for x in jax.tree.leaves(member)]) != want:
      raise ValueError(
        f'{label}: its parameters do not fit the model of --config (another architecture '
        'or width); give the config its runs trained with.'
      )


def main(argv: Sequence[str]) -> None:
  from absl import flags, logging

  from bn_repro import models
  from bn_repro.configuration.checks import validate_config
  from bn_repro.configuration.files import override
  from bn_repro.data import transforms
  from bn_repro.data.offline import DataIntegrityError
  from bn_repro.data.pipeline import create_inputs
  from bn_repro.distributed import create_mesh
  from bn_repro.training.state import create_train_state

  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines are not the result.
  config = override(flags.FLAGS.config, num_seeds=1)  # Each member is one network.
  mesh = create_mesh(config.num_devices)
  try:
    validate_config(config, mesh.size)
    inputs = create_inputs(config, mesh)
    model = models.create_model(config.model, inputs.num_classes)
    state = create_train_state(config, model, np.zeros((2,) + inputs.image_shape, np.float32))
    members = restore_members(flags.FLAGS.workdirs, flags.FLAGS.checkpoint)
    check_members(members, Member(state.params, state.batch_stats))
  except (ValueError, FileNotFoundError, DataIntegrityError) as error:
    sys.exit(f'FATAL: {error}')
  preprocess = transforms.get_preprocessor(config.input.preprocess, inputs.pixel_mean)
  predict = make_predict_fn(model, preprocess, mesh)
  metrics = evaluate_ensemble(predict, [m for _, m in members], inputs.eval_batches(), mesh)
  crops = config.eval.get('crops', 1)
  for (label, _), member in zip(members, metrics['members'], strict=True):
    print(f'{label}: top-1 {member["accuracy"]:.4f}  top-5 {member["top5_accuracy"]:.4f}')
  print(
    f'ensemble of {len(members)} ({flags.FLAGS.checkpoint} checkpoints, {crops} crop(s), '
    f'{metrics["count"]} test examples): top-1 {metrics["accuracy"]:.4f}  '
    f'top-5 {metrics["top5_accuracy"]:.4f}'
  )
  print(json.dumps(metrics))


def _define_flags() -> None:
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file('config', None, "The members' config file[:variant].")
  flags.DEFINE_list('workdirs', None, 'Comma-separated workdirs of the member runs.')
  flags.DEFINE_enum('checkpoint', 'best', list(CHECKPOINTS), 'Which checkpoint of each run.')
  flags.mark_flags_as_required(['config', 'workdirs'])


if __name__ == '__main__':
  from absl import app

  _define_flags()
  app.run(main)
