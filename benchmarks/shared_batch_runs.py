r"""Runs that share a data order, merged into one program: does a wider step pay?

  XLA_FLAGS='--xla_cpu_multi_thread_eigen=false' \
    taskset -c 0 .venv/bin/python -m benchmarks.shared_batch_runs [--steps_per_call=500]

Issue #14's remaining lever for its time budgets: runs of one seed that differ only in their
learning rate or initialization see the same batches, so their first layers can share one
wider matmul (x @ [W_1 ... W_N]) instead of N narrow ones. This times the sigmoid MLP step of
configs/mnist.py (784-100-100-100-10, batch 60, plain SGD, with and without a BN-style
normalization of each hidden layer) for N runs vmapped in one program, each with its own
batch (as seeds train today) or all on one shared batch (the merge), on SYNTHETIC data
(timing only), one core as the scripts run their arms. It prints microseconds per step of
one run and the ratio to one run alone: below 1 the merge would pay.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from benchmarks.timing import best_milliseconds, run_jax

_STEPS_PER_CALL = flags.DEFINE_integer('steps_per_call', 500, 'Steps fused per call (lax.scan).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per setting (the best counts).')
SIZES = (784, 100, 100, 100, 10)
BATCH = 60
TRAIN_EXAMPLES = 60_000
SETTINGS = ((1, False), (3, False), (3, True), (12, True), (36, False), (36, True))


def _init(key: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
  keys = jax.random.split(key, len(SIZES) - 1)
  return [
    (0.1 * jax.random.normal(k, (a, b)), jnp.zeros(b))
    for k, a, b in zip(keys, SIZES[:-1], SIZES[1:], strict=True)
  ]


def _loss(params: list, x: jax.Array, y: jax.Array, normalize: bool) -> jax.Array:
  h = x
  for i, (w, b) in enumerate(params):
    h = h @ w + b
    if i < len(params) - 1:
      if normalize:
        h = (h - h.mean(0)) * lax.rsqrt(h.var(0) + 1e-5)
      h = jax.nn.sigmoid(h)
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], 1))


def _chunk_fn(runs: int, shared: bool, normalize: bool, images: jax.Array, labels: jax.Array):
  """Jitted `(params, indices (T, [runs,] B)) -> params` for `runs` runs side by side."""
  rates = jnp.linspace(0.05, 2.0, runs)

  def step(params, x, y, rate):
    grads = jax.grad(_loss)(params, x, y, normalize)
    return jax.tree.map(lambda p, g: p - rate * g, params, grads)

  data_axis = None if shared else 0

  def body(params, indices):
    x, y = images[indices], labels[indices]
    update = jax.vmap(step, in_axes=(0, data_axis, data_axis, 0))
    return update(params, x, y, rates), None

  return jax.jit(lambda params, indices: lax.scan(body, params, indices)[0])


def microseconds_per_run_step(runs: int, shared: bool, normalize: bool) -> float:
  """Best microseconds per step of one run, `runs` runs in one program."""
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((TRAIN_EXAMPLES, SIZES[0]), np.float32))
  labels = jnp.asarray(rng.integers(0, SIZES[-1], TRAIN_EXAMPLES))
  params = jax.vmap(_init)(jax.random.split(jax.random.key(0), runs))
  shape = (_STEPS_PER_CALL.value, BATCH) if shared else (_STEPS_PER_CALL.value, runs, BATCH)
  indices = jnp.asarray(rng.integers(0, TRAIN_EXAMPLES, shape))
  chunk = _chunk_fn(runs, shared, normalize, images, labels)
  milliseconds = best_milliseconds(run_jax, chunk, params, indices, repeats=_REPEATS.value)
  return 1000 * milliseconds / _STEPS_PER_CALL.value / runs


def main(argv: list[str]) -> None:
  del argv
  print('| normalization | runs in one program | batches | us per run-step | vs 1 run |')
  print('|---|---|---|---|---|')
  for normalize in (False, True):
    alone = microseconds_per_run_step(1, False, normalize)
    for runs, shared in SETTINGS:
      cost = alone if runs == 1 else microseconds_per_run_step(runs, shared, normalize)
      print(
        f'| {"BN-style" if normalize else "none"} | {runs} | {"shared" if shared else "own"} | '
        f'{cost:.0f} | {cost / alone:.2f} |',
        flush=True,
      )


if __name__ == '__main__':
  app.run(main)
