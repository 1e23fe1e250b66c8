"""End-to-end tests of the training loop on tfds.testing.mock_data (synthetic MNIST-shaped data)."""

import re

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bn_repro import models, records
from bn_repro.configuration.files import load_config, override
from bn_repro.data import datasets, transforms
from bn_repro.data.ordering import padded_batches
from bn_repro.distributed import create_mesh
from bn_repro.training import train
from bn_repro.training.checkpointing import Checkpointer
from bn_repro.training.evaluate import Evaluator, preactivation_percentiles
from bn_repro.training.state import create_train_state
from bn_repro.training.steps import make_eval_fn
from bn_repro.training.tensorboard import read_scalars
from bn_repro.training.workdir import WorkdirError

pytestmark = pytest.mark.usefixtures('mock_mnist')


def _config(variant='bn', **fields):
  fields.setdefault('num_devices', 4)
  return override(load_config(f'configs/mnist.py:{variant},smoke'), **fields)


def _restore(config, workdir, directory='checkpoints'):
  dataset = datasets.load_dataset(config.input)
  model = models.create_model(config.model, dataset.num_classes, axis_name='batch')
  state = create_train_state(
    config, model, np.zeros((1,) + dataset.train_images.shape[1:], np.float32)
  )
  return Checkpointer(workdir / directory, 5).restore_latest(state), model, dataset


@pytest.mark.parametrize('variant', ['baseline', 'bn'])
def test_smoke_run_logs_evaluates_and_checkpoints(tmp_path, variant):
  config = _config(variant)
  metrics = train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars['train/loss']] == [5, 10, 15, 20]
  assert [s for s, _ in scalars['eval/accuracy']] == [10, 20]
  assert [s for s, _ in scalars['preactivation/layer1/unit_p85']] == [10, 20]
  assert scalars['eval/accuracy'][-1][1] == pytest.approx(metrics['accuracy'])
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()) == [
    10,
    20,
  ]
  assert (tmp_path / 'config.json').exists() and (tmp_path / 'run_info.json').exists()
  # The best evaluation's state is kept apart from the last checkpoints.
  accuracies = dict(scalars['eval/accuracy'])
  best_step = max(accuracies, key=lambda step: (accuracies[step], -step))
  assert Checkpointer(tmp_path / 'best_checkpoint', 1).latest_step() == best_step
  # The first logged loss is near chance level, log(10), for a freshly initialized net.
  assert abs(scalars['train/loss'][0][1] - np.log(10)) < 0.3


def test_evaluation_is_exact_with_padding_on_many_devices(tmp_path):
  config = _config('bn')
  train.train_and_evaluate(config, tmp_path)
  state, model, dataset = _restore(config, tmp_path)
  images, labels = dataset.test_images[:100], dataset.test_labels[:100]
  mesh = create_mesh(8)
  preprocess = transforms.get_preprocessor(config.input.preprocess)
  sharding = NamedSharding(mesh, P('batch'))
  batches = [jax.device_put(b, sharding) for b in padded_batches(images, labels, 24)]
  evaluate = Evaluator(make_eval_fn(model, preprocess, mesh), lambda: batches, 100, mesh)
  metrics, preactivations = evaluate(state)
  # Reference: one un-sharded forward pass over all 100 examples.
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits, inter = model.clone(axis_name=None).apply(
    variables, preprocess(images), train=False, mutable=['intermediates']
  )
  assert metrics['accuracy'] == pytest.approx(np.mean(np.argmax(logits, -1) == labels))
  reference = {k: np.asarray(v[0]) for k, v in inter['intermediates'].items()}
  for name in reference:
    np.testing.assert_allclose(preactivations[name], reference[name], rtol=1e-5, atol=1e-5)
  got = preactivation_percentiles(preactivations, 3, (15, 50, 85))
  unit, every = got['preactivation/layer1/unit_p50'], got['preactivation/layer0/all_p15']
  assert unit == pytest.approx(np.median(reference['preactivation1'][:, 3]))
  assert every == pytest.approx(np.percentile(reference['preactivation0'], 15))


def test_evaluation_with_batch_statistics_normalizes_each_evaluation_batch(tmp_path):
  """eval.batch_statistics: BN's statistics over each evaluation batch (sharded over 4
  devices), as `batch_statistics_accuracy` computes them on one; different from the running
  averages'."""
  from bn_repro.training.evaluate import batch_statistics_accuracy, running_statistics_accuracy

  config = _config('bn')
  train.train_and_evaluate(config, tmp_path)
  state, model, dataset = _restore(config, tmp_path)
  images, labels = dataset.test_images[:96], dataset.test_labels[:96]
  mesh = create_mesh(4)
  preprocess = transforms.get_preprocessor(config.input.preprocess)
  sharding = NamedSharding(mesh, P('batch'))
  batches = [jax.device_put(b, sharding) for b in padded_batches(images, labels, 24)]
  eval_fn = make_eval_fn(model, preprocess, mesh, batch_statistics=True)
  metrics, _ = Evaluator(eval_fn, lambda: batches, 96, mesh)(state)
  one_device = model.clone(axis_name=None)
  args = (one_device, state.params, state.batch_stats, preprocess(images), labels)
  assert metrics['accuracy'] == pytest.approx(batch_statistics_accuracy(*args, 24))
  running, _ = Evaluator(make_eval_fn(model, preprocess, mesh), lambda: batches, 96, mesh)(state)
  assert running['accuracy'] == pytest.approx(running_statistics_accuracy(*args))
  assert metrics['loss'] != pytest.approx(running['loss'], rel=1e-3)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  train.train_and_evaluate(_config('bn'), tmp_path / 'straight')
  train.train_and_evaluate(_config('bn', num_steps=10), tmp_path / 'resumed')
  train.train_and_evaluate(_config('bn'), tmp_path / 'resumed')
  straight, _, _ = _restore(_config('bn'), tmp_path / 'straight')
  resumed, _, _ = _restore(_config('bn'), tmp_path / 'resumed')
  assert int(resumed.step) == 20
  jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
  jax.tree.map(np.testing.assert_array_equal, resumed.batch_stats, straight.batch_stats)
  assert (
    read_scalars(tmp_path / 'resumed')['train/loss']
    == read_scalars(tmp_path / 'straight')['train/loss']
  )


@pytest.mark.parametrize('group_size', [None, 8])
def test_training_does_not_depend_on_device_count(tmp_path, group_size):
  """Global-batch BN (None) or fixed groups of 8: equal curves on 1, 2 and 8 devices."""
  runs = []
  for devices in (1, 2, 8):
    config = _config(
      'bn', num_devices=devices, batch_size=64, model__norm__group_size=group_size, num_steps=10
    )
    train.train_and_evaluate(config, tmp_path / str(devices))
    state = _restore(config, tmp_path / str(devices))[0]
    runs.append((state, read_scalars(tmp_path / str(devices))['train/loss']))
  (reference, reference_losses), *others = runs
  for state, losses in others:
    np.testing.assert_allclose([v for _, v in losses], [v for _, v in reference_losses], rtol=1e-5)
    for tree, ref in ((state.params, reference.params), (state.batch_stats, reference.batch_stats)):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), tree, ref)


def test_nonfinite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  # The learning rate grows 1e12-fold every 5 steps: it reaches inf at step 20, so the
  # parameters and then the loss become non-finite after a few good checkpoints.
  config = _config(
    'baseline',
    num_steps=40,
    checkpoint_every=5,
    schedule__name='exponential',
    schedule__decay_rate=1e12,
    schedule__decay_steps=5,
  )
  with pytest.raises(FloatingPointError, match='first non-finite value: ') as error:
    train.train_and_evaluate(config, tmp_path)
  found = re.search(r'diverged at step (\d+) .*checkpoint \(step (\d+)\)', str(error.value))
  bad_step, kept = int(found[1]), int(found[2])
  assert 0 < kept < bad_step and kept % 5 == 0
  assert Checkpointer(tmp_path / 'checkpoints', 5).latest_step() == kept
  state, _, _ = _restore(config, tmp_path)
  assert int(state.step) == kept
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))


def test_workdir_of_another_config_is_refused_unless_overwritten(tmp_path):
  train.train_and_evaluate(_config('bn', num_steps=10, population_stats__num_batches=2), tmp_path)
  with pytest.raises(WorkdirError, match=r"model.norm.kind: 'batch' -> 'none'.*--overwrite"):
    train.train_and_evaluate(_config('baseline', num_steps=10), tmp_path)
  train.train_and_evaluate(_config('bn', num_steps=20), tmp_path)  # Longer: resumes.
  assert (tmp_path / 'population_checkpoint').exists() and (tmp_path / 'best_checkpoint').exists()
  # --overwrite clears everything the first run wrote: a rerun of the same steps then saves
  # its best, final and population checkpoints afresh instead of meeting the old ones.
  overwritten = _config('baseline', num_steps=10, population_stats__num_batches=2)
  train.train_and_evaluate(overwritten, tmp_path, overwrite=True)
  assert [s for s, _ in read_scalars(tmp_path)['train/loss']] == [5, 10]
  assert not (tmp_path / 'population_checkpoint').exists()  # Baseline: no BN statistics.
  assert Checkpointer(tmp_path / 'checkpoints', 5).latest_step() == 10
  train.train_and_evaluate(
    _config('bn', num_steps=10, population_stats__num_batches=2), tmp_path, overwrite=True
  )
  train.train_and_evaluate(
    _config('bn', num_steps=10, population_stats__num_batches=2), tmp_path, overwrite=True
  )
  assert Checkpointer(tmp_path / 'population_checkpoint', 1).latest_step() == 10


def test_seeds_side_by_side_equal_separate_runs(tmp_path):
  """num_seeds=3 (vmap) trains exactly the runs seeded 0, 1, 2 would train alone."""
  multi = _config('bn', num_seeds=3, num_devices=2)
  train.train_and_evaluate(multi, tmp_path / 'multi')
  scalars = records.read_metrics(tmp_path / 'multi')  # Per-seed tags: metrics.jsonl only.
  stacked = _restore(multi, tmp_path / 'multi')[0]
  finals = []
  for seed in range(3):
    single = _config('bn', seed=seed, num_devices=2)
    train.train_and_evaluate(single, tmp_path / str(seed))
    alone = read_scalars(tmp_path / str(seed))['eval/accuracy']
    together = scalars[f'eval_seed{seed}/accuracy']
    np.testing.assert_allclose([v for _, v in together], [v for _, v in alone], atol=1e-4)
    state = _restore(single, tmp_path / str(seed))[0]
    jax.tree.map(
      lambda a, b, seed=seed: np.testing.assert_allclose(a[seed], b, rtol=1e-4, atol=1e-5),
      stacked.params,
      state.params,
    )
    finals.append(alone[-1][1])
  assert scalars['eval/accuracy'][-1][1] == pytest.approx(np.mean(finals))
  assert len({round(f, 4) for f in finals}) > 1  # The seeds differ.


def test_logged_learning_rate_is_the_rate_of_the_last_step_taken(tmp_path):
  """Steps count from 0; the log at step 10 follows steps 0..9. With a staircase halving
  every 5 steps, step 9 ran at lr/2 and step 10 (not yet taken) will run at lr/4."""
  config = _config(
    'bn',
    num_steps=10,
    schedule__name='exponential',
    schedule__decay_rate=0.5,
    schedule__decay_steps=5,
  )
  train.train_and_evaluate(config, tmp_path)
  peak = config.optimizer.learning_rate
  assert read_scalars(tmp_path)['train/learning_rate'] == [(5, peak), (10, peak / 2)]


def test_a_stop_at_an_evaluation_step_checkpoints_first_and_the_resume_evaluates(
  tmp_path, monkeypatch
):
  """A stop agreed at step 10 (an evaluation step) saves the checkpoint and skips the
  evaluation; the resumed run evaluates step 10 first, so the curves equal a straight run's."""
  import signal

  from bn_repro.training.preemption import PreemptedError

  train.train_and_evaluate(_config('bn', num_steps=20), tmp_path / 'straight')
  real_stop = train._stop_agreed
  calls = []

  def stop_at_ten(stop):
    calls.append(None)
    return signal.SIGTERM if len(calls) == 2 else None  # Log steps 5, 10.

  monkeypatch.setattr(train, '_stop_agreed', stop_at_ten)
  with pytest.raises(PreemptedError):
    train.train_and_evaluate(_config('bn', num_steps=20), tmp_path / 'stopped')
  stopped = tmp_path / 'stopped'
  assert Checkpointer(stopped / 'checkpoints', 5).latest_step() == 10
  assert 'eval/accuracy' not in read_scalars(stopped)  # Skipped at 10.
  monkeypatch.setattr(train, '_stop_agreed', real_stop)
  train.train_and_evaluate(_config('bn', num_steps=20), stopped)
  for tag in ('eval/accuracy', 'train/loss'):
    assert read_scalars(stopped)[tag] == read_scalars(tmp_path / 'straight')[tag]


def test_extra_evaluation_steps_on_an_evaluation_subset(tmp_path):
  config = _config(eval__extra_steps=(5, 15), eval__num_examples=40, eval__batch_size=16)
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars['eval/accuracy']] == [5, 10, 15, 20]
  # The JSON-lines metrics that reports read hold exactly what the event files hold.
  assert records.read_metrics(tmp_path) == scalars
  # The last evaluation saw the first 40 test examples: recompute it from the checkpoint.
  state, model, dataset = _restore(config, tmp_path)
  logits = model.apply(
    {'params': state.params, 'batch_stats': state.batch_stats},
    transforms.get_preprocessor('binary')(dataset.test_images[:40]),
    train=False,
  )
  accuracy = np.mean(np.argmax(logits, -1) == dataset.test_labels[:40])
  assert scalars['eval/accuracy'][-1][1] == pytest.approx(accuracy)


@pytest.mark.parametrize(
  'variant, fields, checkpoint, collection',
  [
    ('bn', {'population_stats__num_batches': 2}, 'population_checkpoint', 'batch_stats'),
    ('wn', {}, 'checkpoints', 'params'),  # Weight norm's data-dependent init.
  ],
)
def test_seeds_side_by_side_draw_their_own_batches_for_population_stats_and_wn_init(
  tmp_path, variant, fields, checkpoint, collection
):
  """Algorithm 2's batches and weight norm's init batch of seed s side by side are those a
  separate run of seed s draws (not seed 0's), so the results are equal."""
  multi = _config(variant, num_seeds=2, num_devices=2, **fields)
  train.train_and_evaluate(multi, tmp_path / 'multi')
  stacked = _restore(multi, tmp_path / 'multi', checkpoint)
  for seed in range(2):
    single = _config(variant, seed=seed, num_devices=2, **fields)
    train.train_and_evaluate(single, tmp_path / str(seed))
    alone = _restore(single, tmp_path / str(seed), checkpoint)
    jax.tree.map(
      lambda a, b, seed=seed: np.testing.assert_allclose(a[seed], b, rtol=1e-4, atol=1e-5),
      getattr(stacked[0], collection),
      getattr(alone[0], collection),
    )


def test_a_finished_run_resumed_with_new_evaluation_fields_runs_them_or_refuses(tmp_path):
  config = _config('bn', num_steps=10)
  train.train_and_evaluate(config, tmp_path)
  assert 'eval_population/accuracy' not in read_scalars(tmp_path)
  # What is evaluated changed: the last step is evaluated again, with it.
  train.train_and_evaluate(_config('bn', num_steps=10, population_stats__num_batches=2), tmp_path)
  assert [s for s, _ in read_scalars(tmp_path)['eval_population/accuracy']] == [10]
  assert Checkpointer(tmp_path / 'population_checkpoint', 1).latest_step() == 10
  # When it evaluates changed: the past cannot be evaluated again.
  with pytest.raises(WorkdirError, match=r'finished run; eval.extra_steps changed'):
    train.train_and_evaluate(
      _config('bn', num_steps=10, population_stats__num_batches=2, eval__extra_steps=(5,)),
      tmp_path,
    )
