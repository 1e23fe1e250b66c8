"""Batch Renormalization against tf-keras 2.21's layer, a numpy re-derivation of Ioffe 2017's
Algorithm 1, and BN (its rmax = 1, dmax = 0 case)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.batch_renorm import BatchRenorm, clipping_at, renorm_schedule

SHAPE = (8, 3, 2, 4)  # (N, H, W, C)
NUM_BATCHES = 20


def _batches():
  """Batches whose location and scale jump, so r and d hit their clipping bounds."""
  rng = np.random.default_rng(3)
  scales = np.where(np.arange(NUM_BATCHES) % 5 == 4, 12.0, 1.0 + 0.2 * np.arange(NUM_BATCHES))
  return [
    rng.normal(loc=(-1) ** i * 4.0, scale=scales[i], size=SHAPE).astype(np.float32)
    for i in range(NUM_BATCHES)
  ]


def _affine():
  rng = np.random.default_rng(4)
  gamma = rng.normal(1.0, 0.3, SHAPE[-1]).astype(np.float32)
  return gamma, rng.normal(0.0, 0.3, SHAPE[-1]).astype(np.float32)


def _upstream(i):
  return np.random.default_rng(100 + i).normal(size=SHAPE).astype(np.float32)


def _our_run(layer, batches):
  """Per batch: the output and the gradients of sum(y * upstream) w.r.t. x, gamma and beta;
  then the final batch_stats and an inference output."""
  gamma, beta = _affine()
  stats = layer.init(jax.random.key(0), batches[0], use_running_average=False)['batch_stats']
  params = {'scale': jnp.asarray(gamma), 'bias': jnp.asarray(beta)}

  @jax.jit
  def step(stats, x, upstream):
    def loss(x, params):
      y, updates = layer.apply(
        {'params': params, 'batch_stats': stats},
        x,
        use_running_average=False,
        mutable=['batch_stats'],
      )
      return jnp.sum(y * upstream), (y, updates['batch_stats'])

    (_, (y, stats)), (dx, dparams) = jax.value_and_grad(loss, (0, 1), has_aux=True)(x, params)
    return stats, (y, dx, dparams['scale'], dparams['bias'])

  per_batch = []
  for i, x in enumerate(batches):
    stats, results = step(stats, x, _upstream(i))
    per_batch.append([np.asarray(a) for a in results])
  evaluated = layer.apply(
    {'params': params, 'batch_stats': stats}, batches[0], use_running_average=True
  )
  return per_batch, jax.tree.map(np.asarray, stats), np.asarray(evaluated)


def _keras_run(batches, **kwargs):
  import tensorflow as tf
  import tf_keras

  gamma, beta = _affine()
  layer = tf_keras.layers.BatchNormalization(renorm=True, **kwargs)
  layer.build(SHAPE)
  layer.gamma.assign(gamma)
  layer.beta.assign(beta)
  per_batch = []
  for i, x in enumerate(batches):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(y * _upstream(i))
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    per_batch.append([a.numpy() for a in (y, dx, dgamma, dbeta)])
  return per_batch, layer, layer(batches[0], training=False).numpy()


def test_equals_tf_keras_renorm_outputs_gradients_and_moving_statistics():
  batches = _batches()
  rmax, dmax, eps = 1.5, 0.5, 1e-3
  keras_per_batch, keras_layer, keras_eval = _keras_run(
    batches,
    renorm_clipping={'rmax': rmax, 'rmin': 1 / rmax, 'dmax': dmax},
    renorm_momentum=0.9,
    momentum=0.95,
    epsilon=eps,
  )
  layer = BatchRenorm(momentum=0.95, renorm_momentum=0.9, epsilon=eps, rmax=rmax, dmax=dmax)
  per_batch, stats, evaluated = _our_run(layer, batches)
  names = ('y', 'dL/dx', 'dL/dgamma', 'dL/dbeta')
  for i, (ours, theirs) in enumerate(zip(per_batch, keras_per_batch, strict=True)):
    for name, a, b in zip(names, ours, theirs, strict=True):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4, err_msg=f'batch {i}: {name}')
  for ours_name, keras_variable in (
    ('mean', keras_layer.moving_mean),
    ('std', keras_layer.moving_stddev),
    ('renorm_mean', keras_layer.renorm_mean),
    ('renorm_std', keras_layer.renorm_stddev),
  ):
    np.testing.assert_allclose(stats[ours_name], keras_variable.numpy(), rtol=1e-5)
  np.testing.assert_allclose(evaluated, keras_eval, rtol=1e-4, atol=1e-4)
  assert int(stats['step']) == NUM_BATCHES
  # The batches were chosen so that the clipping binds: without it the outputs differ.
  unclipped, _, _ = _our_run(layer.clone(rmax=1e6, dmax=1e6), batches)
  assert max(np.abs(u[0] - o[0]).max() for u, o in zip(unclipped, per_batch, strict=True)) > 0.1


def _numpy_algorithm_1(batches, gamma, beta, rmax, dmax, momentum, eps):
  """Ioffe 2017, Algorithm 1, in float64: outputs and the final mu, sigma."""
  mu, sigma = np.zeros(SHAPE[-1]), np.ones(SHAPE[-1])
  outputs = []
  for x in batches:
    x = x.astype(np.float64).reshape(-1, SHAPE[-1])
    mu_b, sigma_b = x.mean(0), np.sqrt(x.var(0) + eps)
    r = np.clip(sigma_b / sigma, 1 / rmax, rmax)
    d = np.clip((mu_b - mu) / sigma, -dmax, dmax)
    outputs.append((((x - mu_b) / sigma_b * r + d) * gamma + beta).reshape(SHAPE))
    mu, sigma = mu + (1 - momentum) * (mu_b - mu), sigma + (1 - momentum) * (sigma_b - sigma)
  return outputs, mu, sigma


def test_paper_form_equals_algorithm_1_in_numpy():
  batches = _batches()
  gamma, beta = _affine()
  layer = BatchRenorm(momentum=0.9, epsilon=1e-5, rmax=2.0, dmax=1.0)
  per_batch, stats, evaluated = _our_run(layer, batches)
  outputs, mu, sigma = _numpy_algorithm_1(batches, gamma, beta, 2.0, 1.0, 0.9, 1e-5)
  for i, (ours, expected) in enumerate(zip(per_batch, outputs, strict=True)):
    np.testing.assert_allclose(ours[0], expected, rtol=1e-4, atol=1e-4, err_msg=f'batch {i}')
  np.testing.assert_allclose(stats['mean'], mu, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(stats['std'], sigma, rtol=1e-5)
  assert set(stats) == {'mean', 'std', 'step'}  # One pair of averages, as the paper.
  np.testing.assert_allclose(evaluated, (batches[0] - mu) / sigma * gamma + beta, rtol=1e-4)


def test_with_rmax_1_and_dmax_0_it_is_batch_norm():
  """Outputs and gradients: r = 1, d = 0 leave BN's Algorithm 1 (the schedule's warmup)."""
  batches = _batches()[:5]
  renorm, _, _ = _our_run(BatchRenorm(rmax=1.0, dmax=0.0), batches)
  batch_norm, _, _ = _our_run(BatchNorm(), batches)
  for ours, theirs in zip(renorm, batch_norm, strict=True):
    for a, b in zip(ours, theirs, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_schedule_relaxes_the_clipping_with_the_layers_own_step_count():
  kwargs = {'rmax': 3.0, 'dmax': 5.0, 'warmup_steps': 10, 'rmax_ramp_steps': 20}
  rmax, dmax = clipping_at(jnp.asarray([0, 9, 10, 20, 30, 40]), dmax_ramp_steps=0, **kwargs)
  np.testing.assert_allclose(rmax, [1, 1, 1, 2, 3, 3])
  np.testing.assert_allclose(dmax, [0, 0, 5, 5, 5, 5])
  # Scaled to a run of 80k steps, the schedule is the paper's: 5k, then 40k and 25k.
  assert renorm_schedule(80_000) == {
    'renorm_warmup_steps': 5_000,
    'rmax_ramp_steps': 35_000,
    'dmax_ramp_steps': 20_000,
  }
  # In the layer: BN for the first 3 training steps, then renormalization.
  batches = _batches()[:5]
  scheduled, _, _ = _our_run(BatchRenorm(rmax=1.5, dmax=0.5, renorm_warmup_steps=3), batches)
  batch_norm, _, _ = _our_run(BatchNorm(), batches)
  for i in range(3):
    np.testing.assert_allclose(scheduled[i][0], batch_norm[i][0], rtol=1e-4, atol=1e-4)
  assert np.abs(scheduled[3][0] - batch_norm[3][0]).max() > 0.1


@pytest.mark.parametrize('use_scale, use_bias', [(False, True), (True, False)])
def test_affine_parameters_are_optional(use_scale, use_bias):
  layer = BatchRenorm(use_scale=use_scale, use_bias=use_bias)
  params = layer.init(jax.random.key(0), _batches()[0], use_running_average=False)['params']
  assert set(params) == {name for name, kept in (('scale', use_scale), ('bias', use_bias)) if kept}
