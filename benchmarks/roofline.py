"""The matmul roofline: a model's matmul FLOPs per step and the machine's measured matmul rate."""

import time

import jax
import jax.numpy as jnp


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
