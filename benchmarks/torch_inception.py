"""BN-Inception (configs/inception.py's full-size BN variants) in PyTorch, for benchmarks only.

The same layers as `bn_repro.models.inception.BNInception` with the defaults (plain
7x7/2 stem, 128-channel pool projections in 4c/4d, no convolution bias, BN before
every ReLU, no dropout): the parameter count must equal bn_repro's
(benchmarks/inception_step.py checks it). Padding is PyTorch's symmetric padding where
XLA's SAME pads one more pixel on the far side: output shapes and FLOPs are the same.
"""

import torch
from torch import nn

from bn_repro.models.inception import MODULES


def _unit(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
  """Convolution (no bias), BN, ReLU: g(BN(W * u))."""
  return nn.Sequential(
    nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
    nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.01),
    nn.ReLU(inplace=True),
  )


class _Module(nn.Module):
  """One row of the appendix table; see `bn_repro.models.inception.InceptionModule`."""

  def __init__(self, c_in: int, spec: tuple):
    super().__init__()
    _, n1x1, n3r, n3, nd3r, nd3, pool, proj, stride = spec
    self.branch_1x1 = _unit(c_in, n1x1, 1) if n1x1 else None
    self.branch_3x3 = nn.Sequential(_unit(c_in, n3r, 1), _unit(n3r, n3, 3, stride))
    self.branch_double = nn.Sequential(
      _unit(c_in, nd3r, 1), _unit(nd3r, nd3, 3), _unit(nd3, nd3, 3, stride)
    )
    if pool == 'max':
      pooling = nn.MaxPool2d(3, stride, padding=1)
    else:
      pooling = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
    self.branch_pool = nn.Sequential(pooling, _unit(c_in, proj, 1)) if proj else pooling
    self.channels = (n1x1 or 0) + n3 + nd3 + (proj or c_in)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    branches = [self.branch_3x3(x), self.branch_double(x), self.branch_pool(x)]
    if self.branch_1x1 is not None:
      branches.insert(0, self.branch_1x1(x))
    return torch.cat(branches, dim=1)


class TorchBNInception(nn.Module):
  """Images `(N, 3, H, W)` float -> logits `(N, num_classes)`."""

  def __init__(self, num_classes: int = 1000, pool_proj_4cd: int = 128):
    super().__init__()
    layers = [
      _unit(3, 64, 7, 2),
      nn.MaxPool2d(3, 2, padding=1),
      _unit(64, 64, 1),
      _unit(64, 192, 3),
      nn.MaxPool2d(3, 2, padding=1),
    ]
    channels = 192
    for spec in MODULES:
      if spec[7] is None:
        spec = spec[:7] + (pool_proj_4cd,) + spec[8:]
      module = _Module(channels, spec)
      layers.append(module)
      channels = module.channels
    self.features = nn.Sequential(*layers)
    self.classifier = nn.Linear(channels, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.classifier(self.features(x).mean(dim=(2, 3)))
