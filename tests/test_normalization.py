"""The models' normalization choices against a numpy forward pass of their formulas."""

import jax
import numpy as np
import pytest

from bn_repro.models.mlp import MLP

EPS = 1e-5


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _batch_norm(x, p, mean_only):
  """Algorithm 1 over the batch axis, float64; gamma is optional (absent under WN)."""
  centered = x - x.mean(axis=0)
  y = centered if mean_only else centered / np.sqrt(x.var(axis=0) + EPS)
  return y * p.get('scale', 1.0) + p['bias']


def _linear(x, p, weight_norm):
  if weight_norm:  # w = s v/||v|| per output unit (Salimans & Kingma 2016, eq. 2).
    kernel = p['scale'] * p['kernel'] / np.linalg.norm(p['kernel'], axis=0)
  else:
    kernel = p['kernel']
  return x @ kernel + p.get('bias', 0.0)


def _numpy_forward(params, x, normalization, position, num_layers):
  """Training-mode hidden-layer preactivations and logits of the MLP, by the formulas."""
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  weight_norm = normalization.startswith('weight')
  mean_only = normalization != 'batch'
  has_bn = normalization in ('batch', 'mean_only_batch', 'weight_mean_only_batch')
  preactivations = []
  for i in range(num_layers):
    if has_bn and position == 'input':
      x = _batch_norm(x, params[f'bn{i}'], mean_only)
    x = _linear(x, params[f'dense{i}'], weight_norm)
    if has_bn and position == 'preactivation':
      x = _batch_norm(x, params[f'bn{i}'], mean_only)
    preactivations.append(x)
    x = _sigmoid(x)
  return preactivations, _linear(x, params['logits'], False)


@pytest.mark.parametrize(
  'normalization, position, pre_bn_bias',
  [
    ('none', 'preactivation', False),
    ('batch', 'preactivation', False),
    ('batch', 'preactivation', True),
    ('batch', 'input', False),
    ('mean_only_batch', 'preactivation', True),
    ('weight', 'preactivation', False),
    ('weight_mean_only_batch', 'preactivation', False),
  ],
)
def test_mlp_forward_matches_the_formulas(normalization, position, pre_bn_bias):
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(32, 6, 6, 1)).astype(np.float32)
  model = MLP(
    hidden_sizes=(7, 5),
    num_classes=3,
    nonlinearity='sigmoid',
    norm={'kind': normalization, 'epsilon': EPS},
    init_std=0.5,
    bn_position=position,
    pre_bn_bias=pre_bn_bias,
  )
  variables = model.init(jax.random.key(1), x, train=False)
  # Move every parameter off its initial value so scales and biases all matter.
  params = jax.tree.map(
    lambda a: a + rng.normal(scale=0.3, size=a.shape).astype(np.float32), variables['params']
  )
  logits, state = model.apply(
    {**variables, 'params': params}, x, train=True, mutable=['batch_stats', 'intermediates']
  )
  expected_pre, expected_logits = _numpy_forward(
    params, x.reshape(32, -1), normalization, position, 2
  )
  np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-5)
  for i, expected in enumerate(expected_pre):
    sown = state['intermediates'][f'preactivation{i}'][0]
    np.testing.assert_allclose(sown, expected, rtol=1e-4, atol=1e-5)
  # Which layers carry a bias: dropped before BN (unless asked), kept elsewhere.
  bn_on_preactivation = normalization != 'none' and normalization != 'weight'
  bn_on_preactivation = bn_on_preactivation and position == 'preactivation'
  assert ('bias' in params['dense0']) == (pre_bn_bias or not bn_on_preactivation)
  assert ('scale' in params.get('bn0', {})) == (normalization in ('batch', 'mean_only_batch'))


def test_weight_normalized_mlp_starts_with_standardized_preactivations():
  """Data-dependent init (WN paper, Sec. 3): every hidden layer, on the init batch."""
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(60, 28, 28, 1)) > 0.7).astype(np.float32)
  model = MLP(
    hidden_sizes=(50, 40, 30),
    num_classes=10,
    nonlinearity='tanh',
    norm={'kind': 'weight'},
    init_std=0.1,
  )
  variables = model.init(jax.random.key(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  for i in range(3):
    preactivation = np.asarray(state['intermediates'][f'preactivation{i}'][0])
    np.testing.assert_allclose(preactivation.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(preactivation.std(axis=0), 1.0, rtol=1e-3)


def test_stop_gradient_statistics_reach_the_model():
  """With the mean outside the gradient, the pre-BN bias gets the naive gradient sum dl/dx."""
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(16, 5)).astype(np.float32)
  grads = {}
  for mode in ('none', 'mean'):
    model = MLP(
      hidden_sizes=(4,),
      num_classes=3,
      nonlinearity='sigmoid',
      norm={'kind': 'mean_only_batch', 'stop_gradient': mode},
      init_std=0.5,
      pre_bn_bias=True,
    )
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params, model=model, variables=variables):
      logits, _ = model.apply(
        {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
      )
      return (logits**2).sum()

    grads[mode] = jax.grad(loss)(variables['params'])
  np.testing.assert_allclose(grads['none']['dense0']['bias'], 0.0, atol=1e-5)
  # Mean-only BN with gamma: dl/db = gamma * sum over the batch of dl/dy, as for beta.
  np.testing.assert_allclose(
    grads['mean']['dense0']['bias'],
    grads['mean']['bn0']['bias'] * np.ones(4),
    rtol=1e-5,
  )


def test_a_new_normalizer_is_its_layer_and_one_registry_entry(monkeypatch):
  """Registering a kind (here flax's LayerNorm, a stand-in for any new layer module) makes
  it a `model.norm.kind` choice of the config, its checks and the MLP built from it, with no
  other change: its layer follows each hidden linear layer with the fields it has from
  `config.model.norm` (epsilon; BatchNorm's momentum is not LayerNorm's), and the loop
  learns from the entry that it keeps no running statistics."""
  import functools

  import flax.linen as nn

  from bn_repro import models
  from bn_repro.configuration.checks import validate_config
  from bn_repro.configuration.files import load_config, override
  from bn_repro.nn import normalization as norm_lib

  def layer_norm(norm, batch_statistics, axis_name):
    del batch_statistics, axis_name  # LayerNorm has no batch statistics.
    return functools.partial(nn.LayerNorm, **norm_lib.fields_of(nn.LayerNorm, norm))

  monkeypatch.setitem(norm_lib.NORMS, 'flax_layer', norm_lib.Norm(layer_norm))
  config = override(
    load_config('configs/mnist.py:bn,smoke'),
    model__norm__kind='flax_layer',
    model__norm__epsilon=1e-3,
    model__hidden_sizes=(5, 4),
    model__init_std=0.5,
  )
  validate_config(config, 1)
  model = models.create_model(config.model, num_classes=3)
  x = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
  variables = model.init(jax.random.key(0), x, train=True)
  assert 'batch_stats' not in variables
  assert set(variables['params']) == {'dense0', 'bn0', 'dense1', 'bn1', 'logits'}
  _, state = model.apply(variables, x, train=True, mutable=['intermediates'])
  (pre0,) = state['intermediates']['preactivation0']
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  u = x @ p['dense0']['kernel']  # No bias before a normalizer.
  expected = (u - u.mean(1, keepdims=True)) / np.sqrt(u.var(1, keepdims=True) + 1e-3)
  np.testing.assert_allclose(pre0, expected * p['bn0']['scale'] + p['bn0']['bias'], atol=1e-5)
  assert not norm_lib.get_norm('flax_layer').running_statistics
  with pytest.raises(ValueError, match="Unknown normalization 'unregistered'"):
    norm_lib.get_norm('unregistered')
