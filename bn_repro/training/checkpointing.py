"""Orbax checkpoints of the TrainState under `workdir/checkpoints`, with auto-resume."""

import pathlib

import orbax.checkpoint as ocp

from bn_repro.training.state import TrainState


class CheckpointStructureError(ValueError):
  """A checkpoint holds a state of another structure than the run's (another model or
  optimizer, or one written by an older bn_repro)."""


class Checkpointer:
  """Saves and restores TrainStates, keeping the newest `max_to_keep` of the grid.

  The grid: the steps that are multiples of `every` (every step when None). A checkpoint
  off the grid (saved when a signal stopped the run) is kept only while it is the newest,
  for the resume, and never counts against `max_to_keep`, so a run stopped and resumed
  keeps the same checkpoints as one that was not. Saves are synchronous and atomic (orbax
  writes to a temporary folder and renames it), so a killed run leaves only whole
  checkpoints. `read_only` opens an existing folder without creating or deleting anything.

  Raises (constructor):
    FileNotFoundError: `read_only`, and `directory` does not exist.
  """

  def __init__(
    self,
    directory: pathlib.Path,
    max_to_keep: int = 1,
    every: int | None = None,
    read_only: bool = False,
  ):
    if read_only and not directory.is_dir():
      raise FileNotFoundError(f'{directory} does not exist: no checkpoint there.')
    self._directory = directory
    self._max_to_keep, self._every = max_to_keep, every
    self._manager = ocp.CheckpointManager(
      directory.absolute(),
      options=ocp.CheckpointManagerOptions(create=not read_only, enable_async_checkpointing=False),
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
        'bn_repro). Train into a new workdir, or start this one again with --overwrite.'
      ) from error

  def restore_variables(self, step: int) -> dict[str, object]:
    """{'params', 'batch_stats'} of the checkpoint of `step`, whatever the rest of its state
    (optimizer, schedule) holds: what inference needs."""
    saved = self._manager.restore(step, args=ocp.args.StandardRestore())
    return {'params': saved['params'], 'batch_stats': saved.get('batch_stats', {})}

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
    for old in self._expired():
      self._manager.delete(old)

  def on_grid(self, step: int) -> bool:
    return self._every is None or step % self._every == 0

  def _expired(self) -> list[int]:
    """Grid checkpoints beyond the newest `max_to_keep`, and off-grid ones but the newest."""
    steps = self.all_steps()
    grid = [s for s in steps if self.on_grid(s)]
    keep = set(grid[-self._max_to_keep :]) | {steps[-1]}
    return [s for s in steps if s not in keep]

  def delete_after(self, step: int) -> None:
    """Deletes the checkpoints of steps after `step` (written by a run killed before them)."""
    for saved in self._manager.all_steps():
      if saved > step:
        self._manager.delete(saved)

  def close(self) -> None:
    self._manager.close()
