"""BN-Inception against the paper's appendix table: shapes at 224x224 and parameter counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_repro.models.inception import (
  BNInception,
  count_parameters,
  layer_table,
  local_response_norm,
)

# Output column of the appendix table (4c, 4d, 4e as the printed pool projections give them).
PAPER_OUTPUTS = {
  'conv1': (112, 112, 64),
  'conv2': (56, 56, 192),
  'inception_3a': (28, 28, 256),
  'inception_3b': (28, 28, 320),
  'inception_3c': (14, 14, 576),
  'inception_4a': (14, 14, 576),
  'inception_4b': (14, 14, 576),
  'inception_4c': (14, 14, 608),
  'inception_4d': (14, 14, 608),
  'inception_4e': (7, 7, 1056),
  'inception_5a': (7, 7, 1024),
  'inception_5b': (7, 7, 1024),
  'logits': (1000,),
}


def _count(**fields):
  model = BNInception(num_classes=1000, **fields)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
  )
  return count_parameters(variables['params'])


def test_output_shapes_at_224_follow_the_table():
  shapes = {name: shape[1:] for name, shape, _ in layer_table(BNInception(num_classes=1000))}
  for name, expected in PAPER_OUTPUTS.items():
    assert shapes[name] == expected, name
  with_slim_proj = layer_table(BNInception(num_classes=1000, pool_proj_4cd=96))
  shapes = {name: shape[1:] for name, shape, _ in with_slim_proj}
  # TF-slim's 96-channel projections give the table's printed 576 and 1024.
  assert shapes['inception_4d'] == (14, 14, 576) and shapes['inception_4e'] == (7, 7, 1024)


@pytest.mark.parametrize(
  'fields, expected',
  [
    # The literal table with conv biases, plain 7x7 stem, BN gamma/beta, 1024x1000 classifier:
    # the Caffe port's count.
    ({'conv_bias': True}, 11_295_240),
    # Our default: BN replaces the conv bias (Sec. 3.2), so 16,016 fewer (one per channel).
    ({}, 11_285_224),
    # TF-slim's readings: 96-channel projections in 4c/4d and the separable stem (depthwise
    # 7x7x3x8, then 1x1 to 64, one BN after both: no gamma/beta on the 24 depthwise maps).
    ({'pool_proj_4cd': 96, 'stem': 'separable'}, 11_188_288),
    # The no-BN Inception arm: biases, no gamma/beta.
    ({'norm': {'kind': 'none'}, 'conv_bias': True}, 11_275_208),
  ],
)
def test_parameter_counts(fields, expected):
  assert _count(**fields) == expected


def test_no_reading_of_the_table_gives_the_texts_13_6m():
  """The paper's text says 13.6M; every combination of the table's readings stays near 11.2M."""
  counts = [
    _count(conv_bias=bias, pool_proj_4cd=proj, stem=stem)
    for bias in (False, True)
    for proj in (96, 128)
    for stem in ('plain', 'separable')
  ]
  assert max(counts) < 11.4e6 and min(counts) > 11.1e6


def test_small_stem_trains_the_same_modules_on_28px():
  model = BNInception(num_classes=10, stem='small', width=0.125)
  shapes = {name: shape[1:] for name, shape, _ in layer_table(model, image_size=28)}
  assert shapes['inception_3a'] == (14, 14, 32) and shapes['inception_5b'] == (4, 4, 128)
  assert shapes['logits'] == (10,)


def test_local_response_norm_matches_numpy():
  x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32)
  expected = np.empty_like(x)
  for c in range(7):
    window = np.sum(x[..., max(0, c - 2) : c + 3] ** 2, axis=-1)
    expected[..., c] = x[..., c] / (1.0 + 1e-4 / 5 * window) ** 0.75
  np.testing.assert_allclose(local_response_norm(jnp.asarray(x)), expected, rtol=1e-6)


@pytest.mark.slow
def test_full_size_network_trains_a_step_at_224():
  """The paper's network (plain stem, width 1) takes an SGD step on 224x224 images."""
  import optax

  model = BNInception(num_classes=1000, norm={'kind': 'batch', 'group_size': 4})
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(4, 224, 224, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 1000, 4))
  variables = model.init(jax.random.key(0), x, train=False)

  def loss_fn(params):
    logits, updates = model.apply(
      {'params': params, 'batch_stats': variables['batch_stats']},
      x,
      train=True,
      mutable=['batch_stats'],
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

  (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables['params'])
  assert abs(float(loss) - np.log(1000)) < 1.0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads['inception_5b']))
  assert not np.allclose(updates['batch_stats']['conv1']['BatchNorm_0']['mean'], 0)


def test_bfloat16_compute_keeps_float32_state_and_matches_float32_loss():
  """model.compute_dtype='bfloat16' (mixed precision): parameters, gradients, BN statistics
  and logits stay float32; the loss and the classifier's gradient agree with the float32
  network's to bf16 precision (the deep layers' gradients, sums with heavy cancellation,
  are noisier), without being equal."""
  import optax

  from bn_repro import models
  from bn_repro.configuration.files import load_config, override

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(8, 32, 32, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 8))
  results = {}
  for dtype in ('float32', 'bfloat16'):
    config = override(
      load_config('configs/inception.py:bn_x5,smoke'),
      model__compute_dtype=dtype,
      model__norm__group_size=8,
      model__dropout_rate=0.0,
    )
    model = models.create_model(config.model, num_classes=10)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss_fn(params, model=model, variables=variables):
      logits, updates = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']},
        x,
        train=True,
        mutable=['batch_stats'],
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, updates)

    (loss, (logits, updates)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables['params']
    )
    conv_dtypes = set()

    def record(next_fun, args, kwargs, context, conv_dtypes=conv_dtypes):
      out = next_fun(*args, **kwargs)
      if isinstance(context.module, nn.Conv):
        conv_dtypes.add(out.dtype)
      return out

    with nn.intercept_methods(record):
      model.apply(variables, x, train=False)
    assert conv_dtypes == {jnp.dtype(dtype)}  # The convolutions compute in compute_dtype.
    state = jax.tree.leaves((variables['params'], updates, grads))
    assert logits.dtype == jnp.float32 and {a.dtype for a in state} == {jnp.dtype('float32')}
    results[dtype] = float(loss), np.ravel(grads['logits']['kernel'])
  (loss32, grad32), (loss16, grad16) = results['float32'], results['bfloat16']
  assert loss16 != loss32 and abs(loss16 - loss32) < 0.02 * loss32
  cosine = grad16 @ grad32 / (np.linalg.norm(grad16) * np.linalg.norm(grad32))
  assert cosine > 0.99
