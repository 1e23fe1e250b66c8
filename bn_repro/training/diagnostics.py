"""Health of a training state: divergence (non-finite values) and parameter norms."""

import jax
import jax.numpy as jnp

from bn_repro.distributed import replicated_to_host


class TrainingDivergedError(FloatingPointError):
  """The loss or the state became non-finite at `step` (a FloatingPointError)."""

  def __init__(self, step: int, message: str):
    super().__init__(message)
    self.step = step

  def __reduce__(self) -> tuple:  # Pickled (to a study's parent process) with its arguments.
    return type(self), (self.step, str(self))


@jax.jit
def _norms(tree: object) -> list[jax.Array]:
  return [jnp.linalg.norm(leaf.ravel()) for leaf in jax.tree.leaves(tree)]


def parameter_norms(params: object) -> dict[str, float]:
  """{'params/LAYER/NAME': L2 norm} of every parameter array."""
  norms = replicated_to_host(_norms(params))
  paths = [
    '/'.join(str(getattr(k, 'key', k)) for k in path)
    for path, _ in jax.tree_util.tree_leaves_with_path(params)
  ]
  return {f'params/{path}': float(n) for path, n in zip(paths, norms, strict=True)}


@jax.jit
def _finite_leaves(tree: object) -> list[jax.Array]:
  return [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]


def first_nonfinite(state: object) -> str | None:
  """The path of the first parameter or BN statistic holding inf or nan, or None."""
  tree = {'params': state.params, 'batch_stats': state.batch_stats}
  finite = replicated_to_host(_finite_leaves(tree))
  if all(bool(f) for f in finite):
    return None
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
  return next(path for path, ok in zip(paths, finite, strict=True) if not bool(ok))
