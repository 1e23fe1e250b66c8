r"""Images per second of a BN-Inception training step at 224x224 (batch 32, one BN group).

  .venv/bin/python -m benchmarks.inception_step [--batch_size=32] [--steps=4] [--torch] \
      [--compute_dtype=bfloat16]

Times the full-size network of configs/inception.py (bn_x5, and the no-BN `inception`
arm in the same process for BN's overhead) on SYNTHETIC uint8 images (timing only),
without photometric distortions, two unrolled steps per call (on XLA:CPU one step per
call runs several times slower; see benchmarks/README.md), on the default device.
Compilation is excluded. With --torch (requirements-test.txt), also the same
BN-x5 network in PyTorch (benchmarks/torch_inception.py, parameter count checked
equal), eager, SGD with momentum, in NCHW and channels-last memory formats.
--compute_dtype=bfloat16 times bn_repro's mixed precision (`model.compute_dtype`; meant for
GPUs: XLA:CPU has no fast bfloat16 convolutions); PyTorch stays float32.
"""

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.timing import time_training_steps
from bn_repro.configuration.files import load_config, override

_BATCH = flags.DEFINE_integer('batch_size', 32, 'Examples per step (one BN group).')
_STEPS = flags.DEFINE_integer('steps', 4, 'Timed steps per variant (in calls of 2).')
_SIZE = flags.DEFINE_integer('image_size', 224, 'Image side in pixels.')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time the PyTorch implementation.')
_DTYPE = flags.DEFINE_enum(
  'compute_dtype', 'float32', ['float32', 'bfloat16'], "bn_repro's model.compute_dtype."
)


def time_variant(variant: str) -> tuple[float, int]:
  """Returns (seconds per step, parameters) of a training step of `variant`."""
  config = override(
    load_config(f'configs/inception.py:{variant}'),
    batch_size=_BATCH.value,
    model__norm__group_size=_BATCH.value,
    steps_per_call=2,
    input__image_size=_SIZE.value,
    input__distortion_strength=0.0,
    model__compute_dtype=_DTYPE.value,
  )
  shape = (_SIZE.value, _SIZE.value, 3)
  _, seconds, num_params = time_training_steps(
    config, shape, 1000, 2, calls=max(1, _STEPS.value // 2), scan_unroll=True
  )
  return seconds, num_params


def time_torch(memory_format: object, expected_params: int) -> float:
  """Seconds per SGD step of the PyTorch BN-x5 network in `memory_format`."""
  import torch

  from benchmarks.torch_inception import TorchBNInception

  model = TorchBNInception().to(memory_format=memory_format)
  num_params = sum(p.numel() for p in model.parameters())
  if num_params != expected_params:
    raise AssertionError(
      f'PyTorch BN-Inception has {num_params:,} parameters, ours {expected_params:,}.'
    )
  optimizer = torch.optim.SGD(model.parameters(), lr=0.0075, momentum=0.9)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (_BATCH.value, 3, _SIZE.value, _SIZE.value), dtype=np.uint8)
  x = (torch.from_numpy(images).float() / 255).contiguous(memory_format=memory_format)
  labels = torch.from_numpy(rng.integers(0, 1000, _BATCH.value))

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    optimizer.step()
    return loss.item()

  step()  # Warm-up.
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    step()
  return (time.perf_counter() - start) / _STEPS.value


def main(argv: list[str]) -> None:
  del argv
  device = jax.devices()[0]
  print(
    f'device: {device.device_kind} ({device.platform}); batch {_BATCH.value}, '
    f'{_SIZE.value}x{_SIZE.value}, synthetic images, bn_repro computes in {_DTYPE.value}'
  )
  print('| variant | parameters | ms/step | images/s |')
  print('|---|---|---|---|')
  seconds, params = {}, {}
  for variant in ('bn_x5', 'inception'):
    seconds[variant], num_params = time_variant(variant)
    print(
      f'| {variant} | {num_params:,} | {seconds[variant] * 1e3:.0f} | '
      f'{_BATCH.value / seconds[variant]:.1f} |'
    )
    params[variant] = num_params
  print(f'BN step / no-BN step: {seconds["bn_x5"] / seconds["inception"]:.2f}')
  if _TORCH.value:
    import torch

    for name, memory_format in (
      ('NCHW', torch.contiguous_format),
      ('channels-last', torch.channels_last),
    ):
      torch_seconds = time_torch(memory_format, params['bn_x5'])
      print(
        f'| PyTorch {torch.__version__} eager, bn_x5, {name} | {params["bn_x5"]:,} | '
        f'{torch_seconds * 1e3:.0f} | {_BATCH.value / torch_seconds:.1f} | '
        f'(bn_repro / PyTorch images/s: {torch_seconds / seconds["bn_x5"]:.2f}) |'
      )


if __name__ == '__main__':
  app.run(main)
