"""The normalization family against the libraries people use: GroupNorm, LayerNorm and
InstanceNorm against flax and torch, and BatchNorm's library presets against torch, flax and
Keras (3, and tf-keras) over 50 identical batches (reference libraries:
requirements-test.txt)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bn_repro.nn import normalization as norm_lib
from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.group_norm import GroupNorm
from bn_repro.nn.presets import BN_PRESETS, bn_preset

EPS = 1e-5
SHAPE = (4, 5, 3, 8)  # (N, H, W, C)


def _inputs(seed=0, shape=SHAPE):
  rng = np.random.default_rng(seed)
  x = rng.normal(loc=1.5, scale=2.0, size=shape).astype(np.float32)
  upstream = rng.normal(size=shape).astype(np.float32)  # dL/dy of L = sum(y * upstream).
  scale = rng.normal(loc=1.0, scale=0.3, size=shape[-1]).astype(np.float32)
  bias = rng.normal(scale=0.3, size=shape[-1]).astype(np.float32)
  return x, upstream, scale, bias


def _ours(layer, x, upstream, scale, bias):
  """Output and the gradients of sum(y * upstream) w.r.t. x, gamma, beta."""

  def loss(x, params):
    y = layer.apply({'params': params}, x)
    return jnp.sum(y * upstream), y

  params = {'scale': jnp.asarray(scale), 'bias': jnp.asarray(bias)}
  (_, y), (dx, dparams) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)
  return y, dx, dparams['scale'], dparams['bias']


def _torch(module, x, upstream, scale, bias, affine_shape):
  """The same for a torch module on NCHW, its affine set from the per-channel gamma, beta."""
  with torch.no_grad():
    module.weight.copy_(torch.from_numpy(np.broadcast_to(scale, affine_shape).copy()))
    module.bias.copy_(torch.from_numpy(np.broadcast_to(bias, affine_shape).copy()))
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
  y = module(xt)
  (y * torch.from_numpy(upstream.transpose(0, 3, 1, 2).copy())).sum().backward()
  to_nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)  # noqa: E731
  # A per-element affine's gradient, summed over positions, is the per-channel one.
  per_channel = lambda g: g.detach().numpy().reshape(-1, SHAPE[-1]).sum(0)  # noqa: E731
  if affine_shape != (SHAPE[-1],):  # LayerNorm's (C, H, W) affine, NCHW order.
    per_channel = lambda g: g.detach().numpy().sum((1, 2))  # noqa: E731
  dscale, dbias = per_channel(module.weight.grad), per_channel(module.bias.grad)
  return to_nhwc(y), to_nhwc(xt.grad), dscale, dbias


def _assert_all_close(ours, theirs, atol=2e-5):
  for name, a, b in zip(('y', 'dL/dx', 'dL/dgamma', 'dL/dbeta'), ours, theirs, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol, err_msg=name)


@pytest.mark.parametrize('num_groups', [1, 2, 4, 8])
def test_group_norm_equals_flax_and_torch(num_groups):
  inputs = _inputs(num_groups)
  ours = _ours(GroupNorm(num_groups=num_groups, epsilon=EPS), *inputs)
  flax_layer = nn.GroupNorm(num_groups=num_groups, epsilon=EPS)
  _assert_all_close(ours, _ours(flax_layer, *inputs))
  torch_layer = torch.nn.GroupNorm(num_groups, SHAPE[-1], eps=EPS)
  _assert_all_close(ours, _torch(torch_layer, *inputs, affine_shape=(SHAPE[-1],)))


def test_layer_norm_is_group_norm_with_one_group_and_equals_flax_and_torch():
  inputs = _inputs(1)
  layer_norm = norm_lib.make_norm(
    {'kind': 'layer', 'epsilon': EPS, 'num_groups': 4}, batch_statistics=True, axis_name=None
  )()
  assert layer_norm.num_groups == 1  # The config's num_groups is GroupNorm's alone.
  ours = _ours(layer_norm, *inputs)
  _assert_all_close(ours, _ours(GroupNorm(num_groups=1, epsilon=EPS), *inputs))
  flax_layer = nn.LayerNorm(epsilon=EPS, reduction_axes=(1, 2, 3), feature_axes=-1)
  _assert_all_close(ours, _ours(flax_layer, *inputs))
  torch_layer = torch.nn.LayerNorm((SHAPE[3], SHAPE[1], SHAPE[2]), eps=EPS)
  affine_shape = (SHAPE[3], SHAPE[1], SHAPE[2])
  scale, bias = inputs[2][:, None, None], inputs[3][:, None, None]
  _assert_all_close(
    ours, _torch(torch_layer, inputs[0], inputs[1], scale, bias, affine_shape=affine_shape)
  )


def test_instance_norm_is_group_norm_with_a_group_per_channel_and_equals_flax_and_torch():
  inputs = _inputs(2)
  instance_norm = norm_lib.make_norm(
    {'kind': 'instance', 'epsilon': EPS}, batch_statistics=True, axis_name=None
  )()
  ours = _ours(instance_norm, *inputs)
  _assert_all_close(ours, _ours(GroupNorm(num_groups=SHAPE[-1], epsilon=EPS), *inputs))
  _assert_all_close(ours, _ours(nn.InstanceNorm(epsilon=EPS), *inputs))
  torch_layer = torch.nn.InstanceNorm2d(SHAPE[-1], eps=EPS, affine=True)
  _assert_all_close(ours, _torch(torch_layer, *inputs, affine_shape=(SHAPE[-1],)))


def test_group_norm_statistics_ignore_the_rest_of_the_batch():
  """Per-example statistics: an example's output does not move when the others change."""
  x, _, _, _ = _inputs(3)
  layer = GroupNorm(num_groups=2)
  variables = layer.init(jax.random.key(0), x)
  other = x.copy()
  other[1:] = other[1:] * 7.0 + 3.0
  np.testing.assert_allclose(
    layer.apply(variables, x)[0], layer.apply(variables, other)[0], rtol=1e-6
  )


def test_group_norm_refuses_groups_that_do_not_divide_the_channels_or_cover_one_value():
  x = np.zeros((2, 6), np.float32)
  with pytest.raises(ValueError, match='num_groups=4 does not divide the 6 channels'):
    GroupNorm(num_groups=4).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='InstanceNorm needs them'):
    GroupNorm(num_groups=None).init(jax.random.key(0), x)


# --- BatchNorm presets: each library's layer over 50 identical batches. ---

NUM_BATCHES = 50
BN_SHAPE = (6, 3, 2, 4)  # (N, H, W, C): 36 values per statistic.


def _batches():
  rng = np.random.default_rng(7)
  # Statistics that drift from batch to batch, so the running averages' conventions matter.
  return [
    rng.normal(loc=2.0 + 0.05 * i, scale=3.0, size=BN_SHAPE).astype(np.float32)
    for i in range(NUM_BATCHES)
  ]


def _our_batch_norm_run(preset, batches, gamma, beta):
  """Training outputs of every batch, then the running mean, variance and an eval output."""
  layer = BatchNorm(**bn_preset(preset))
  variables = {
    'params': {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)},
    'batch_stats': layer.init(jax.random.key(0), batches[0], use_running_average=False)[
      'batch_stats'
    ],
  }
  train_step = jax.jit(
    lambda v, x: layer.apply(v, x, use_running_average=False, mutable=['batch_stats'])
  )
  outputs = []
  for x in batches:
    y, updates = train_step(variables, x)
    variables = {**variables, **updates}
    outputs.append(np.asarray(y))
  stats = variables['batch_stats']
  evaluated = layer.apply(variables, batches[0], use_running_average=True)
  return outputs, np.asarray(stats['mean']), np.asarray(stats['var']), np.asarray(evaluated)


def _torch_batch_norm_run(batches, gamma, beta):
  layer = torch.nn.BatchNorm2d(BN_SHAPE[-1])  # torch's defaults: momentum 0.1, eps 1e-5.
  with torch.no_grad():
    layer.weight.copy_(torch.from_numpy(gamma))
    layer.bias.copy_(torch.from_numpy(beta))
  to_nchw = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # noqa: E731
  layer.train()
  with torch.no_grad():
    outputs = [layer(to_nchw(x)).numpy().transpose(0, 2, 3, 1) for x in batches]
    layer.eval()
    evaluated = layer(to_nchw(batches[0])).numpy().transpose(0, 2, 3, 1)
  return outputs, layer.running_mean.numpy(), layer.running_var.numpy(), evaluated


def _flax_batch_norm_run(batches, gamma, beta):
  layer = nn.BatchNorm()  # flax's defaults: momentum 0.99, eps 1e-5, fast variance.
  variables = layer.init(jax.random.key(0), batches[0], use_running_average=False)
  variables = {**variables, 'params': {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)}}
  outputs = []
  for x in batches:
    y, updates = layer.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
    variables = {**variables, **updates}
    outputs.append(np.asarray(y))
  stats = variables['batch_stats']
  evaluated = layer.apply(variables, batches[0], use_running_average=True)
  return outputs, np.asarray(stats['mean']), np.asarray(stats['var']), np.asarray(evaluated)


def _keras_batch_norm_run(batches, gamma, beta, layer=None):
  """Keras 3's layer by default (its defaults: momentum 0.99, eps 1e-3)."""
  if layer is None:
    import keras

    layer = keras.layers.BatchNormalization()
  layer.build(BN_SHAPE)
  layer.gamma.assign(gamma)
  layer.beta.assign(beta)
  outputs = [layer(x, training=True).numpy() for x in batches]
  evaluated = layer(batches[0], training=False).numpy()
  return outputs, layer.moving_mean.numpy(), layer.moving_variance.numpy(), evaluated


LIBRARY_RUNS = {
  'torch': _torch_batch_norm_run,
  'flax': _flax_batch_norm_run,
  'keras': _keras_batch_norm_run,
}


def _assert_runs_equal(ours, theirs, rtol):
  outputs, mean, var, evaluated = ours
  for i, (a, b) in enumerate(zip(outputs, theirs[0], strict=True)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f'training output {i}')
  np.testing.assert_allclose(mean, theirs[1], rtol=rtol, err_msg='running mean')
  np.testing.assert_allclose(var, theirs[2], rtol=rtol, err_msg='running variance')
  np.testing.assert_allclose(evaluated, theirs[3], rtol=rtol, atol=rtol, err_msg='eval output')


@pytest.mark.parametrize('library', sorted(LIBRARY_RUNS))
def test_batch_norm_preset_equals_that_library_over_50_batches(library):
  batches = _batches()
  rng = np.random.default_rng(1)
  gamma = rng.normal(1.0, 0.3, BN_SHAPE[-1]).astype(np.float32)
  beta = rng.normal(0.0, 0.3, BN_SHAPE[-1]).astype(np.float32)
  theirs = LIBRARY_RUNS[library](batches, gamma, beta)
  _assert_runs_equal(_our_batch_norm_run(library, batches, gamma, beta), theirs, rtol=1e-4)
  # Another library's conventions do not pass for this one: the presets are what matters.
  other = 'keras' if library == 'torch' else 'torch'
  with pytest.raises(AssertionError):
    _assert_runs_equal(_our_batch_norm_run(other, batches, gamma, beta), theirs, rtol=1e-4)


def test_tf_keras_running_variance_depends_on_its_fused_kernel():
  """tf-keras's non-fused layer averages the biased variance, as Keras 3 (the `keras`
  preset); its fused kernel, its default for 4-D inputs, averages the unbiased one."""
  import tf_keras

  batches = _batches()
  gamma, beta = np.ones(BN_SHAPE[-1], np.float32), np.zeros(BN_SHAPE[-1], np.float32)
  non_fused = tf_keras.layers.BatchNormalization(fused=False)
  ours = _our_batch_norm_run('keras', batches, gamma, beta)
  _assert_runs_equal(ours, _keras_batch_norm_run(batches, gamma, beta, non_fused), rtol=1e-4)
  fused = _keras_batch_norm_run(batches, gamma, beta, tf_keras.layers.BatchNormalization())
  unbiased = dict(BN_PRESETS['keras'], running_variance='unbiased')
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(BN_PRESETS, 'keras', unbiased)
    _assert_runs_equal(_our_batch_norm_run('keras', batches, gamma, beta), fused, rtol=1e-4)


def test_paper_preset_is_the_configs_default():
  from configs import common

  norm = common.norm_config('batch', None)
  assert {key: norm[key] for key in BN_PRESETS['paper']} == dict(BN_PRESETS['paper'])


# --- FrozenBN: BN until a step, then inference's normalization with frozen statistics. ---


@pytest.mark.parametrize('freeze_affine', [False, True])
def test_frozen_batch_norm_is_bn_before_its_step_and_inference_after(freeze_affine):
  batches = _batches()[:6]
  gamma, beta = np.full(BN_SHAPE[-1], 1.5, np.float32), np.full(BN_SHAPE[-1], 0.2, np.float32)
  frozen = BatchNorm(momentum=0.9, freeze_from=3, freeze_affine=freeze_affine)
  plain = BatchNorm(momentum=0.9)
  upstream = np.random.default_rng(0).normal(size=BN_SHAPE).astype(np.float32)

  def run(layer):
    stats = layer.init(jax.random.key(0), batches[0], use_running_average=False)['batch_stats']
    params = {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)}
    out = []
    for x in batches:

      def loss(params, x=x, stats=stats):
        y, updates = layer.apply(
          {'params': params, 'batch_stats': stats},
          x,
          use_running_average=False,
          mutable=['batch_stats'],
        )
        return jnp.sum(y * upstream), (y, updates['batch_stats'])

      (_, (y, new_stats)), grads = jax.value_and_grad(loss, has_aux=True)(params)
      out.append((np.asarray(y), stats, new_stats, grads))
      stats = new_stats
    return out

  frozen_run, plain_run = run(frozen), run(plain)
  for i in range(3):  # Steps 0-2: BN, its statistics updating.
    np.testing.assert_allclose(frozen_run[i][0], plain_run[i][0], rtol=1e-6)
    np.testing.assert_allclose(frozen_run[i][2]['mean'], plain_run[i][2]['mean'], rtol=1e-6)
  for y, before, after, grads in frozen_run[3:]:  # From step 3: frozen.
    np.testing.assert_array_equal(after['mean'], before['mean'])
    np.testing.assert_array_equal(after['var'], before['var'])
    x = batches[int(before['step'])]
    expected = (x - before['mean']) / np.sqrt(before['var'] + 1e-5) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert (np.abs(grads['scale']).max() == 0.0) == freeze_affine
  assert int(frozen_run[-1][2]['step']) == len(batches)
