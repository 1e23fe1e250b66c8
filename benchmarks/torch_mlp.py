"""The MNIST MLP of the paper's Sec. 4.1 in PyTorch, for benchmarks only (not a bn_repro model).

Built from a bn_repro MLP's parameters so both frameworks start from the same
weights: `dense{i}.kernel (in, out)` -> `Linear.weight (out, in)`, `bn{i}.scale/bias`
-> `BatchNorm1d.weight/bias` (eps 1e-5; torch's momentum 0.01 = 1 - bn_repro's 0.99;
both keep the unbiased running variance).
"""

import numpy as np
import torch


class TorchMLP(torch.nn.Module):
  """`(N, 28, 28, 1)` uint8 -> binarized -> sigmoid MLP (with BN before each sigmoid) -> logits."""

  def __init__(self, params: dict, hidden_layers: int, batch_norm: bool):
    super().__init__()
    modules = []
    for i in range(hidden_layers):
      kernel = np.asarray(params[f'dense{i}']['kernel'])
      linear = torch.nn.Linear(*kernel.shape, bias=not batch_norm)
      linear.weight.data = torch.from_numpy(kernel.T.copy())
      if not batch_norm:
        linear.bias.data = torch.from_numpy(np.asarray(params[f'dense{i}']['bias']).copy())
      modules.append(linear)
      if batch_norm:
        bn = torch.nn.BatchNorm1d(kernel.shape[1], eps=1e-5, momentum=0.01)
        bn.weight.data = torch.from_numpy(np.asarray(params[f'bn{i}']['scale']).copy())
        bn.bias.data = torch.from_numpy(np.asarray(params[f'bn{i}']['bias']).copy())
        modules.append(bn)
      modules.append(torch.nn.Sigmoid())
    kernel = np.asarray(params['logits']['kernel'])
    logits = torch.nn.Linear(*kernel.shape)
    logits.weight.data = torch.from_numpy(kernel.T.copy())
    logits.bias.data = torch.from_numpy(np.asarray(params['logits']['bias']).copy())
    modules.append(logits)
    self.layers = torch.nn.Sequential(*modules)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = (images > 127).float().reshape(images.shape[0], -1)  # bn_repro's 'binary' preprocessing.
    return self.layers(x)


def make_sgd_step(model: TorchMLP, learning_rate: float):
  """`step(images uint8 (B, 28, 28, 1), labels int64 (B,)) -> loss`: one plain SGD step."""
  optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

  def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step
