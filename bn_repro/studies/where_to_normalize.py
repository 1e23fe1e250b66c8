"""Study 3: where to normalize (Sec. 3.2): BN on Wu vs BN on the layer input u.

The paper normalizes x = Wu + b rather than u: u is the output of a previous
nonlinearity, whose distribution's shape is likely to change during training,
while Wu + b "is more likely to have a symmetric, non-sparse distribution". Arms
(`configs/mnist.py`): `baseline` (no BN), `bn` (g(BN(Wu))), `bn_input` (g(W BN(u) + b)),
with the Figure 1(b, c) percentiles of the sigmoid input of the last hidden layer. Each
arm trains `common.NUM_SEEDS` seeds side by side; accuracies are given per seed (mean and
range), the drift over every unit of the last hidden layer in every seed (median and
quartiles; `reports.figure1.all_unit_drift`, the Figure 1 definition).
"""

import time

import matplotlib.pyplot as plt
import ml_collections

from bn_repro.analysis import unit_drift
from bn_repro.reports.figure1 import PERCENTILES, all_unit_drift, last_hidden_layer
from bn_repro.reports.formatting import MNIST_DATA, fmt_seeds, seed_summary
from bn_repro.reports.study_results import write_results
from bn_repro.studies.common import NUM_SEEDS, Arm, StudyContext, train_arms

ARMS = {'baseline': 'no BN', 'bn': 'BN on Wu (the paper)', 'bn_input': 'BN on u'}
NUM_STEPS = 50_000
REPORT_STEPS = (10_000, 50_000)


def arm_configs(context: StudyContext) -> dict[str, ml_collections.ConfigDict]:
  """The three arms, each its seeds side by side."""
  return {
    name: context.config(
      f'configs/mnist.py:{name}', num_steps=context.steps(NUM_STEPS), num_seeds=NUM_SEEDS
    )
    for name in ARMS
  }


def measure(context: StudyContext, arms: dict[str, Arm]) -> dict[str, object]:
  """The study's record: per arm, test accuracy at the report steps per seed, the steps to
  97% per seed, the location drift over all units, and the curves the figure draws."""
  steps = [s for s in REPORT_STEPS if s <= context.steps(NUM_STEPS)] or [context.steps(NUM_STEPS)]
  rows = {}
  for name, arm in arms.items():
    accuracy = [dict(curve) for curve in arm.seed_curves('eval/accuracy')]
    drift = all_unit_drift(unit_drift.read_records(arm.workdir))
    layer = last_hidden_layer(arm.scalars)
    rows[name] = {
      'test_accuracy': {s: seed_summary([a[s] for a in accuracy if s in a]) for s in steps},
      'steps_to_97': [next((s for s, v in sorted(a.items()) if v >= 0.97), None) for a in accuracy],
      'location_drift': drift['location_drift'] if drift else None,
      'accuracy_curve': arm.curve('eval/accuracy'),
      'unit_percentile_curves': {
        p: arm.curve(f'preactivation/layer{layer}/unit_p{p}') for p in PERCENTILES
      },
    }
  return {'num_seeds': NUM_SEEDS, 'arms': rows}


def draw(record: dict, context: StudyContext) -> plt.Figure:
  """Test accuracy of the three arms (seed means) and, per arm, the last hidden layer's unit
  0 sigmoid-input percentiles in seed 0 (Figure 1(b, c)). Drawn from the record."""
  rows = record['arms']
  figure, axes = plt.subplots(
    1, 1 + len(rows), figsize=(5 * (1 + len(rows)), 4.4), sharey=False, layout='constrained'
  )
  for name, row in rows.items():
    axes[0].plot(*zip(*row['accuracy_curve'], strict=True), label=ARMS[name])
  axes[0].set(
    title=f'test accuracy (mean of {record["num_seeds"]} seeds)', xlabel='step', ylim=(0.9, 1.0)
  )
  axes[0].legend()
  for ax, (name, row) in zip(axes[1:], rows.items(), strict=True):
    for p, curve in row['unit_percentile_curves'].items():
      ax.plot(*zip(*curve, strict=True), label=f'{p}th')
    ax.set(
      title=f'{ARMS[name]}:\nsigmoid input percentiles, last layer, unit 0, seed 0',
      xlabel='step',
    )
    ax.legend(fontsize=8)
  figure.suptitle(
    f'Study 3: BN on Wu vs BN on the layer input u, MNIST MLP, {context.steps(NUM_STEPS)} steps'
  )
  return figure


def table(record: dict, context: StudyContext) -> list[str]:
  """table.md's lines, from the record."""
  rows = record['arms']
  steps = list(next(iter(rows.values()))['test_accuracy'])
  lines = [
    f'MNIST MLP (3x100 sigmoid, batch 60, SGD lr 2.0), {context.steps(NUM_STEPS)} steps, '
    f'{record["num_seeds"]} seeds side by side per arm: mean (min to max) over the seeds. '
    'Location drift: per unit of the last hidden layer, how far its median sigmoid input '
    'moved from early to late in training (results/mnist/README.md), median (quartiles) over '
    'the units of all seeds.',
    '',
    '| arm | '
    + ' | '.join(f'test acc. @ {s}' for s in steps)
    + ' | steps to 97% | location drift |',
    '|---|' + '---|' * (len(steps) + 2),
  ]
  for name, row in rows.items():
    location = row['location_drift']
    lines.append(
      f'| {ARMS[name]} | '
      + ' | '.join(fmt_seeds(row['test_accuracy'][s]['per_seed']) for s in steps)
      + f' | {" / ".join("—" if r is None else str(r) for r in row["steps_to_97"])} | '
      + (
        '—'
        if location is None
        else f'{location["median"]:.3g} ({location["q25"]:.3g} to {location["q75"]:.3g})'
      )
      + ' |'
    )
  return lines


def run(context: StudyContext) -> None:
  started = time.perf_counter()
  record = measure(context, train_arms(context, arm_configs(context)))
  write_results(context, draw(record, context), table(record, context), record, started, MNIST_DATA)
