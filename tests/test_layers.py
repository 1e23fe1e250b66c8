"""BatchNorm against numpy re-derivations, finite differences and flax.linen.BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from bn_repro.nn import xla_cpu
from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.xla_cpu import conv_general_dilated, max_pool
from tests.numpy_bn import bn_backward, bn_forward

EPS = 1e-5


def _inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
  channels = shape[-1]
  gamma = rng.uniform(0.5, 2.0, channels).astype(np.float32)
  beta = rng.normal(size=channels).astype(np.float32)
  return x, gamma, beta


def _apply(layer, x, gamma, beta, stats=None, train=True):
  variables = layer.init(jax.random.key(0), x, use_running_average=False)
  variables = {
    'params': {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)},
    'batch_stats': stats or variables['batch_stats'],
  }
  return layer.apply(variables, x, use_running_average=not train, mutable=['batch_stats'])


@pytest.mark.parametrize('fast_variance', [False, True])
@pytest.mark.parametrize('shape', [(16, 5), (4, 3, 3, 6)])
def test_forward_matches_algorithm_1(shape, fast_variance):
  x, gamma, beta = _inputs(shape)
  y, _ = _apply(BatchNorm(epsilon=EPS, fast_variance=fast_variance), x, gamma, beta)
  expected, *_ = bn_forward(x, gamma, beta, EPS)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fast_variance', [False, True])
@pytest.mark.parametrize('shape', [(16, 5), (4, 3, 3, 6)])
def test_backward_matches_paper_formulas(shape, fast_variance):
  x, gamma, beta = _inputs(shape)
  dl_dy = np.random.default_rng(1).normal(size=shape).astype(np.float32)
  layer = BatchNorm(epsilon=EPS, fast_variance=fast_variance)
  variables = layer.init(jax.random.key(0), x, use_running_average=False)

  def loss(x, scale, bias):
    y, _ = layer.apply(
      {'params': {'scale': scale, 'bias': bias}, 'batch_stats': variables['batch_stats']},
      x,
      use_running_average=False,
      mutable=['batch_stats'],
    )
    return jnp.sum(y * dl_dy)

  grads = jax.grad(loss, argnums=(0, 1, 2))(x, gamma, beta)
  for got, want in zip(grads, bn_backward(dl_dy, x, gamma, EPS), strict=True):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_gradient_matches_finite_differences():
  x, gamma, beta = _inputs((8, 3))
  weights = np.random.default_rng(2).normal(size=x.shape)

  def loss_np(x):  # float64 reference through the numpy forward
    y, *_ = bn_forward(x, gamma, beta, EPS)
    return np.sum(np.tanh(y) * weights)

  layer = BatchNorm(epsilon=EPS)
  stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']
  variables = {'params': {'scale': gamma, 'bias': beta}, 'batch_stats': stats}
  grad = jax.grad(
    lambda x: jnp.sum(
      jnp.tanh(layer.apply(variables, x, use_running_average=False, mutable=['batch_stats'])[0])
      * weights
    )
  )(x)
  h = 1e-4
  for index in [(0, 0), (3, 1), (7, 2), (5, 0)]:
    plus, minus = x.astype(np.float64), x.astype(np.float64)
    plus[index] += h
    minus[index] -= h
    numeric = (loss_np(plus) - loss_np(minus)) / (2 * h)
    np.testing.assert_allclose(grad[index], numeric, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('shape', [(32, 7), (4, 5, 5, 3)])
def test_matches_flax_batchnorm_where_semantics_coincide(shape):
  x, gamma, beta = _inputs(shape)
  ours = BatchNorm(momentum=0.9, epsilon=EPS)
  theirs = nn.BatchNorm(momentum=0.9, epsilon=EPS)
  y_ours, upd_ours = _apply(ours, x, gamma, beta)
  y_theirs, upd_theirs = _apply(theirs, x, gamma, beta)
  np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    upd_ours['batch_stats']['mean'], upd_theirs['batch_stats']['mean'], rtol=1e-6, atol=1e-6
  )

  def grads(layer):
    stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']
    return jax.grad(
      lambda x, s, b: jnp.sum(
        jnp.sin(
          layer.apply(
            {'params': {'scale': s, 'bias': b}, 'batch_stats': stats},
            x,
            use_running_average=False,
            mutable=['batch_stats'],
          )[0]
        )
      ),
      argnums=(0, 1, 2),
    )(x, gamma, beta)

  for g_ours, g_theirs in zip(grads(ours), grads(theirs), strict=True):
    np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
  # Inference with the same stored statistics is the same affine map (Algorithm 2, step 11).
  stats = {'mean': jnp.full(shape[-1], 0.3), 'var': jnp.full(shape[-1], 2.0)}
  y_ours, _ = _apply(ours, x, gamma, beta, stats, train=False)
  y_theirs, _ = _apply(theirs, x, gamma, beta, stats, train=False)
  np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape', [(10, 4), (3, 4, 2, 5)])
def test_running_statistics_store_unbiased_variance(shape):
  """Algorithm 2: Var[x] uses m/(m-1); m counts examples times spatial positions."""
  x, gamma, beta = _inputs(shape)
  momentum = 0.8
  _, updates = _apply(BatchNorm(momentum=momentum, epsilon=EPS), x, gamma, beta)
  _, _, mu, sigma2 = bn_forward(x, gamma, beta, EPS)
  m = x.size // shape[-1]
  np.testing.assert_allclose(
    updates['batch_stats']['mean'], (1 - momentum) * mu, rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    updates['batch_stats']['var'], momentum * 1.0 + (1 - momentum) * sigma2 * m / (m - 1), rtol=1e-5
  )


def test_conv_statistics_are_per_feature_map():
  x, gamma, beta = _inputs((6, 5, 4, 3))
  x[..., 1] = x[..., 1] * 10 + 7  # One feature map on another scale must not leak into others.
  y, _ = _apply(BatchNorm(epsilon=EPS), x, np.ones(3, np.float32), np.zeros(3, np.float32))
  y = np.asarray(y)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
  for c in range(3):
    channel = x[..., c].astype(np.float64)
    np.testing.assert_allclose(
      y[..., c], (channel - channel.mean()) / np.sqrt(channel.var() + EPS), rtol=1e-4, atol=1e-4
    )


def test_scale_invariance_section_3_3():
  """BN((aW)u) = BN(Wu); d/du is unchanged; d/d(aW) = (1/a) d/dW."""
  rng = np.random.default_rng(3)
  u = rng.normal(size=(20, 6)).astype(np.float32)
  w = rng.normal(size=(6, 4)).astype(np.float32)
  upstream = rng.normal(size=(20, 4)).astype(np.float32)
  a = 7.5
  layer = BatchNorm(epsilon=0.0)  # eps = 0 makes the invariance exact.
  variables = layer.init(jax.random.key(0), u @ w, use_running_average=False)

  def loss(w, u):
    y, _ = layer.apply(variables, u @ w, use_running_average=False, mutable=['batch_stats'])
    return jnp.sum(y * upstream), y

  (_, y1), (gw1, gu1) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(w, u)
  (_, ya), (gwa, gua) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(a * w, u)
  np.testing.assert_allclose(ya, y1, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(gua, gu1, rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(gwa, gw1 / a, rtol=1e-3, atol=1e-6)


def test_group_size_normalizes_each_group_separately():
  x, gamma, beta = _inputs((12, 2, 2, 3))
  momentum = 0.5
  y, updates = _apply(BatchNorm(group_size=4, momentum=momentum, epsilon=EPS), x, gamma, beta)
  groups = [bn_forward(x[i : i + 4], gamma, beta, EPS) for i in range(0, 12, 4)]
  np.testing.assert_allclose(y, np.concatenate([g[0] for g in groups]), rtol=1e-4, atol=1e-4)
  m = 4 * 2 * 2
  np.testing.assert_allclose(
    updates['batch_stats']['mean'],
    (1 - momentum) * np.mean([g[2] for g in groups], axis=0),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    updates['batch_stats']['var'],
    momentum + (1 - momentum) * np.mean([g[3] for g in groups], axis=0) * m / (m - 1),
    rtol=1e-5,
  )


def test_group_size_must_divide_batch():
  x, gamma, beta = _inputs((10, 3))
  with pytest.raises(ValueError, match='group_size=4 does not divide the local batch of 10'):
    _apply(BatchNorm(group_size=4), x, gamma, beta)


def test_statistics_in_float32_for_bfloat16_input():
  x, gamma, beta = _inputs((64, 4))
  x = x + 1000.0  # A large mean makes bfloat16 statistics visibly wrong.
  y, updates = _apply(BatchNorm(epsilon=EPS), jnp.asarray(x, jnp.bfloat16), gamma, beta)
  assert y.dtype == jnp.bfloat16
  assert updates['batch_stats']['mean'].dtype == jnp.float32
  expected, *_ = bn_forward(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), gamma, beta, EPS)
  np.testing.assert_allclose(
    np.asarray(y, np.float32), expected, atol=0.05 * np.abs(expected).max()
  )
  # The statistics themselves, with momentum 0 (the stored ones are this batch's): equal to
  # float64 statistics of the same bfloat16 values to float32 precision. Computed in
  # bfloat16 (8 bits of mantissa at a mean of 1000) the variance would be off by far more.
  _, updates = _apply(
    BatchNorm(epsilon=EPS, momentum=0.0), jnp.asarray(x, jnp.bfloat16), gamma, beta
  )
  values = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64)
  np.testing.assert_allclose(updates['batch_stats']['mean'], values.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(updates['batch_stats']['var'], values.var(axis=0, ddof=1), rtol=1e-3)


def _sharded_bn(layer, x, gamma, beta, num_devices):
  """Applies `layer` under shard_map over `num_devices` devices on the axis 'batch'."""
  mesh = jax.make_mesh(
    (num_devices,),
    ('batch',),
    devices=jax.devices()[:num_devices],
    axis_types=(jax.sharding.AxisType.Explicit,),
  )
  stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']
  variables = {'params': {'scale': gamma, 'bias': beta}, 'batch_stats': stats}

  def apply(variables, x):
    return layer.apply(variables, x, use_running_average=False, mutable=['batch_stats'])

  fn = jax.jit(
    jax.shard_map(apply, mesh=mesh, in_specs=(P(), P('batch')), out_specs=(P('batch'), P()))
  )
  x = jax.device_put(x, jax.sharding.NamedSharding(mesh, P('batch')))
  return fn(variables, x)


@pytest.mark.parametrize('fast_variance', [False, True])
def test_synchronized_statistics_equal_whole_batch_statistics(fast_variance):
  """group_size=None with axis_name: the global batch, whatever the device count."""
  x, gamma, beta = _inputs((32, 2, 2, 3))
  layer = BatchNorm(axis_name='batch', momentum=0.9, epsilon=EPS, fast_variance=fast_variance)
  y1, stats1 = _apply(BatchNorm(momentum=0.9, epsilon=EPS), x, gamma, beta)
  y8, stats8 = _sharded_bn(layer, x, gamma, beta, 8)
  np.testing.assert_allclose(y8, y1, rtol=1e-4, atol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stats8, stats1)


def test_group_statistics_do_not_depend_on_device_count():
  x, gamma, beta = _inputs((32, 3))
  layer = BatchNorm(axis_name='batch', group_size=4, momentum=0.9, epsilon=EPS)
  y1, stats1 = _sharded_bn(layer, x, gamma, beta, 1)
  for devices in (2, 8):
    y, stats = _sharded_bn(layer, x, gamma, beta, devices)
    np.testing.assert_allclose(y, y1, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stats, stats1)


class _BiasThenBN(nn.Module):
  """The paper's Sec. 2 example: x = u + b, then mean subtraction xhat = x - E[x]."""

  stop_gradient: str

  @nn.compact
  def __call__(self, u):
    b = self.param('b', nn.initializers.zeros, (u.shape[-1],))
    return BatchNorm(
      mean_only=True, use_scale=False, use_bias=False, stop_gradient=self.stop_gradient
    )(u + b, use_running_average=False)


def test_section_2_bias_grows_without_bound_when_the_mean_is_outside_the_gradient():
  rng = np.random.default_rng(5)
  u = rng.normal(size=(16, 3)).astype(np.float32)
  target = rng.normal(size=(16, 3)).astype(np.float32)

  def run(stop_gradient, steps=20, lr=0.1):
    model = _BiasThenBN(stop_gradient)
    variables = model.init(jax.random.key(0), u)

    def loss_fn(params):
      y, _ = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']}, u, mutable=['batch_stats']
      )
      return jnp.mean((y - target) ** 2)

    params, losses, norms = variables['params'], [], []
    for _ in range(steps):
      loss, grads = jax.value_and_grad(loss_fn)(params)
      params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
      losses.append(float(loss))
      norms.append(float(jnp.linalg.norm(params['b'])))
    return np.array(losses), np.array(norms)

  losses, norms = run('mean')
  # The update never changes the output (b cancels in x - E[x]) ...
  np.testing.assert_allclose(losses, losses[0], rtol=1e-5)
  # ... but b moves by the same nonzero step each time: ||b|| grows linearly, without bound.
  np.testing.assert_allclose(np.diff(norms), norms[0], rtol=1e-3)
  assert norms[0] > 0
  losses, norms = run('none')  # Statistics inside the gradient: b gets no gradient at all.
  np.testing.assert_allclose(norms, 0.0, atol=1e-6)


def test_stopped_statistics_give_the_naive_gradient():
  """With mean and variance constant, dl/dx = dl/dy * gamma / sqrt(sigma2 + eps)."""
  x, gamma, beta = _inputs((12, 4))
  dl_dy = np.random.default_rng(6).normal(size=x.shape).astype(np.float32)
  layer = BatchNorm(epsilon=EPS, stop_gradient='mean_and_variance')
  stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']
  grad = jax.grad(
    lambda x: jnp.sum(
      layer.apply(
        {'params': {'scale': gamma, 'bias': beta}, 'batch_stats': stats},
        x,
        use_running_average=False,
        mutable=['batch_stats'],
      )[0]
      * dl_dy
    )
  )(x)
  _, _, _, sigma2 = bn_forward(x, gamma, beta, EPS)
  np.testing.assert_allclose(grad, dl_dy * gamma / np.sqrt(sigma2 + EPS), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="stop_gradient='variance'; expected one of"):
    _apply(BatchNorm(stop_gradient='variance'), x, gamma, beta)


@pytest.mark.parametrize('stop_gradient', ['none', 'mean', 'mean_and_variance'])
def test_fast_variance_has_the_two_pass_gradients(stop_gradient):
  """E[x^2] - E[x]^2 (one pass) and Algorithm 1's two passes: same values and gradients."""
  x, gamma, beta = _inputs((24, 2, 2, 3))
  x = x + 3.0  # A mean of a few standard deviations: still well within float32 precision.
  dl_dy = np.random.default_rng(7).normal(size=x.shape).astype(np.float32)

  def grads(fast_variance):
    layer = BatchNorm(epsilon=EPS, stop_gradient=stop_gradient, fast_variance=fast_variance)
    stats = layer.init(jax.random.key(0), x, use_running_average=False)['batch_stats']

    def loss(x, scale, bias):
      y, _ = layer.apply(
        {'params': {'scale': scale, 'bias': bias}, 'batch_stats': stats},
        x,
        use_running_average=False,
        mutable=['batch_stats'],
      )
      return jnp.sum(y * dl_dy)

    return jax.grad(loss, argnums=(0, 1, 2))(x, gamma, beta)

  for fast, two_pass in zip(grads(True), grads(False), strict=True):
    np.testing.assert_allclose(fast, two_pass, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
  'kernel, stride, padding',
  [(1, 1, 'SAME'), (3, 1, 'SAME'), (1, 2, 'SAME'), (3, 2, 'SAME'), (1, 1, 'VALID'), (1, 1, 1)],
)
def test_pointwise_convolutions_as_matmuls_equal_lax_convolutions(kernel, stride, padding):
  """xla_cpu.conv_general_dilated (1x1 as a dot) against lax.conv_general_dilated, with grads;
  an explicitly padded 1x1 convolution (output 11x11 from 9x9) is lax's too."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 5)).astype(np.float32))
  reference = nn.Conv(4, (kernel, kernel), strides=stride, padding=padding)
  ours = reference.clone(conv_general_dilated=conv_general_dilated)
  variables = reference.init(jax.random.key(0), x)

  def loss(module):
    return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

  np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)
  got = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got, want)


@pytest.mark.parametrize('dimension_numbers', [None, ('NCHW', 'OIHW', 'NCHW')])
def test_channels_first_convolutions_are_left_to_lax(dimension_numbers):
  """Without channels-last dimension numbers (lax's default is NCHW), a 1x1 convolution is
  not rewritten as a channels-last matmul: the result equals lax's."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(6, 5, 9, 9)).astype(np.float32))
  w = jnp.asarray(rng.normal(size=(4, 5, 1, 1)).astype(np.float32))
  got = conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dimension_numbers)
  want = lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dimension_numbers)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('batch, kernel, stride', [(10, 3, 1), (9, 7, 2), (8, 3, 1)])
def test_chunked_kernel_gradient_equals_lax_convolution_gradient(
  batch, kernel, stride, monkeypatch
):
  """On CPU, large convolutions (here: any over >= 14x14 outputs) sum their kernel
  gradient over chunks of KERNEL_GRADIENT_CHUNK examples (a remainder chunk for 10 and 9):
  the same values and gradients as flax's lax convolution, also under shard_map with the
  kernel replicated and the batch split over 2 devices, as in training (5 examples per
  device: chunked; 4: not)."""
  assert xla_cpu.KERNEL_GRADIENT_CHUNK == 4 and jax.default_backend() == 'cpu'
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, 14 * stride, 15 * stride, 3)).astype(np.float32))
  reference = nn.Conv(5, (kernel, kernel), strides=stride, padding='SAME')
  ours = reference.clone(conv_general_dilated=conv_general_dilated)
  variables = reference.init(jax.random.key(0), x)

  def loss(module):
    return lambda variables, x: jnp.sum(jnp.sin(module.apply(variables, x)))

  # At the default threshold this small convolution is not chunked; without one it is.
  assert 'custom_vjp_call' not in str(jax.make_jaxpr(loss(ours))(variables, x))
  monkeypatch.setattr(xla_cpu, 'KERNEL_GRADIENT_MIN_MACS', 0)
  assert 'custom_vjp_call' in str(jax.make_jaxpr(loss(ours))(variables, x))
  want = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(variables, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4), got, want)
  if batch % 2:
    return
  mesh = jax.make_mesh((2,), ('batch',), devices=jax.devices()[:2])

  def per_device(variables, x):
    return jax.grad(lambda v: lax.psum(loss(ours)(v, x), 'batch'))(variables)

  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('batch')), out_specs=P())
  x_sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, P('batch')))
  got_sharded = jax.jit(sharded)(variables, x_sharded)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4), got_sharded, want[0]
  )


@pytest.mark.parametrize('shape, stride', [((3, 9, 9, 2), 2), ((3, 8, 8, 2), 2), ((2, 7, 6, 3), 1)])
def test_max_pool_matches_flax_values_and_gradients(shape, stride):
  """xla_cpu.max_pool's custom gradient routes to the first maximum, as flax's does."""
  rng = np.random.default_rng(0)
  # Rounded values make ties, where the routing rule matters.
  x = jnp.asarray(np.round(rng.normal(size=shape), 1).astype(np.float32))
  r = jnp.asarray(
    rng.normal(size=(shape[0], -(-shape[1] // stride), -(-shape[2] // stride), shape[3]))
  )

  def flax_pool(x):
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding='SAME')

  np.testing.assert_array_equal(max_pool(x, 3, stride), flax_pool(x))
  got = jax.grad(lambda x: jnp.sum(max_pool(x, 3, stride) * r))(x)
  want = jax.grad(lambda x: jnp.sum(flax_pool(x) * r))(x)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
