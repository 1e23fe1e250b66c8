"""The ensemble evaluator on fixed-logit fake models: averaging probabilities, exact counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro.data.ordering import padded_batches
from bn_repro.distributed import create_mesh
from bn_repro.ensemble import evaluate_ensemble, make_predict_fn
from bn_repro.training.state import TrainState


class FixedLogits(nn.Module):
  """A fake model: the image's single pixel holds the example id; returns its row of the
  member's fixed logit table (a parameter, so each member has its own)."""

  num_examples: int
  num_classes: int

  @nn.compact
  def __call__(self, x, *, train):
    del train
    table = self.param('table', nn.initializers.zeros, (self.num_examples, self.num_classes))
    return table[x.reshape(x.shape[0]).astype(jnp.int32)]


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _evaluate_tables(tables, images, labels, num_devices, batch_size):
  """`evaluate_ensemble` over FixedLogits members holding `tables`, in padded batches."""
  members = [
    TrainState.create(
      apply_fn=None,
      params={'table': jnp.asarray(t, jnp.float32)},
      batch_stats={},
      tx=optax.identity(),
    )
    for t in tables
  ]
  mesh = create_mesh(num_devices)
  sharding = NamedSharding(mesh, P('batch'))
  batches = [jax.device_put(b, sharding) for b in padded_batches(images, labels, batch_size)]
  predict = make_predict_fn(FixedLogits(*tables[0].shape), lambda x: x, mesh)
  return evaluate_ensemble(predict, members, batches, mesh)


def test_ensemble_averages_probabilities_and_counts_each_example_once():
  rng = np.random.default_rng(0)
  n, k = 13, 7
  tables = [rng.normal(size=(n, k)) * scale for scale in (1.0, 4.0, 0.5)]
  labels = rng.integers(0, k, n).astype(np.int32)
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
  metrics = _evaluate_tables(tables, images, labels, num_devices=4, batch_size=8)

  probs = np.mean([_softmax(t) for t in tables], axis=0)
  assert metrics['count'] == n
  assert metrics['accuracy'] == pytest.approx(np.mean(probs.argmax(-1) == labels))
  top5 = np.argsort(-probs, -1)[:, :5]
  assert metrics['top5_accuracy'] == pytest.approx(np.mean(np.any(top5 == labels[:, None], -1)))
  # Averaging probabilities is not averaging logits; these tables tell them apart.
  assert not np.array_equal(probs.argmax(-1), np.mean(tables, axis=0).argmax(-1))


def test_multi_crop_probabilities_are_averaged_over_crops_then_members():
  """(B, crops, H, W, C) batches: each member averages its crops' probabilities, then the
  members are averaged (numpy reference); top-5 stays a fraction of examples."""
  rng = np.random.default_rng(1)
  n, crops, k = 6, 3, 7
  tables = [rng.normal(size=(n * crops, k)) * scale for scale in (1.0, 3.0)]
  labels = rng.integers(0, k, n).astype(np.int32)
  images = np.arange(n * crops, dtype=np.float32).reshape(n, crops, 1, 1, 1)
  metrics = _evaluate_tables(tables, images, labels, num_devices=2, batch_size=4)

  per_member = [_softmax(t).reshape(n, crops, k).mean(axis=1) for t in tables]
  probs = np.mean(per_member, axis=0)
  assert metrics['count'] == n
  assert metrics['accuracy'] == pytest.approx(np.mean(probs.argmax(-1) == labels))
  top5 = np.argsort(-probs, -1)[:, :5]
  assert metrics['top5_accuracy'] == pytest.approx(np.mean(np.any(top5 == labels[:, None], -1)))
  assert 0 <= metrics['top5_accuracy'] <= 1
  for member, member_probs in zip(metrics['members'], per_member, strict=True):
    assert member['accuracy'] == pytest.approx(np.mean(member_probs.argmax(-1) == labels))


def test_models_reject_inputs_of_the_wrong_rank():
  from bn_repro.models.inception import BNInception
  from bn_repro.models.mlp import MLP

  multi_crop = jnp.zeros((2, 3, 28, 28, 1))
  with pytest.raises(ValueError, match=r'expected images \(N, H, W, C\); flatten multi-crop'):
    BNInception(num_classes=10, stem='small', width=0.125).init(
      jax.random.key(0), multi_crop, train=False
    )
  mlp = MLP(
    hidden_sizes=(4,), num_classes=10, nonlinearity='sigmoid', norm={'kind': 'none'}, init_std=0.1
  )
  with pytest.raises(ValueError, match=r'MLP input shape \(2, 3, 28, 28, 1\)'):
    mlp.init(jax.random.key(0), multi_crop, train=False)


def test_ensemble_command_on_checkpoints_of_real_runs(tmp_path, synthetic_mnist_tfds):
  """Two smoke runs (seeds 0 and 1), then `python -m bn_repro.ensemble` on their best
  checkpoints: its accuracies equal a numpy average of the members' probabilities."""
  import json
  import subprocess
  import sys

  from bn_repro import models
  from bn_repro.configuration.files import REPO_ROOT, override
  from bn_repro.data import datasets, transforms
  from bn_repro.training.checkpointing import Checkpointer
  from bn_repro.training.state import create_train_state

  common = [
    '--config=configs/mnist.py:bn,smoke',
    f'--config.input.tfds_data_dir={synthetic_mnist_tfds}',
    '--config.num_devices=1',
  ]
  workdirs = [tmp_path / f'seed{seed}' for seed in (0, 1)]
  for seed, workdir in enumerate(workdirs):
    subprocess.run(
      [
        sys.executable,
        '-m',
        'bn_repro.main',
        *common,
        f'--workdir={workdir}',
        f'--config.seed={seed}',
      ],
      cwd=REPO_ROOT,
      check=True,
      capture_output=True,
      timeout=600,
    )
  result = subprocess.run(
    [sys.executable, '-m', 'bn_repro.ensemble', *common, f'--workdirs={workdirs[0]},{workdirs[1]}'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])

  from bn_repro.configuration.files import load_config

  config = override(
    load_config('configs/mnist.py:bn,smoke'), input__tfds_data_dir=str(synthetic_mnist_tfds)
  )
  dataset = datasets.load_dataset(config.input)
  model = models.create_model(config.model, dataset.num_classes)
  x = transforms.get_preprocessor(config.input.preprocess)(dataset.test_images)
  template = create_train_state(config, model, np.zeros((1, 28, 28, 1), np.float32))
  probs = []
  for workdir in workdirs:
    state = Checkpointer(workdir / 'best_checkpoint', 1).restore_latest(template)
    logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x, train=False)
    probs.append(_softmax(np.asarray(logits, np.float64)))
  mean = np.mean(probs, axis=0)
  labels = dataset.test_labels
  assert metrics['count'] == len(labels)
  assert metrics['accuracy'] == pytest.approx(np.mean(mean.argmax(-1) == labels))
  top5 = np.argsort(-mean, -1)[:, :5]
  assert metrics['top5_accuracy'] == pytest.approx(np.mean(np.any(top5 == labels[:, None], -1)))
  for member, p in zip(metrics['members'], probs, strict=True):
    assert member['accuracy'] == pytest.approx(np.mean(p.argmax(-1) == labels))


def test_ensemble_of_seeds_side_by_side_and_another_schedule_reads_only_what_it_needs(
  tmp_path, synthetic_mnist_tfds
):
  """Members: each seed of a run of 2 seeds side by side, and a run trained with another
  schedule (another optimizer state) than the config given; read-only, no log noise."""
  import subprocess
  import sys

  from bn_repro.configuration.files import REPO_ROOT, load_config, override
  from bn_repro.training import train

  data = {'input__tfds_data_dir': str(synthetic_mnist_tfds), 'num_devices': 1}
  base = load_config('configs/mnist.py:bn,smoke')
  train.train_and_evaluate(override(base, num_seeds=2, **data), tmp_path / 'pair')
  other = override(base, schedule__name='exponential', schedule__decay_rate=0.5, **data)
  train.train_and_evaluate(other, tmp_path / 'decayed')
  common = [
    sys.executable,
    '-m',
    'bn_repro.ensemble',
    '--config=configs/mnist.py:bn,smoke',
    f'--config.input.tfds_data_dir={synthetic_mnist_tfds}',
    '--config.num_devices=1',
    '--config.num_seeds=2',
    '--checkpoint=latest',
  ]

  def ensemble(workdirs: str) -> subprocess.CompletedProcess:
    return subprocess.run(
      [*common, f'--workdirs={workdirs}'],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=600,
    )

  run = ensemble(f'{tmp_path / "pair"},{tmp_path / "decayed"}')
  assert run.returncode == 0, run.stderr[-3000:]
  lines = run.stdout.strip().splitlines()
  assert [line.split(':')[0] for line in lines[:3]] == [
    f'{tmp_path / "pair"} (seed 0)',
    f'{tmp_path / "pair"} (seed 1)',
    str(tmp_path / 'decayed'),
  ]
  assert lines[3].startswith('ensemble of 3 (latest checkpoints') and len(lines) == 5
  assert 'INFO' not in run.stderr and 'orbax' not in run.stderr.lower()
  missing = ensemble(str(tmp_path / 'no_such_run'))
  assert missing.returncode == 1
  assert missing.stderr.strip().splitlines()[-1] == (
    f'FATAL: {tmp_path / "no_such_run" / "checkpoints"} holds no checkpoint (--checkpoint=latest).'
  )
  assert not (tmp_path / 'no_such_run').exists()
