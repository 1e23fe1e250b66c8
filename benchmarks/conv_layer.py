r"""One convolution, forward + backward: XLA:CPU (jax) vs PyTorch (oneDNN), to locate the
BN-Inception step gap.

  .venv/bin/pip install -r requirements-test.txt
  .venv/bin/python -m benchmarks.conv_layer [--repeats=10]

Shapes from BN-Inception at 224x224, batch 32 (the stem's 7x7/2 and 3x3, inception_3a's 3x3
and 1x1, a 14x14 3x3), SYNTHETIC float32 data (timing only); the gradient of
sum(conv(x) * r) with respect to x and the kernel. jax: NHWC/HWIO `lax.conv_general_dilated`
as XLA runs it, and `bn_repro.nn.xla_cpu.conv_general_dilated` (1x1 as a matmul; on CPU, large
convolutions' kernel gradients in chunks of 4 examples), checked equal to it; torch:
`conv2d` in channels-last and in NCHW memory formats. Milliseconds per call (best of
--repeats) and GFLOP/s of bn_repro's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags
from jax import lax

from benchmarks.timing import best_milliseconds, run_jax
from bn_repro.nn import xla_cpu

_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per implementation; the best counts.')
# name -> (batch, height, width, in channels, out channels, kernel, stride)
CONVS = {
  'stem 7x7/2, 3->64 @224': (32, 224, 224, 3, 64, 7, 2),
  'stem 3x3, 64->192 @56': (32, 56, 56, 64, 192, 3, 1),
  '3a 3x3, 64->64 @28': (32, 28, 28, 64, 64, 3, 1),
  '3a 1x1, 192->64 @28': (32, 28, 28, 192, 64, 1, 1),
  '4a 3x3, 96->128 @14': (32, 14, 14, 96, 128, 3, 1),
}


def _gradient(convolve: object, r: jax.Array, stride: int) -> object:
  """Jitted gradient of sum(convolve(x, kernel) * r) with respect to (x, kernel)."""

  def loss(x, kernel):
    y = convolve(x, kernel, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.sum(y * r)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _torch_call(x, w, r, stride, padding) -> None:
  x.grad = w.grad = None
  (torch.nn.functional.conv2d(x, w, stride=stride, padding=padding) * r).sum().backward()


def main(argv: list[str]) -> None:
  del argv
  print(f'jax {jax.__version__}, torch {torch.__version__}; SYNTHETIC inputs; fwd + bwd (dx, dw)')
  print(
    '| convolution | lax ms | bn_repro ms | torch channels-last ms | torch NCHW ms | '
    'GFLOP/s (bn_repro) | bn_repro / best torch |'
  )
  print('|---|---|---|---|---|---|---|')
  for name, (n, h, w, c_in, c_out, k, stride) in CONVS.items():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, h, w, c_in)).astype(np.float32)
    kernel = rng.normal(size=(k, k, c_in, c_out)).astype(np.float32) * 0.05
    out_h, out_w = -(-h // stride), -(-w // stride)
    r = rng.normal(size=(n, out_h, out_w, c_out)).astype(np.float32)

    args = jnp.asarray(x), jnp.asarray(kernel)
    grads = {
      impl: _gradient(convolve, jnp.asarray(r), stride)
      for impl, convolve in (
        ('lax', lax.conv_general_dilated),
        ('bn_repro', xla_cpu.conv_general_dilated),
      )
    }
    for got, want in zip(grads['bn_repro'](*args), grads['lax'](*args), strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.abs(want).max()))
    jax_ms = {
      impl: best_milliseconds(run_jax, grad, *args, repeats=_REPEATS.value)
      for impl, grad in grads.items()
    }
    torch_ms = {}
    for fmt, memory_format in (('cl', torch.channels_last), ('nchw', torch.contiguous_format)):
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
      wt = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(memory_format=memory_format)
      rt = torch.from_numpy(r).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
      xt.requires_grad_(True)
      wt.requires_grad_(True)
      torch_ms[fmt] = best_milliseconds(
        _torch_call, xt, wt, rt, stride, k // 2, repeats=_REPEATS.value
      )
    flops = 3 * 2 * n * out_h * out_w * c_out * c_in * k * k  # Forward, dx and dw.
    print(
      f'| {name} | {jax_ms["lax"]:.1f} | {jax_ms["bn_repro"]:.1f} | {torch_ms["cl"]:.1f} | '
      f'{torch_ms["nchw"]:.1f} | {flops / jax_ms["bn_repro"] / 1e6:.0f} | '
      f'{jax_ms["bn_repro"] / min(torch_ms.values()):.2f} |'
    )


if __name__ == '__main__':
  app.run(main)
