r"""Where a training step's time goes on XLA:CPU: a `jax.profiler` trace, summed by kind of op.

  .venv/bin/python -m benchmarks.profile_step [--config=configs/inception.py:bn_x5] \
      [--batch_size=16] [--image_size=224] [--scan_unroll=2] [--top=15]

Traces one call of two training steps of the config, unrolled unless --scan_unroll=1
(SYNTHETIC uint8 images, timing only, no photometric distortion, one BN group per batch),
after an untimed and an untraced timed call, and reads the trace back
with `jax.profiler.ProfileData`. Every XLA operation the CPU threads ran is matched, by
name, to its instruction in the compiled HLO and put in one of these kinds:
convolution forward / input gradient / weight gradient (a weight gradient's output has
a kernel's shape), matmul (1x1 convolutions, the
classifier), reduction run by a library (BN statistics), pooling (reduce-window), and
XLA's own loop fusions (elementwise work, layout copies, the max-pool VJP). Times are
milliseconds per step summed over threads, so they can add up to more than the wall
time when operations overlap.
"""

import collections
import pathlib
import re
import tempfile
import time

import jax
from absl import app, flags

from benchmarks.timing import TrainingBench
from bn_repro.configuration.files import load_config, override

_CONFIG = flags.DEFINE_string('config', 'configs/inception.py:bn_x5', 'Config file:variant.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Examples per step (one BN group).')
_SIZE = flags.DEFINE_integer('image_size', None, "ImageNet image side (default: the config's).")
_TOP = flags.DEFINE_integer('top', 15, 'Slowest single operations to list.')
_STEPS = 2  # Unrolled steps per traced call (see benchmarks/README.md on XLA:CPU loops).
_UNROLL = flags.DEFINE_integer(
  'scan_unroll', _STEPS, 'lax.scan unroll of the traced steps (1: a rolled loop).'
)


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (its HLO line, the body of the computation it calls, or '')."""
  bodies = {
    match.group(1): match.group(2)
    for match in re.finditer(r'^%(\S+) \(.*?\{\n(.*?)\n\}', hlo_text, re.S | re.M)
  }
  instructions = {}
  for line in hlo_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%(\S+) = ', line)
    if match:
      called = re.search(r'calls=%([\w.\-]+)', line)
      instructions[match.group(1)] = (line, bodies.get(called.group(1), '') if called else '')
  return instructions


def kind_of(line: str, body: str, kernel_shapes: set[tuple[int, ...]]) -> str:
  """The kind of operation an HLO instruction (its line and called body) performs;
  `kernel_shapes` holds the sorted shapes of the model's convolution kernels."""
  code = body or line
  conv = re.search(r'= f32\[([\d,]+)\]\S* convolution\(', code)
  if conv:
    output = tuple(sorted(int(d) for d in conv.group(1).split(',')))
    if output in kernel_shapes:
      return 'convolution, weight gradient'
    return 'convolution, input gradient' if 'transpose(jvp(' in line else 'convolution, forward'
  if ' dot(' in code:
    return 'matmul (dense layers, 1x1 convolutions)'
  if '__ynn_fusion' in line and 'reduce(' in code:
    return 'reduction in a library call (BN statistics)'
  if 'reduce-window(' in code or 'select-and-scatter(' in code:
    return 'pooling (reduce-window)'
  if 'all-reduce' in line:
    return 'all-reduce (BN statistics, gradients)'
  return 'XLA loop fusions (elementwise, layout copies, max-pool VJP)'


def op_name(line: str) -> str:
  match = re.search(r'op_name="([^"]+)"', line)
  return match.group(1).replace('jit(chunk)/closed_call/', '') if match else ''


def source_names(instructions: dict[str, tuple[str, str]]) -> dict[str, str]:
  """Instruction name -> the model code it comes from (its op_name metadata, or else its
  first consumer's: library fusions of weight gradients carry none themselves)."""
  names, consumers = {}, collections.defaultdict(list)
  for name, (line, _) in instructions.items():
    names[name] = op_name(line)
    for operand in re.findall(r'%([\w.\-]+)', line.split(' = ', 1)[1]):
      consumers[operand].append(name)
  for name, where in names.items():
    if not where:
      names[name] = next((names[c] for c in consumers[name] if names.get(c)), '')
  return names


def operation_times(trace_dir: pathlib.Path) -> tuple[collections.Counter, collections.Counter]:
  """(nanoseconds, runs) per operation name, summed over the CPU threads of the trace."""
  (trace_file,) = trace_dir.glob('**/*.xplane.pb')
  nanoseconds, runs = collections.Counter(), collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(str(trace_file)).planes:
    for line in plane.lines:
      if line.name.startswith('tf_XLAEigen'):
        for event in line.events:
          nanoseconds[event.name] += event.duration_ns
          runs[event.name] += 1
  return nanoseconds, runs


def main(argv: list[str]) -> None:
  del argv
  config = load_config(_CONFIG.value)
  overrides = dict(batch_size=_BATCH.value, steps_per_call=_STEPS)
  if 'group_size' in config.model.get('bn', {}):
    overrides['model__norm__group_size'] = _BATCH.value
  if config.model.name == 'inception':
    overrides['input__distortion_strength'] = 0.0
  if config.input.dataset == 'imagenet2012':
    size = _SIZE.value or config.input.image_size
    overrides['input__image_size'] = size
    shape, classes = (size, size, 3), 1000
  else:  # MNIST and Fashion-MNIST.
    shape, classes = (28, 28, 1), 10
  config = override(config, **overrides)
  bench = TrainingBench(config, shape, classes, scan_unroll=_UNROLL.value)
  per_steps = [bench.train_input.per_steps(i * _STEPS, _STEPS) for i in range(3)]
  kernel_shapes = {
    tuple(sorted(p.shape)) for p in jax.tree.leaves(bench.state.params) if p.ndim == 4
  }
  state, resident = bench.state, bench.train_input.resident
  chunk = bench.chunk.func.lower(*bench.chunk.args, state, resident, per_steps[0]).compile()
  state, metrics = chunk(state, resident, per_steps[0])  # Warm-up, not timed.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  state, metrics = chunk(state, resident, per_steps[1])
  jax.block_until_ready(metrics)
  untraced_ms = (time.perf_counter() - start) * 1e3 / _STEPS
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      state, metrics = chunk(state, resident, per_steps[2])
      jax.block_until_ready(metrics)
    wall_ms = (time.perf_counter() - start) * 1e3 / _STEPS
    totals, runs = operation_times(pathlib.Path(trace_dir))

  hlo = chunk.as_text()
  instructions = hlo_instructions(hlo)
  sources = source_names(instructions)
  by_kind, count = collections.Counter(), collections.Counter()
  ops = []
  for name, nanoseconds in totals.items():
    if name not in instructions:  # Runtime bookkeeping (executor, thread-pool waits).
      continue
    line, body = instructions[name]
    kind = kind_of(line, body, kernel_shapes)
    by_kind[kind] += nanoseconds
    count[kind] += runs[name]
    ops.append((nanoseconds, name, kind, sources.get(name, '')))
  op_total = sum(by_kind.values())
  print(
    f'{_CONFIG.value}, batch {_BATCH.value}, {jax.devices()[0].device_kind}: '
    f'{untraced_ms:.1f} ms/step untraced, {wall_ms:.1f} traced, {op_total / 1e6 / _STEPS:.1f} '
    'of operations summed over threads'
  )
  print('| kind of operation | ms/step | share | operations per step |')
  print('|---|---|---|---|')
  for kind, nanoseconds in by_kind.most_common():
    print(
      f'| {kind} | {nanoseconds / 1e6 / _STEPS:.1f} | {nanoseconds / op_total:.0%} | '
      f'{count[kind] // _STEPS} |'
    )
  print(f'\nSlowest {_TOP.value} operations (ms in the traced call):')
  for nanoseconds, name, kind, where in sorted(ops, reverse=True)[: _TOP.value]:
    print(f'{nanoseconds / 1e6:8.1f}  {name:28s} {kind:40s} {where[:90]}')


if __name__ == '__main__':
  app.run(main)
