"""Orbax checkpoints of the TrainState under `workdir/checkpoints`, with auto-resume."""

import pathlib

import orbax.checkpoint as ocp

from bn_repro.training.steps import TrainState


class Checkpointer:
  """Saves and restores TrainStates, keeping the newest `max_to_keep`.

  Saves are synchronous and atomic (orbax writes to a temporary folder and
  renames it), so a killed run leaves only whole checkpoints.
  """

  def __init__(self, directory: pathlib.Path, max_to_keep: int):
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
    """The checkpoint of `step` restored into `state`'s structure."""
    return self._manager.restore(step, args=ocp.args.StandardRestore(state))

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
