"""Configs: variants, locking, value checks, and the command line."""

import dataclasses
import subprocess
import sys

import jax
import numpy as np
import pytest

from bn_repro import models
from bn_repro.configuration.checks import validate_config
from bn_repro.configuration.files import REPO_ROOT, load_config, override
from bn_repro.nn.batch_norm import BatchNorm
from bn_repro.nn.batch_renorm import BatchRenorm
from bn_repro.nn.group_norm import GroupNorm


def test_variants_differ_only_in_normalization():
  baseline = load_config('configs/mnist.py:baseline').to_dict()
  bn = load_config('configs/mnist.py:bn').to_dict()
  assert baseline['model']['norm'].pop('kind') == 'none'
  assert bn['model']['norm'].pop('kind') == 'batch'
  assert baseline.pop('variant') == 'baseline' and bn.pop('variant') == 'bn'
  assert baseline == bn
  assert bn['batch_size'] == 60 and bn['num_steps'] == 50_000  # Paper Sec. 4.1.
  assert bn['model']['hidden_sizes'] == (100, 100, 100)


def test_unknown_variant_and_option_name_the_valid_ones():
  with pytest.raises(ValueError, match=r"'bogus'.*\('baseline', 'bn', 'bn_bias', "):
    load_config('configs/mnist.py:bogus')
  with pytest.raises(ValueError, match=r"'fast'.*\('smoke', 'paper_bn', 'torch_bn', "):
    load_config('configs/mnist.py:bn,fast')


def test_locked_config_rejects_unknown_fields():
  with pytest.raises(KeyError, match=r"'model.widths'.*'hidden_sizes'"):
    override(load_config('configs/mnist.py:bn'), model__widths=(1,))


@pytest.mark.parametrize(
  'fields, message',
  [
    ({'optimizer__learning_rate': -0.1}, 'learning_rate=-0.1 must be positive'),
    ({'batch_size': 62}, 'batch_size=62 is not divisible by the 4 devices'),
    ({'model__norm__group_size': 4}, 'group_size=4 must divide the per-device batch of 15'),
    ({'model__norm__group_size': 30}, 'group_size=30 must divide the per-device batch of 15'),
    ({'eval_every': 150}, 'eval_every=150 must be a positive multiple of log_every=100'),
    ({'model__norm__group_size': 1}, r'group_size=1 .* at least 2 \(m counts the values'),
    ({'keep_checkpoints': 0}, 'keep_checkpoints=0 must be at least 1'),
    ({'eval__batch_size': 1002}, 'eval.batch_size=1002 .* must be a positive multiple of 4'),
  ],
)
def test_invalid_values_are_rejected_with_the_value(fields, message):
  with pytest.raises(ValueError, match=message):
    validate_config(override(load_config('configs/mnist.py:bn'), **fields), num_devices=4)


def test_a_batch_of_one_is_refused_for_bn_only():
  with pytest.raises(ValueError, match='group_size=None with batch_size=1: each BN'):
    validate_config(override(load_config('configs/mnist.py:bn'), batch_size=1), num_devices=1)
  validate_config(override(load_config('configs/mnist.py:baseline'), batch_size=1), num_devices=1)


def test_multi_crop_evaluation_is_refused_where_it_cannot_work():
  small = override(load_config('configs/inception.py:bn_x5,small'), eval__crops=144)
  with pytest.raises(ValueError, match="eval.crops=144 needs ImageNet.*'fashion_mnist'"):
    validate_config(small, num_devices=1)
  imagenet = override(load_config('configs/inception.py:bn_x5'), eval__crops=144, batch_size=256)
  with pytest.raises(ValueError, match=r'eval.batch_size=500 counts images .* multiple of 1152'):
    validate_config(imagenet, num_devices=8)
  validate_config(override(imagenet, eval__batch_size=1152), num_devices=8)


def test_override_keeps_linked_fields_as_the_command_line_does():
  config = override(load_config('configs/inception.py:bn_x5'), steps_per_call=4)
  assert config.scan_unroll == 4  # scan_unroll follows steps_per_call.
  assert load_config('configs/inception.py:bn_x5').steps_per_call == 2  # The original is kept.


def test_unknown_compute_dtype_is_rejected_with_the_value():
  config = override(load_config('configs/inception.py:bn_x5,small'), model__compute_dtype='float16')
  with pytest.raises(ValueError, match=r"compute_dtype='float16'; expected one of \('float32'"):
    validate_config(config, num_devices=1)


@pytest.mark.parametrize(
  'override_flag, message',
  [
    (
      '--config.model.widths=3',
      "Unknown config field 'model.widths'; valid fields of 'model': ['bn_position', "
      "'hidden_sizes', 'init_std', 'name', 'nonlinearity', 'norm', 'pre_bn_bias'].",
    ),
    ('--config.optimizer.learning_rate=-0.5', 'optimizer.learning_rate=-0.5 must be positive'),
    ('--config.model.norm.group_size=90', 'group_size=90 must divide the per-device batch of 60'),
    ('--num_processes=2', '--num_processes/--process_id need --coordinator_address'),
    ('--config.model.nonlinearity=swish', "model.nonlinearity='swish'; expected one of"),
    ('--config.num_devices=20', 'num_devices=20, but 8 cpu device(s) are available'),
  ],
)
def test_command_line_rejects_bad_config_at_parse_time(tmp_path, override_flag, message):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'bn_repro.main',
      '--config=configs/mnist.py:bn',
      override_flag,
      f'--workdir={tmp_path}',
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert 'FATAL: ' in result.stderr and message in result.stderr
  assert 'Traceback' not in result.stderr
  assert not any(tmp_path.iterdir())  # Nothing was trained or written.


@pytest.mark.parametrize(
  'config_flag, message',
  [
    (
      '--config=configs/nope.py',
      "FATAL: --config=configs/nope.py: Config file 'configs/nope.py' not found",
    ),
    (
      '--config=configs/mnist.py:bogus',
      "FATAL: --config=configs/mnist.py:bogus: Unknown configs/mnist.py variant 'bogus'",
    ),
  ],
)
def test_a_bad_config_path_or_variant_is_one_line_naming_it(tmp_path, config_flag, message):
  result = subprocess.run(
    [sys.executable, '-m', 'bn_repro.main', config_flag, f'--workdir={tmp_path}'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr
  assert not any(tmp_path.iterdir())


@pytest.mark.parametrize('spec', ['configs/mnist.py:bn', 'configs/inception.py:bn_x5,small'])
def test_config_norm_fields_are_its_kind_and_its_layers_fields(spec):
  """config.model.norm is the kind and fields that map one to one onto the layers'
  (BatchNorm, BatchRenorm, GroupNorm): a new option is a layer field and its config
  default, nothing between."""
  fields = set(load_config(spec).model.norm)
  assert 'kind' in fields
  layers = (BatchNorm, BatchRenorm, GroupNorm)
  layer_fields = {f.name for layer in layers for f in dataclasses.fields(layer)}
  assert fields - {'kind'} <= layer_fields


def test_config_bn_fields_reach_the_layers():
  config = override(load_config('configs/mnist.py:bn'), model__norm__momentum=0.25)
  model = models.create_model(config.model, num_classes=10)
  x = np.random.default_rng(0).normal(size=(8, 784)).astype(np.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  batch_mean = (x @ np.asarray(variables['params']['dense0']['kernel'])).mean(axis=0)
  # Running mean = momentum * 0 + (1 - momentum) * batch mean, with the config's momentum.
  np.testing.assert_allclose(
    updates['batch_stats']['bn0']['mean'], 0.75 * batch_mean, rtol=1e-4, atol=1e-6
  )
