"""A real TensorBoard server over a smoke run: what its HTTP data API serves (scalars,
hparams, histograms, text, one run per seed), as a researcher's browser would get it."""

import json
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from bn_repro.configuration.files import load_config, override
from bn_repro.training import hparams_experiment, train

pytestmark = pytest.mark.usefixtures('mock_mnist')

_STARTUP_TIMEOUT_S = 240  # A loaded CI machine imports TensorFlow slowly.


@pytest.fixture(scope='module')
def served_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('tensorboard')
  config = override(load_config('configs/mnist.py:bn,smoke'), num_seeds=2, num_devices=1)
  train.train_and_evaluate(config, root / 'runs' / 'bn')
  assert hparams_experiment.write_experiment(root / 'runs') == ['seed', 'num_seeds']
  server = subprocess.Popen(
    [
      sys.executable,
      '-m',
      'tensorboard.main',
      f'--logdir={root / "runs"}',
      '--host=127.0.0.1',
      '--port=0',
      '--load_fast=false',
      '--reload_interval=1',
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    yield _server_address(server), config
  finally:
    server.terminate()
    server.wait(timeout=60)


def _server_address(server: subprocess.Popen) -> str:
  deadline = time.monotonic() + _STARTUP_TIMEOUT_S
  seen = []
  while time.monotonic() < deadline:
    line = server.stderr.readline()
    if not line and server.poll() is not None:
      break
    seen.append(line)
    if match := re.search(r'http://127\.0\.0\.1:(\d+)/', line):
      return f'http://127.0.0.1:{match[1]}'
  raise AssertionError(f'TensorBoard did not start: {"".join(seen)[-2000:]}')


def _get(address: str, path: str, body: dict | None = None) -> object:
  request = urllib.request.Request(address + path)
  if body is not None:
    request.data = json.dumps(body).encode()
    request.add_header('Content-Type', 'application/json')
    request.add_header('X-XSRF-Protected', '1')
  with urllib.request.urlopen(request, timeout=60) as response:
    return json.loads(response.read())


def _until_served(address: str, path: str, ready, body: dict | None = None) -> object:
  """Polls `path` until `ready(answer)`: the server loads event files in the background."""
  deadline = time.monotonic() + _STARTUP_TIMEOUT_S
  while True:
    answer = _get(address, path, body)
    if ready(answer) or time.monotonic() > deadline:
      return answer
    time.sleep(1)


def _served_experiment(address: str) -> dict:
  """The HParams dashboard's experiment, once the server has read the runs' hyperparameters."""
  return _until_served(
    address,
    '/data/plugin/hparams/experiment',
    lambda e: len(e.get('hparamInfos', [])) > 0,
    body={'experimentName': ''},
  )


def test_runs_and_scalars_one_run_per_seed(served_runs):
  address, _ = served_runs
  runs = set(_until_served(address, '/data/runs', lambda r: len(r) >= 3))
  assert {'bn', 'bn/seed0', 'bn/seed1'} <= runs
  tags = _until_served(address, '/data/plugin/scalars/tags', lambda t: 'bn/seed1' in t)
  assert {'eval/accuracy', 'eval_seed_sd/accuracy', 'eval/best_accuracy', 'train/loss'} <= set(
    tags['bn']
  )
  # One place per number: a seed's values live in its own run, not again in the parent's.
  assert not [tag for tag in tags['bn'] if re.match(r'\w+_seed\d+/', tag)]
  assert {'eval/accuracy', 'train/loss', 'train/accuracy'} <= set(tags['bn/seed1'])

  def values(run, tag):
    url = f'/data/plugin/scalars/scalars?run={run}&tag={tag}'
    return np.array([v for _, _, v in _get(address, url)])

  # The parent holds the seeds' mean and standard deviation.
  seeds = np.stack([values(f'bn/seed{i}', 'eval/accuracy') for i in range(2)])
  np.testing.assert_allclose(values('bn', 'eval/accuracy'), seeds.mean(0), rtol=1e-6)
  np.testing.assert_allclose(values('bn', 'eval_seed_sd/accuracy'), seeds.std(0, ddof=1), atol=1e-6)


def test_histograms_of_every_layer_and_of_gamma_and_beta(served_runs):
  address, config = served_runs
  tags = _until_served(address, '/data/plugin/histograms/tags', lambda t: 'bn/seed0' in t)
  layers = len(config.model.hidden_sizes)
  expected = {f'preactivation/layer{i}' for i in range(layers)}
  expected |= {f'scale_shift/layer{i}/{p}' for i in range(layers) for p in ('gamma', 'beta')}
  assert expected <= set(tags['bn/seed0'])
  url = '/data/plugin/histograms/histograms?run=bn/seed0&tag=preactivation/layer0'
  steps = [entry[1] for entry in _get(address, url)]
  assert steps and steps[-1] == config.num_steps


def test_config_and_run_record_as_text(served_runs):
  address, _ = served_runs
  tags = _until_served(address, '/data/plugin/text/tags', lambda t: 'bn' in t)
  assert {'config', 'run_info'} <= set(tags['bn'])


def test_hparams_table_lists_config_fields_and_metrics(served_runs):
  address, _ = served_runs
  experiment = _served_experiment(address)
  hparams = {info['name'] for info in experiment['hparamInfos']}
  assert {'model.norm.kind', 'optimizer.learning_rate', 'seed', 'model.norm.momentum'} <= hparams
  metrics = {info['name']['tag'] for info in experiment['metricInfos']}
  assert {'eval/accuracy', 'eval/best_accuracy'} <= metrics


def test_hparams_lead_with_the_fields_that_differ(served_runs):
  """After `hparams_experiment`, the dashboard's first columns are the fields that differ
  between the runs (the seed here), integers show as integers and strings have domains."""
  address, config = served_runs
  experiment = _served_experiment(address)
  infos = experiment['hparamInfos']
  leading = [info['name'] for info in infos if info.get('differs')]
  assert leading == ['num_seeds', 'seed'] and [i['name'] for i in infos[:2]] == leading
  by_name = {info['name']: info for info in infos}
  assert by_name['seed']['domainDiscrete'] == ['0', '1']
  assert by_name['batch_size']['domainDiscrete'] == [str(config.batch_size)]
  assert by_name['model.norm.kind']['domainDiscrete'] == ['batch']
  assert by_name['optimizer.learning_rate']['type'] == 'DATA_TYPE_FLOAT64'


def test_lead_fields_rank_the_researchers_fields_before_bookkeeping():
  base = {
    'variant': 'bn',
    'seed': '0',
    'eval_every': '500',
    'batch_size': '60',
    'model.init_std': 1,
  }
  runs = {
    'a': {**base, 'model.norm.momentum': 0.9, 'optimizer.learning_rate': 0.5},
    'b': {**base, 'variant': 'baseline', 'eval_every': '5', 'model.norm.momentum': 0.99},
    'c': {**base, 'seed': '1', 'checkpoint_every': '10', 'optimizer.learning_rate': 2.0},
    'd': {**base, 'batch_size': '2', 'eval.batch_size': '100', 'model.init_std': 0.1},
  }
  assert hparams_experiment.lead_fields(runs) == [
    'variant',
    'optimizer.learning_rate',
    'model.init_std',
    'seed',
    'batch_size',
  ]
  runs['d'].pop('batch_size')  # A field one run lacks does not differ by that alone.
  runs['d'].pop('model.init_std')
  assert hparams_experiment.lead_fields(runs)[2:] == ['seed', 'model.norm.momentum', 'eval_every']
