r"""The BN layer alone, forward + backward: bn_repro vs flax.linen.BatchNorm vs PyTorch.

  .venv/bin/pip install -r requirements-test.txt
  .venv/bin/python -m benchmarks.bn_layer [--repeats=20]

bn_repro's layer with Algorithm 1's two-pass variance (the default) and with
`fast_variance=True` (E[x^2] - E[x]^2, as flax computes it).
Training-mode BN (batch statistics, running-average update) and the gradient of
sum(BN(x) * r) with respect to x, gamma and beta, on SYNTHETIC float32 activations
(timing only): convolutional `(32, 28, 28, 256)` NHWC (torch: BatchNorm2d on the same
tensor in channels-last memory format, and in its default NCHW) and dense `(1024, 1024)`
(torch: BatchNorm1d). The JAX layers' outputs and gradients are checked equal first.
Milliseconds per call, best of --repeats.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags

from benchmarks.timing import best_milliseconds, run_jax
from bn_repro.nn.batch_norm import BatchNorm

_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed calls per implementation; the best counts.')
SHAPES = {'conv (32, 28, 28, 256)': (32, 28, 28, 256), 'dense (1024, 1024)': (1024, 1024)}


def _jax_fn(module: nn.Module, x: jax.Array):
  variables = module.init(jax.random.key(0), x)

  @jax.jit
  def forward_backward(params, batch_stats, x, r):
    def loss(params, x):
      y, updates = module.apply(
        {'params': params, 'batch_stats': batch_stats}, x, mutable=['batch_stats']
      )
      return jnp.sum(y * r), updates

    (_, updates), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    return grads, updates

  return lambda x, r: forward_backward(variables['params'], variables['batch_stats'], x, r)


def _torch_call(bn: torch.nn.Module, x: torch.Tensor, r: torch.Tensor) -> None:
  x.grad = None
  bn.zero_grad(set_to_none=True)
  (bn(x) * r).sum().backward()


def main(argv: list[str]) -> None:
  del argv
  print(f'jax {jax.__version__}, flax BatchNorm, torch {torch.__version__}; SYNTHETIC inputs')
  print(
    '| activations | bn_repro ms (two-pass / fast_variance) | flax ms | torch ms (same layout) '
    '| torch ms (NCHW) | bn_repro / flax (two-pass / fast) | bn_repro fast / torch |'
  )
  print('|---|---|---|---|---|---|---|')
  for label, shape in SHAPES.items():
    rng = np.random.default_rng(0)
    x_np = rng.normal(size=shape).astype(np.float32)
    r_np = rng.normal(size=shape).astype(np.float32)
    x, r = jnp.asarray(x_np), jnp.asarray(r_np)
    settings = {'use_running_average': False, 'momentum': 0.99, 'epsilon': 1e-5}
    ours = _jax_fn(BatchNorm(**settings), x)
    ours_fast = _jax_fn(BatchNorm(**settings, fast_variance=True), x)
    theirs = _jax_fn(nn.BatchNorm(**settings), x)
    for fn in (ours, ours_fast):
      for a, b in zip(jax.tree.leaves(fn(x, r)[0]), jax.tree.leaves(theirs(x, r)[0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)
    ours_ms = best_milliseconds(run_jax, ours, x, r, repeats=_REPEATS.value)
    fast_ms = best_milliseconds(run_jax, ours_fast, x, r, repeats=_REPEATS.value)
    flax_ms = best_milliseconds(run_jax, theirs, x, r, repeats=_REPEATS.value)

    torch_ms = {}
    for layout in ('same', 'nchw'):
      if len(shape) == 4:
        bn = torch.nn.BatchNorm2d(shape[-1], eps=1e-5, momentum=0.01)
        xt = torch.from_numpy(x_np).permute(0, 3, 1, 2)  # NCHW view of the NHWC data.
        rt = torch.from_numpy(r_np).permute(0, 3, 1, 2)
        if layout == 'nchw':  # Contiguous NCHW, PyTorch's default layout.
          xt, rt = xt.contiguous(), rt.contiguous()
      else:
        bn = torch.nn.BatchNorm1d(shape[-1], eps=1e-5, momentum=0.01)
        xt, rt = torch.from_numpy(x_np), torch.from_numpy(r_np)
      xt = xt.clone().requires_grad_(True)

      torch_ms[layout] = best_milliseconds(_torch_call, bn, xt, rt, repeats=_REPEATS.value)
    nchw = f'{torch_ms["nchw"]:.2f}' if len(shape) == 4 else '—'
    print(
      f'| {label} | {ours_ms:.2f} / {fast_ms:.2f} | {flax_ms:.2f} | {torch_ms["same"]:.2f} | '
      f'{nchw} | {ours_ms / flax_ms:.2f} / {fast_ms / flax_ms:.2f} | '
      f'{fast_ms / min(torch_ms.values()):.2f} |'
    )


if __name__ == '__main__':
  app.run(main)
