r"""The MNIST training step (batch 60), bn_repro against PyTorch in one process.

  .venv/bin/pip install -r requirements-test.txt
  .venv/bin/python -m benchmarks.mnist_vs_torch [--steps=500] [--repeats=5]

For both arms of configs/mnist.py (no BN, BN), on the same SYNTHETIC uint8 images
(timing only) and the same batch order, starting from the same weights:
- bn_repro: the fused training loop (`lax.scan` of --steps steps per host call);
- PyTorch eager: a Python loop of the same SGD steps;
- PyTorch `torch.compile` of the step (forward, backward and optimizer), if it works.
First, both frameworks train 100 steps from the same weights on the same batches and
the largest loss difference is printed, so the timed computations are the same.
Microseconds per step (best of --repeats runs of --steps steps), the speed-up of
bn_repro, the fraction of the matmul roofline (benchmarks.roofline), and the step's time
over that of its matmuls alone at the same shapes (what these small matmuls can reach).
"""

import time

import jax
import numpy as np
import torch
from absl import app, flags

from benchmarks.roofline import matmul_flops, measure_matmul_peak, time_step_matmuls
from benchmarks.timing import TrainingBench
from benchmarks.torch_mlp import TorchMLP, make_sgd_step
from bn_repro.configuration.files import load_config
from bn_repro.distributed import replicated_to_host

_STEPS = flags.DEFINE_integer('steps', 500, 'Steps per timed run (and per bn_repro host call).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs per implementation; the best counts.')
_CHECK_STEPS = 100


def _time_torch(step, images: torch.Tensor, labels: torch.Tensor, indices: list) -> float:
  for i in indices[0][:20]:  # Warm-up (and compilation, for torch.compile).
    step(images[i], labels[i])
  best = float('inf')
  for run in indices[1:]:
    start = time.perf_counter()
    for i in run:
      loss = step(images[i], labels[i])
    loss.item()
    best = min(best, (time.perf_counter() - start) / len(run))
  return best


def _loss_gap(bench: TrainingBench, model: TorchMLP, config, images, labels) -> float:
  """Largest |loss difference| over the first steps from the same weights and batches."""
  indices = bench.train_input.per_steps(0, _CHECK_STEPS)
  state = jax.tree.map(lambda x: x.copy(), bench.state)  # The chunk donates its input state.
  _, metrics = bench.chunk(state, bench.train_input.resident, indices)
  jax_losses = replicated_to_host(metrics)['loss']
  step = make_sgd_step(model, config.optimizer.learning_rate)
  torch_losses = [float(step(images[i], labels[i])) for i in np.asarray(indices).astype(np.int64)]
  return float(np.max(np.abs(jax_losses - np.array(torch_losses))))


def _torch_model(params: dict, config) -> TorchMLP:
  return TorchMLP(params, len(config.model.hidden_sizes), config.model.norm.kind == 'batch')


def main(argv: list[str]) -> None:
  del argv
  peak = measure_matmul_peak()
  print(
    f'jax {jax.__version__} ({jax.devices()[0].device_kind}), torch {torch.__version__} '
    f'({torch.get_num_threads()} threads); float32 matmul peak measured {peak / 1e9:.0f} GFLOP/s'
  )
  matmuls_only = time_step_matmuls(784, (100, 100, 100), 10, 60)
  print(
    "SYNTHETIC uint8 images (timing only); batch 60; plain SGD. The step's matmuls alone, "
    f'at its shapes: {matmuls_only * 1e6:.0f} us/step '
    f'({matmul_flops(784, (100, 100, 100), 10, 60) / matmuls_only / peak:.0%} of the peak).'
  )
  print(
    '| arm | loss gap, 100 steps | bn_repro us/step | torch eager us/step | '
    'torch.compile us/step | speed-up vs eager | vs compile | roofline (bn_repro) | '
    'bn_repro / matmuls alone |'
  )
  print('|---|---|---|---|---|---|---|---|---|')
  times = {}
  for variant in ('baseline', 'bn'):
    config = load_config(f'configs/mnist.py:{variant}')
    bench = TrainingBench(config, (28, 28, 1), 10, scan_unroll=config.scan_unroll)
    images = torch.from_numpy(bench.images)
    labels = torch.from_numpy(bench.labels.astype(np.int64))
    params = replicated_to_host(bench.state.params)
    gap = _loss_gap(bench, _torch_model(params, config), config, images, labels)
    runs = [
      bench.train_input.per_steps(r * _STEPS.value, _STEPS.value) for r in range(_REPEATS.value + 1)
    ]
    _, ours = bench.time_calls(runs[:2], _REPEATS.value)
    torch_runs = [np.asarray(r).astype(np.int64) for r in runs]
    eager = _time_torch(
      make_sgd_step(_torch_model(params, config), config.optimizer.learning_rate),
      images,
      labels,
      torch_runs,
    )
    try:
      compiled_step = torch.compile(
        make_sgd_step(_torch_model(params, config), config.optimizer.learning_rate)
      )
      compiled = _time_torch(compiled_step, images, labels, torch_runs)
    except Exception as error:  # noqa: BLE001 (reported, not hidden: the table says why)
      print(f'torch.compile failed for {variant}: {type(error).__name__}: {error}'[:300])
      compiled = None
    times[variant] = ours
    flops = matmul_flops(784, tuple(config.model.hidden_sizes), 10, config.batch_size)
    compiled_text = '—' if compiled is None else f'{compiled * 1e6:.0f}'
    versus_compiled = '—' if compiled is None else f'{compiled / ours:.1f}x'
    print(
      f'| {variant} | {gap:.1e} | {ours * 1e6:.0f} | {eager * 1e6:.0f} | {compiled_text} | '
      f'{eager / ours:.1f}x | {versus_compiled} | {flops / ours / peak:.0%} | '
      f'{ours / matmuls_only:.2f} |'
    )
  print(f'bn_repro BN step / no-BN step: {times["bn"] / times["baseline"]:.2f}')


if __name__ == '__main__':
  app.run(main)
