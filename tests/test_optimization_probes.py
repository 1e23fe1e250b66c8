"""Santurkar et al.'s probes against hand-derived numpy references: ICS on a two-layer
linear network (closed form), the landscape statistics on a quadratic."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.analysis import optimization_probes as probes


def _two_layer_problem():
  rng = np.random.default_rng(0)
  w1, w2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
  x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
  return w1, w2, x, y


def _linear_loss(params, x, y):
  out = x @ params['dense0']['kernel'] @ params['dense1']['kernel']
  return 0.5 * jnp.sum((out - y) ** 2)


def test_ics_of_a_two_layer_linear_net_equals_the_closed_form():
  w1, w2, x, y = _two_layer_problem()
  lr = 0.01
  # By hand: L = 1/2 ||x W1 W2 - y||^2, r = x W1 W2 - y.
  r = x @ w1 @ w2 - y
  g1 = x.T @ r @ w2.T  # dL/dW1
  g2 = (x @ w1).T @ r  # dL/dW2
  w1_new = w1 - lr * g1
  g2_after = (x @ w1_new).T @ (x @ w1_new @ w2 - y)  # W2's gradient after W1's step.
  params = {'dense0': {'kernel': jnp.asarray(w1)}, 'dense1': {'kernel': jnp.asarray(w2)}}
  out = probes.internal_covariate_shift(
    jax.value_and_grad(functools.partial(_linear_loss, x=x, y=y)),
    params,
    lr,
    ['dense0', 'dense1'],
    ['dense0', 'dense1'],
  )
  expected_l2 = [0.0, np.linalg.norm(g2 - g2_after)]
  cos = np.sum(g2 * g2_after) / (np.linalg.norm(g2) * np.linalg.norm(g2_after))
  np.testing.assert_allclose(out['l2'], expected_l2, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(out['cosine'], [1.0, cos], rtol=1e-5)
  np.testing.assert_allclose(out['gradient_norm'], [np.linalg.norm(g1), np.linalg.norm(g2)], 1e-5)
  assert expected_l2[1] > 1e-3  # The shift is real, so the comparison can fail.


def test_ics_is_jittable_and_the_same_under_jit():
  w1, w2, x, y = _two_layer_problem()
  params = {'dense0': {'kernel': jnp.asarray(w1)}, 'dense1': {'kernel': jnp.asarray(w2)}}
  loss = jax.value_and_grad(functools.partial(_linear_loss, x=x, y=y))
  layers = ('dense0', 'dense1')
  eager = probes.internal_covariate_shift(loss, params, 0.01, layers, layers)
  jitted = jax.jit(probes.internal_covariate_shift, static_argnums=(0, 3, 4))(
    loss, params, 0.01, layers, layers
  )
  np.testing.assert_allclose(jitted['l2'], eager['l2'], rtol=1e-5)


def test_landscape_on_a_quadratic_equals_the_hand_derived_values():
  a = np.diag([1.0, 4.0, 9.0])
  w = np.array([1.0, -1.0, 0.5])
  etas = (0.01, 0.05, 0.1)
  params = {'w': jnp.asarray(w)}
  out = probes.landscape_along_gradient(
    jax.value_and_grad(lambda p: 0.5 * p['w'] @ a @ p['w']), params, etas
  )
  g = a @ w
  losses = [0.5 * (w - e * g) @ a @ (w - e * g) for e in etas]
  # g - g(w - eta g) = eta A g, so the ratio is ||A g|| / ||g|| at every step size.
  np.testing.assert_allclose(out['losses'], losses, rtol=1e-5)
  assert out['loss_variation'] == pytest.approx(max(losses) - min(losses), rel=1e-5)
  assert out['gradient_predictiveness'] == pytest.approx(0.1 * np.linalg.norm(a @ g), rel=1e-5)
  assert out['beta_smoothness'] == pytest.approx(np.linalg.norm(a @ g) / np.linalg.norm(g), 1e-5)
  g_norm = np.linalg.norm(g)
  assert out['gradient_norm'] == pytest.approx(g_norm, rel=1e-5)
  assert out['normalized_loss_variation'] == pytest.approx(
    (max(losses) - min(losses)) / (0.1 * g_norm**2), rel=1e-5
  )
  assert out['relative_gradient_change'] == pytest.approx(
    0.1 * np.linalg.norm(a @ g) / g_norm, rel=1e-5
  )


def _scale_free_loss(params):
  """A loss of W / ||W|| only (as a layer followed by BN): invariant to W's scale."""
  w = params['layer']['kernel']
  u = w / jnp.linalg.norm(w)
  return jnp.sum(jnp.sin(3.0 * u) * jnp.arange(1.0, u.size + 1).reshape(u.shape)) + jnp.sum(
    params['other']['kernel'] ** 2
  )


def test_scale_invariant_beta_on_a_quadratic_and_under_rescaling():
  a = np.diag([1.0, 4.0, 9.0])
  w = np.array([[1.0], [-1.0], [0.5]])
  etas = (0.01, 0.05)
  params = {'layer': {'kernel': jnp.asarray(w)}, 'other': {'kernel': jnp.ones((2,))}}

  def quadratic(p):
    return 0.5 * jnp.sum(p['layer']['kernel'] * (a @ p['layer']['kernel']))

  g = a @ w
  beta = np.linalg.norm(a @ g) / np.linalg.norm(g)  # Exact for a quadratic, every step size.
  out = probes.scale_invariant_beta(jax.value_and_grad(quadratic), params, etas, ['layer'])
  assert out[0] == pytest.approx(beta * np.sum(w**2), rel=1e-5)
  # A loss of W / ||W||: rescaling W leaves beta ||W||^2 unchanged (step sizes scaled by
  # c^2, as the gradient shrinks by c and the distance to move grows by c), while raw beta
  # falls by c^2.
  c = 10.0
  scaled = {**params, 'layer': {'kernel': c * params['layer']['kernel']}}
  scale_free = jax.value_and_grad(_scale_free_loss)
  small = probes.scale_invariant_beta(scale_free, params, etas, ['layer'])
  large = probes.scale_invariant_beta(scale_free, scaled, tuple(e * c**2 for e in etas), ['layer'])
  np.testing.assert_allclose(large, small, rtol=1e-3)
