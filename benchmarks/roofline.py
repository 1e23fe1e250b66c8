"""The matmul roofline: a model's matmul FLOPs per step and the machine's measured matmul rate."""

import time

import jax
import jax.numpy as jnp

from benchmarks.timing import best_milliseconds, run_jax


def matmul_flops(
  image_size: int, hidden_sizes: tuple[int, ...], num_classes: int, batch: int
) -> int:
  """Matmul FLOPs of one SGD step of the MLP: forward, weight and input gradients.

  Forward 2*B*sum(in*out); weight gradients the same; input gradients for every
  layer but the first (the data needs none).
  """
  sizes = (image_size, *hidden_sizes, num_classes)
  products = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
  return 2 * batch * (3 * sum(products) - products[0])


def measure_matmul_peak(seconds_per_size: float = 1.0) -> float:
  """Best sustained float32 FLOP/s over square matmuls of a few sizes, default device.

  Each size runs back to back for `seconds_per_size`, longer than a CPU quota
  period, so short bursts above the machine's share do not inflate the peak.
  """
  best = 0.0
  for n in (512, 1024, 2048):
    a = jnp.ones((n, n), jnp.float32)
    dot = jax.jit(lambda x: x @ x)
    dot(a).block_until_ready()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds_per_size:
      dot(a).block_until_ready()
      count += 1
    best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
  return best


def time_step_matmuls(
  image_size: int,
  hidden_sizes: tuple[int, ...],
  num_classes: int,
  batch: int,
  steps: int = 500,
  num_seeds: int = 1,
) -> float:
  """Best seconds per step of the MLP step's matmuls alone, at the step's own shapes.

  A `lax.scan` of `steps` iterations, each the forward products, the weight-gradient
  products and the input-gradient products of every layer but the first, chained
  through the carried weights so none is optimized away (SYNTHETIC values; timing
  only). This is the rate these small matmuls reach on this machine: the step's time
  over it says how much the rest of the step (nonlinearities, BN, loss, update, data
  gather) costs. With `num_seeds` > 1 the body is vmapped over that many weight sets
  and batches, as `config.num_seeds` trains them.
  """
  sizes = (image_size, *hidden_sizes, num_classes)
  seeds = (num_seeds,) if num_seeds > 1 else ()
  weights = [
    jnp.full((*seeds, a, b), 1e-3, jnp.float32) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
  ]
  x = jnp.ones((*seeds, batch, image_size), jnp.float32)

  def update(weights, x):
    activations = [x]
    for w in weights:
      activations.append(activations[-1] @ w)
    delta, grads = activations[-1], []
    for i in reversed(range(len(weights))):
      grads.append(activations[i].T @ delta)
      if i:
        delta = delta @ weights[i].T
    return [w - 1e-9 * g for w, g in zip(weights, reversed(grads), strict=True)]

  if num_seeds > 1:
    update = jax.vmap(update)

  def body(weights, _):
    return update(weights, x), ()

  run = jax.jit(lambda weights: jax.lax.scan(body, weights, None, length=steps)[0])
  return best_milliseconds(run_jax, run, weights, repeats=5) / 1e3 / steps
