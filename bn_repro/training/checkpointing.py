"""Orbax checkpoints of the TrainState under `workdir/checkpoints`, with auto-resume."""

import pathlib

import orbax.checkpoint as ocp

from bn_repro.training.steps import TrainState


class CheckpointStructureError(ValueError):
  """A checkpoint holds a state of another structure than the run's (another model or
  optimizer, or one written by an older bn_repro)."""


class Checkpointer:
  """Saves and restores TrainStates, keeping the newest `max_to_keep`.

  Saves are synchronous and atomic (orbax writes to a temporary folder and
  renames it), so a killed run leaves only whole checkpoints.
  """

  def __init__(self, directory: pathlib.Path, max_to_keep: int):
    self._directory = directory
    self._manager = ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
      ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of the kept checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def restore(self, step: int, state: TrainState) -> TrainState:
    """The checkpoint of `step` restored into `state`'s structure.

    Raises:
      CheckpointStructureError: the checkpoint's tree is not `state`'s.
    """
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(state))
    except ValueError as error:
      if 'tree structures do not match' not in str(error):
        raise
      raise CheckpointStructureError(
        f'The checkpoint {self._directory / str(step)} holds a training state of another '
        "structure than this run's (another model or optimizer, or one saved by an older "
        'bn_repro: since d235fc7 a constant learning rate is optimizer state). Train into '
        'a new workdir, or pass --overwrite to start this one again.'
      ) from error

  def restore_latest(self, state: TrainState) -> TrainState:
    """Returns the newest checkpoint restored into `state`'s structure, or `state`."""
    step = self._manager.latest_step()
    return state if step is None else self.restore(step, state)

  def save(self, state: TrainState) -> None:
    """Saves `state` at its step, replacing a checkpoint of that step if one exists.

    A resumed run replays the steps after its checkpoint and may save a step again
    (a best or final checkpoint written before the kill): the newer save wins.
    """
    step = int(state.step)
    if step in self._manager.all_steps():
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self._manager.wait_until_finished()

  def delete_after(self, step: int) -> None:
    """Deletes the checkpoints of steps after `step` (written by a run killed before them)."""
    for saved in self._manager.all_steps():
      if saved > step:
        self._manager.delete(saved)

  def close(self) -> None:
    self._manager.close()
