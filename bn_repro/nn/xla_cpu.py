"""Exact re-expressions of two layers that XLA:CPU runs slowly, and why they exist.

Each function here computes what its JAX/Flax counterpart computes (the same values, and
gradients equal up to the order of floating-point sums), only arranged so that XLA:CPU's
fast paths run it:
- `conv_general_dilated`: a 1x1 unpadded convolution is a matmul; on CPU a large
  convolution's kernel gradient is summed over chunks of a few examples
  (`KERNEL_GRADIENT_*` say from which size; `chunked_kernel_gradient_enabled` says
  whether this process uses it, and the run record `run_info.json` records it).
- `max_pool`: SAME max-pooling whose gradient is one masked add per window offset
  instead of XLA's select-and-scatter.
The measured speed-ups, and the library versions they were measured with, are in
benchmarks/README.md (`benchmarks.conv_layer`, `benchmarks.pool_layer`).

To delete this module when XLA:CPU catches up: run those two benchmarks; where the plain
`lax.conv_general_dilated` / `flax.linen.max_pool` is as fast, build the layers with them
(`bn_repro.nn.normalization.linear_layer`, `bn_repro.models.inception`) and remove the
function here; tests/test_layers.py compares each function with its counterpart.
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def chunked_kernel_gradient_enabled() -> bool:
  """Whether large convolutions compute their kernel gradient in chunks (CPU only)."""
  return jax.default_backend() == 'cpu'


# XLA:CPU computes the kernel gradient of a large convolution (batch 32) faster as a sum
# over chunks of a few examples than over the whole batch at once; below these sizes
# chunking costs time (benchmarks/README.md, `benchmarks.conv_layer`).
KERNEL_GRADIENT_CHUNK = 4  # Examples per chunk.
KERNEL_GRADIENT_MIN_PIXELS = 14 * 14  # Output pixels per example.
KERNEL_GRADIENT_MIN_MACS = 25_000_000  # Multiply-adds per example.


def _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  return lax.conv_general_dilated(
    lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers, precision=precision
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_chunked_kernel_gradient(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  """`lax.conv_general_dilated` of batch-first `lhs`; its kernel gradient is the sum of the
  kernel gradients of chunks of KERNEL_GRADIENT_CHUNK examples (the same sum, added in
  another order)."""
  return _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)


def _conv_chunked_forward(lhs, rhs, window_strides, padding, dimension_numbers, precision):
  y = _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)
  return y, (lhs, rhs)


def _conv_chunked_backward(window_strides, padding, dimension_numbers, precision, residuals, dy):
  lhs, rhs = residuals

  def convolve(lhs, rhs):
    return _convolve(lhs, rhs, window_strides, padding, dimension_numbers, precision)

  _, lhs_vjp = jax.vjp(lambda lhs: convolve(lhs, rhs), lhs)
  (d_lhs,) = lhs_vjp(dy)
  d_rhs = jnp.zeros_like(rhs)
  for start in range(0, lhs.shape[0], KERNEL_GRADIENT_CHUNK):
    chunk = slice(start, start + KERNEL_GRADIENT_CHUNK)
    _, rhs_vjp = jax.vjp(lambda rhs, chunk=chunk: convolve(lhs[chunk], rhs), rhs)
    d_rhs = d_rhs + rhs_vjp(dy[chunk])[0]
  return d_lhs, d_rhs


_conv_chunked_kernel_gradient.defvjp(_conv_chunked_forward, _conv_chunked_backward)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: object,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: lax.ConvDimensionNumbers | None = None,
  feature_group_count: int = 1,
  precision: object = None,
) -> jax.Array:
  """`lax.conv_general_dilated` for channels-last inputs, with 1x1 convolutions as matmuls.

  A 1x1, stride-1, unpadded, ungrouped, undilated convolution of `(N, H, W, C_in)` by an HWIO
  kernel `(1, 1, C_in, C_out)` is the matrix product of `(N*H*W, C_in)` by
  `(C_in, C_out)`, which XLA:CPU runs faster that way, forward and backward. On CPU, an
  ungrouped, undilated convolution with at least KERNEL_GRADIENT_MIN_PIXELS output pixels
  and KERNEL_GRADIENT_MIN_MACS multiply-adds per example computes its kernel gradient in
  chunks of KERNEL_GRADIENT_CHUNK examples (`_conv_chunked_kernel_gradient`).
  Any other convolution goes to `lax.conv_general_dilated` unchanged. Takes flax's
  `nn.Conv(conv_general_dilated=...)`.
  """
  numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  channels_last = (
    numbers.lhs_spec == (0, lhs.ndim - 1, *range(1, lhs.ndim - 1))
    and numbers.rhs_spec == (rhs.ndim - 1, rhs.ndim - 2, *range(rhs.ndim - 2))
    and numbers.out_spec == numbers.lhs_spec
  )
  plain = (  # Channels-last, ungrouped, undilated.
    channels_last
    and feature_group_count == 1
    and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  )
  no_padding = isinstance(padding, str) or all(tuple(p) == (0, 0) for p in padding)
  pointwise = (  # For a 1x1 kernel 'SAME' and 'VALID' both mean no padding.
    plain
    and no_padding
    and all(k == 1 for k in rhs.shape[:-2])
    and all(s == 1 for s in window_strides)
  )
  if pointwise:
    kernel = rhs.reshape(rhs.shape[-2:])
    return lax.dot_general(lhs, kernel, (((lhs.ndim - 1,), (0,)), ((), ())), precision=precision)
  output_pixels = math.prod(  # Per example, with SAME padding (enough for the threshold).
    -(-d // s) for d, s in zip(lhs.shape[1:-1], window_strides, strict=True)
  )
  chunked_kernel_gradient = (
    chunked_kernel_gradient_enabled()
    and plain
    and lhs.shape[0] > KERNEL_GRADIENT_CHUNK
    and output_pixels >= KERNEL_GRADIENT_MIN_PIXELS
    and output_pixels * rhs.size >= KERNEL_GRADIENT_MIN_MACS
  )
  if chunked_kernel_gradient:
    if not isinstance(padding, str):
      padding = tuple(tuple(p) for p in padding)
    return _conv_chunked_kernel_gradient(
      lhs, rhs, tuple(window_strides), padding, numbers, precision
    )
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    precision=precision,
  )


def _same_padding(
  shape: tuple[int, ...], window: int, stride: int
) -> tuple[int, int, tuple[tuple[int, int], ...]]:
  """Output height and width, and the (-inf) padding of SAME pooling on NHWC `shape`."""
  _, h, w, _ = shape
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + window - h, 0)
  pad_w = max((out_w - 1) * stride + window - w, 0)
  padding = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
  return out_h, out_w, padding


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """SAME max-pooling of NHWC `x` over `window` x `window` with `stride`.

  The same values and gradient as `flax.linen.max_pool` (each output's gradient goes to
  the first maximum of its window, in row-major order), but the gradient is computed as
  one masked add per window offset into its stride phase instead of XLA's
  select-and-scatter, which XLA:CPU runs slowly (benchmarks/README.md,
  `benchmarks.pool_layer`).
  """
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding='SAME')


def _max_pool_forward(x, window, stride):
  y = max_pool(x, window, stride)
  return y, (x, y)


def _max_pool_backward(window, stride, residuals, dy):
  x, y = residuals
  n, h, w, c = x.shape
  out_h, out_w, padding = _same_padding(x.shape, window, stride)
  padded = jnp.pad(x, padding, constant_values=-jnp.inf)
  span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
  # The padded input splits into stride x stride phases (row % stride, column % stride);
  # window offset (i, j) only reaches phase (i % stride, j % stride), shifted by
  # (i // stride, j // stride) on that phase's grid, so each offset adds a dense block.
  phase_h, phase_w = -(-padded.shape[1] // stride), -(-padded.shape[2] // stride)
  routed = jnp.zeros(y.shape, bool)  # Outputs whose gradient already has its input.
  phases = {}
  for i in range(window):
    for j in range(window):
      candidate = lax.slice(
        padded, (0, i, j, 0), (n, i + span_h, j + span_w, c), (1, stride, stride, 1)
      )
      first_max = (candidate == y) & ~routed
      routed = routed | first_max
      row, col = i // stride, j // stride
      block = lax.pad(
        jnp.where(first_max, dy, 0.0),
        jnp.zeros((), dy.dtype),
        ((0, 0, 0), (row, phase_h - row - out_h, 0), (col, phase_w - col - out_w, 0), (0, 0, 0)),
      )
      phase = (i % stride, j % stride)
      phases[phase] = phases[phase] + block if phase in phases else block
  unreached = jnp.zeros((n, phase_h, phase_w, c), dy.dtype)  # Phases no offset reaches.
  interleaved = jnp.stack(
    [
      jnp.stack([phases.get((p, q), unreached) for q in range(stride)], axis=3)
      for p in range(stride)
    ],
    axis=2,
  )  # (n, phase_h, stride, phase_w, stride, c)
  dx = interleaved.reshape(n, phase_h * stride, phase_w * stride, c)
  top, left = padding[1][0], padding[2][0]
  return (dx[:, top : top + h, left : left + w, :],)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)
