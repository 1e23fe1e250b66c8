"""The paper's Figure 2 analog and its "steps to match Inception" table, from event files.

The target accuracy is the Inception arm's best (the paper's 72.2% plays that role);
each variant's steps to reach it and its own best are read from its evaluations.
"""

import json
import pathlib

from bn_repro.config_files import load_config_module

Scalars = dict[str, list[tuple[int, float]]]

# The paper's variants, in the order of its table (configs/inception.py defines them).
VARIANT_ORDER = load_config_module('configs/inception.py').VARIANTS
# The paper's table (Sec. 4.2.2): steps to 72.2% and max top-1 accuracy on ImageNet.
PAPER = {
  'inception': ('31.0M', '72.2%'),
  'bn_baseline': ('13.3M', '72.7%'),
  'bn_x5': ('2.1M', '73.0%'),
  'bn_x30': ('2.7M', '74.8%'),
  'bn_x5_sigmoid': ('never', '69.8%'),
  'inception_sigmoid': ('never', 'chance (< 0.1%)'),
}


def summarize_variants(variants: dict[str, Scalars]) -> dict[str, object]:
  """The summary.json record: target = the Inception arm's best test accuracy."""
  target = max(a for _, a in variants['inception']['eval/accuracy'])
  out = {}
  for name, scalars in variants.items():
    accuracy = scalars['eval/accuracy']
    out[name] = {
      'max_accuracy': max(a for _, a in accuracy),
      'steps_to_target': next((s for s, a in accuracy if a >= target), None),
      'steps': accuracy[-1][0],
      'wall_time_s': scalars['train/elapsed_s'][-1][1],
    }
  return {'target_accuracy': target, 'variants': out}


def plot_figure2(variants: dict[str, Scalars], target: float, path: pathlib.Path) -> None:
  """Test accuracy vs training steps for every variant, with the target line."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name in VARIANT_ORDER:
    if name in variants:
      steps, values = zip(*variants[name]['eval/accuracy'], strict=True)
      ax.plot(steps, values, label=name)
  ax.axhline(target, color='gray', linestyle=':', label='Inception best')
  ax.set_xlabel('training steps')
  ax.set_ylabel('test accuracy (top-1)')
  ax.legend()
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_summary(
  variants: dict[str, Scalars], run_info: dict, out_dir: pathlib.Path, command: str
) -> dict[str, object]:
  """Writes summary.json and summary.md (the paper's table with ours beside it)."""
  record = summarize_variants(variants)
  record.update(commit=run_info.get('commit'), hardware=run_info.get('hardware'), command=command)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / 'summary.json').write_text(json.dumps(record, indent=2) + '\n')
  lines = [
    '# BN-Inception variants: steps to match the Inception arm',
    '',
    f'Command: `{command}`  ',
    f'Hardware: {record["hardware"]}; commit {record["commit"]}  ',
    f"Target: the Inception arm's best test accuracy, {record['target_accuracy']:.4f}",
    '',
    '| variant | steps to target | max accuracy | steps run | wall time | paper: steps to 72.2% '
    '| paper: max |',
    '|---|---|---|---|---|---|---|',
  ]
  for name in VARIANT_ORDER:
    if name in record['variants']:
      v = record['variants'][name]
      reached = '—' if v['steps_to_target'] is None else f'{v["steps_to_target"]:,}'
      paper_steps, paper_max = PAPER[name]
      lines.append(
        f'| {name} | {reached} | {v["max_accuracy"]:.4f} | {v["steps"]:,} | '
        f'{v["wall_time_s"]:.0f} s | {paper_steps} | {paper_max} |'
      )
  (out_dir / 'summary.md').write_text('\n'.join(lines) + '\n')
  return record
