r"""BN-Inception's pooling layers, forward + backward: bn_repro vs flax vs PyTorch.

  .venv/bin/pip install -r requirements-test.txt
  .venv/bin/python -m benchmarks.pool_layer [--repeats=10]

Shapes of BN-Inception at 224x224, batch 32 (the two stem max-pools 3x3/2, an inception
module's 3x3/1 max-pool and its 3x3/1 average pool), SYNTHETIC float32 data (timing only);
the gradient of sum(pool(x) * r) with respect to x. Max-pool: `bn_repro.nn.xla_cpu.max_pool`
(custom VJP), `flax.linen.max_pool` (XLA's select-and-scatter) and torch `max_pool2d` in
channels-last; the gradients are checked equal first. Average pool (SAME, padding
excluded from the count, as in the model's `_pool`): `flax.linen.avg_pool` vs torch
`avg_pool2d`. Milliseconds per call, best of --repeats.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags
from flax import linen as nn

from benchmarks.timing import best_milliseconds, run_jax
from bn_repro.nn.xla_cpu import max_pool

_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per implementation; the best counts.')
# name -> (kind, batch, height, width, channels, stride)
POOLS = {
  'max 3x3/2 @112x112x64 (stem)': ('max', 32, 112, 112, 64, 2),
  'max 3x3/2 @56x56x192 (stem)': ('max', 32, 56, 56, 192, 2),
  'max 3x3/1 @28x28x256 (3b)': ('max', 32, 28, 28, 256, 1),
  'avg 3x3/1 @28x28x192 (3a)': ('avg', 32, 28, 28, 192, 1),
}


def _torch_call(x, r, kind, stride) -> None:
  x.grad = None
  if kind == 'max':
    y = torch.nn.functional.max_pool2d(x, 3, stride, 1)
  else:
    y = torch.nn.functional.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
  (y * r).sum().backward()


def _jax_gradients(kind: str, stride: int) -> dict:
  """Jitted gradients of sum(pool(x) * r) with respect to x, functions of (x, r), by
  implementation name (r is an argument, so XLA cannot fold the linear average pool's
  gradient into a constant)."""

  def grad_of(pool):
    return jax.jit(jax.grad(lambda x, r: jnp.sum(pool(x) * r)))

  window, strides = (3, 3), (stride, stride)
  if kind == 'avg':
    return {
      'flax': grad_of(lambda x: nn.avg_pool(x, window, strides, 'SAME', count_include_pad=False))
    }
  return {
    'bn_repro': grad_of(lambda x: max_pool(x, 3, stride)),
    'flax': grad_of(lambda x: nn.max_pool(x, window, strides, 'SAME')),
  }


def main(argv: list[str]) -> None:
  del argv
  print(f'jax {jax.__version__}, torch {torch.__version__}; SYNTHETIC inputs; fwd + bwd (dx)')
  print('| pooling | bn_repro ms | flax ms | torch channels-last ms | best jax / torch |')
  print('|---|---|---|---|---|')
  for name, (kind, n, h, w, c, stride) in POOLS.items():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    r = rng.normal(size=(n, -(-h // stride), -(-w // stride), c)).astype(np.float32)
    gradients = _jax_gradients(kind, stride)
    x_jax, r_jax = jnp.asarray(x), jnp.asarray(r)
    results = [np.asarray(g(x_jax, r_jax)) for g in gradients.values()]
    for result in results[1:]:
      np.testing.assert_allclose(result, results[0], rtol=1e-5, atol=1e-5)
    jax_ms = {
      impl: best_milliseconds(run_jax, g, x_jax, r_jax, repeats=_REPEATS.value)
      for impl, g in gradients.items()
    }
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    rt = torch.from_numpy(r).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    xt.requires_grad_(True)
    torch_ms = best_milliseconds(_torch_call, xt, rt, kind, stride, repeats=_REPEATS.value)
    ours = f'{jax_ms["bn_repro"]:.1f}' if 'bn_repro' in jax_ms else '— (flax)'
    print(
      f'| {name} | {ours} | {jax_ms["flax"]:.1f} | {torch_ms:.1f} | '
      f'{min(jax_ms.values()) / torch_ms:.1f} |'
    )


if __name__ == '__main__':
  app.run(main)
