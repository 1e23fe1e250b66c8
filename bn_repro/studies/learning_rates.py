"""Study 6: higher learning rates (Sec. 3.3) and BN's invariance to the weight scale.

Sweep: final test accuracy against the learning rate, with and without BN, on the
MNIST MLP and on the small BN-Inception proxy (`inception` vs `bn_baseline`, which
differ only by BN, at the paper's x1, x5 and x30 multiples of the proxy's base LR);
the largest LR that still trains: every one of its `common.NUM_SEEDS` seeds trains (no
divergence, final accuracy at least `TRAINS_ABOVE`). The MLP's seeds train side by side in
one program (which stops when any seed's loss is not finite: then no seed trains); the
proxy's seeds are separate runs.

Weight scale: Sec. 3.3 states BN((aW)u) = BN(Wu), d BN((aW)u)/du = d BN(Wu)/du and
d BN((aW)u)/d(aW) = (1/a) d BN(Wu)/dW. Measured on the BN MLP at initialization, with
every hidden weight matrix multiplied by a, on one real training batch (no BN: the
same for contrast). BN's epsilon breaks the invariance slightly for units of small
variance; the epsilon-0 row isolates it.
"""

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections

from bn_repro import models
from bn_repro.data import datasets, transforms
from bn_repro.reports.formatting import FASHION_DATA, MNIST_DATA, fmt, fmt_seeds, seed_summary
from bn_repro.reports.study_results import plot_over_seeds, write_results
from bn_repro.studies.common import (
  NUM_SEEDS,
  Arm,
  SeededArm,
  StudyContext,
  seed_arms,
  train_arms,
)
from bn_repro.training.state import create_train_state
from bn_repro.training.steps import cross_entropy_loss

MLP_RATES = (0.5, 2.0, 8.0, 32.0, 128.0)
MLP_STEPS = 10_000
INCEPTION_MULTIPLES = (1.0, 5.0, 30.0)
INCEPTION_STEPS = 1_000
TRAINS_ABOVE = {'mlp': 0.9, 'inception': 0.5}
WEIGHT_SCALES = (0.01, 0.1, 10.0, 100.0)
# model -> {variant: (legend label, colour)}: without BN in blue, with BN in orange.
VARIANT_LABELS = {
  'mlp': {'baseline': ('without BN', 'C0'), 'bn': ('with BN', 'C1')},
  'inception': {'inception': ('Inception (no BN)', 'C0'), 'bn_baseline': ('BN-Baseline', 'C1')},
}


def arm_configs(
  context: StudyContext,
) -> tuple[dict[str, ml_collections.ConfigDict], dict[tuple[str, str, float], str]]:
  """The sweep's arms `{name: config}` and each setting's name `{(model, variant, effective
  learning rate): name}` (a setting's seeds are one arm or NUM_SEEDS, `seed_arms`)."""
  runs = [
    ('mlp', 'configs/mnist.py', v, r, MLP_STEPS) for v in ('baseline', 'bn') for r in MLP_RATES
  ]
  runs += [
    ('inception', 'configs/inception.py', v, m, INCEPTION_STEPS)
    for v in ('inception', 'bn_baseline')
    for m in INCEPTION_MULTIPLES
  ]
  configs, names = {}, {}
  for model, path, variant, rate, steps in runs:
    spec = f'{path}:{variant}' + (',small' if model == 'inception' else '')
    rate_field = 'optimizer__lr_multiple' if model == 'inception' else 'optimizer__learning_rate'
    config = context.config(
      spec,
      num_steps=context.steps(steps),
      checkpoint_every=context.steps(steps),
      **{rate_field: rate},
    )
    if model == 'inception':
      rate = config.optimizer.learning_rate * rate  # The effective learning rate.
    names[model, variant, rate] = f'{model}_{variant}_lr{rate:g}'
    configs.update(seed_arms(names[model, variant, rate], config, side_by_side=model == 'mlp'))
  return configs, names


def _sweep(
  trained: dict[str, Arm], names: dict[tuple[str, str, float], str]
) -> dict[tuple[str, str, float], dict]:
  """{(model, variant, learning rate): {final_test_accuracy: seed_summary, diverged_at (the
  first seed's divergence step or None), seeds: [final accuracy, None if diverged]}}."""
  results = {}
  for key, name in names.items():
    seeds = SeededArm.collect(trained, name)
    accuracies = seeds.finals('eval/accuracy')
    results[key] = {
      'final_test_accuracy': seed_summary([a for a in accuracies if a is not None]),
      'diverged_at': seeds.diverged_at,
      'seeds': accuracies,
    }
  return results


def _trains(result: dict, threshold: float) -> bool:
  """Every seed trained: none diverged and each reached `threshold`."""
  return all(a is not None and a >= threshold for a in result['seeds'])


def _scaled_kernels(params: dict, a: float) -> dict:
  """`params` with every hidden layer's weight matrix multiplied by `a`."""
  return {
    name: {**layer, 'kernel': layer['kernel'] * a} if name.startswith('dense') else layer
    for name, layer in params.items()
  }


def _relative(x: jax.Array, reference: jax.Array) -> float:
  return float(jnp.max(jnp.abs(x - reference)) / jnp.max(jnp.abs(reference)))


def _weight_scale_response(
  config: object, dataset: datasets.InMemoryDataset
) -> dict[float, dict[str, float]]:
  """For each a: relative changes of logits, input gradients and a x weight gradients."""
  model = models.create_model(config.model, dataset.num_classes)
  preprocess = transforms.get_preprocessor(config.input.preprocess, dataset.pixel_mean)
  images = preprocess(dataset.train_images[:60])
  labels = dataset.train_labels[:60]
  state = create_train_state(config, model, images)

  def loss_and_logits(params, x):
    logits, _ = model.apply(
      {'params': params, 'batch_stats': state.batch_stats}, x, train=True, mutable=['batch_stats']
    )
    return cross_entropy_loss(logits, labels), logits

  gradients = jax.jit(jax.grad(loss_and_logits, argnums=(0, 1), has_aux=True))
  (reference_params, reference_input), reference_logits = gradients(state.params, images)
  out = {}
  for a in WEIGHT_SCALES:
    (grad_params, grad_input), logits = gradients(_scaled_kernels(state.params, a), images)
    out[a] = {
      'logits': _relative(logits, reference_logits),
      'input_gradient': _relative(grad_input, reference_input),
      'weight_gradient_times_a': max(
        _relative(a * grad_params[name]['kernel'], reference_params[name]['kernel'])
        for name in grad_params
        if name.startswith('dense')
      ),
    }
  return out


def measure(
  context: StudyContext, trained: dict[str, Arm], names: dict[tuple[str, str, float], str]
) -> dict[str, object]:
  """The study's record: the sweep, the largest rate that trains per model and variant, and
  the weight-scale responses (measured here, on MNIST, at initialization)."""
  sweep = _sweep(trained, names)
  configs = {
    'bn': context.config('configs/mnist.py:bn'),
    'bn, epsilon 0': context.config('configs/mnist.py:bn', model__norm__epsilon=0.0),
    'baseline': context.config('configs/mnist.py:baseline'),
  }
  dataset = datasets.load_dataset(configs['bn'].input)  # The same MNIST for all three.
  largest = {  # (model, variant) -> the largest rate at which every seed trains, or None
    (model, variant): max(
      (r for m, v, r in sweep if (m, v) == (model, variant) and _trains(sweep[m, v, r], limit)),
      default=None,
    )
    for model, limit in TRAINS_ABOVE.items()
    for variant in sorted({v for m, v, _ in sweep if m == model})
  }
  return {
    'num_seeds': NUM_SEEDS,
    'sweep': [
      {'model': m, 'variant': v, 'learning_rate': r, **res} for (m, v, r), res in sweep.items()
    ],
    'largest_lr_that_trains': [
      {'model': m, 'variant': v, 'learning_rate': r} for (m, v), r in largest.items()
    ],
    'weight_scale': {
      name: _weight_scale_response(config, dataset) for name, config in configs.items()
    },
  }


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Final test accuracy against the learning rate, per model, without and with BN (seed
  means, bars from the lowest to the highest seed; a diverged seed counts 0). Drawn from
  the study's record, so `scripts/study.sh learning_rates --redraw` redraws it."""
  figure, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout='constrained')
  for ax, model in zip(axes, ('mlp', 'inception'), strict=True):
    for variant, (label, colour) in VARIANT_LABELS[model].items():
      points = sorted(
        (row['learning_rate'], [a or 0.0 for a in row['seeds']])
        for row in record['sweep']
        if (row['model'], row['variant']) == (model, variant)
      )
      if points:
        rates, seeds = zip(*points, strict=True)
        plot_over_seeds(ax, rates, seeds, 'o-', label, color=colour)
    ax.set_xscale('log')
    rates = sorted({row['learning_rate'] for row in record['sweep'] if row['model'] == model})
    ax.set_xticks(rates, [f'{rate:g}' for rate in rates], minor=False)
    ax.minorticks_off()
    ax.set(
      xlabel='learning rate',
      ylabel=f'final test accuracy, {record["num_seeds"]} seeds (0: diverged)',
      ylim=(0, 1),
    )
    ax.legend(loc='lower left')
  axes[0].set_title(f'MNIST MLP (3x100 sigmoid), {context.steps(MLP_STEPS)} steps')
  axes[1].set_title(
    f'small BN-Inception proxy (Fashion-MNIST), {context.steps(INCEPTION_STEPS)} steps'
  )
  figure.suptitle('Study 6: accuracy vs learning rate, without and with BN')
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the study's record."""
  largest = {
    (r['model'], r['variant']): r['learning_rate'] for r in record['largest_lr_that_trains']
  }
  lines = [
    f'Final test accuracy by learning rate, mean (min to max) over {record["num_seeds"]} seeds '
    '("div@N": a seed diverged at step N). '
    f'MLP: {context.steps(MLP_STEPS)} steps, plain SGD, batch 60. Inception proxy: '
    f'{context.steps(INCEPTION_STEPS)} steps, momentum 0.9, batch 32.',
    '',
    '| model | variant | learning rate: final test accuracy | largest LR that trains |',
    '|---|---|---|---|',
  ]
  for (model, variant), rate in largest.items():
    cells = ', '.join(
      f'{row["learning_rate"]:g}: ' + _sweep_cell(row)
      for row in record['sweep']
      if (row['model'], row['variant']) == (model, variant)
    )
    lines.append(f'| {model} | {variant} | {cells} | {fmt(rate, "{:g}")} |')
  lines += [
    '',
    f'Trains: every seed trains, with no divergence and a final test accuracy >= '
    f'{TRAINS_ABOVE["mlp"]} (MLP), {TRAINS_ABOVE["inception"]} (Inception proxy).',
    '',
    'Weight scale (Sec. 3.3), MLP at initialization, every hidden W multiplied by a, one '
    'real batch of 60: max relative change of the logits, of dloss/du (input), and of '
    'a x dloss/dW against dloss/dW.',
    '',
    '| network | a | logits | input gradient | a x weight gradient |',
    '|---|---|---|---|---|',
    *[
      f'| {variant} | {float(a):g} | {r["logits"]:.2g} | {r["input_gradient"]:.2g} | '
      f'{r["weight_gradient_times_a"]:.2g} |'
      for variant, by_scale in record['weight_scale'].items()
      for a, r in by_scale.items()
    ],
  ]
  return lines


def _sweep_cell(row: dict) -> str:
  if not row['diverged_at']:
    return fmt_seeds(row['seeds'])
  others = [a for a in row['seeds'] if a is not None]
  return f'div@{row["diverged_at"]}' + (f' (others {fmt_seeds(others)})' if others else '')


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  configs, names = arm_configs(context)
  record = measure(context, train_arms(context, configs), names)
  figure, lines = draw(record, context), table(record, context)
  write_results(context, figure, lines, record, started, f'{MNIST_DATA}; {FASHION_DATA}')
