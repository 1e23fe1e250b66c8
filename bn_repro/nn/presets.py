"""BatchNorm's conventions in the libraries models are ported from, as named presets.

Each preset sets the `BatchNorm` fields (bn_repro/nn/batch_norm.py) that make our layer
compute what that library's layer computes, outputs and running statistics alike
(tests/test_normalization_family.py checks each over 50 identical batches):

| preset | library layer | momentum: library's -> ours | running variance | eps |
|---|---|---|---|---|
| `torch` | `torch.nn.BatchNorm*d` | weight on the new batch 0.1 -> decay 0.9 | unbiased | 1e-5 |
| `keras` | Keras 3 `BatchNormalization`, tf-keras non-fused | decay 0.99 -> 0.99 | biased | 1e-3 |
| `flax` | `flax.linen.BatchNorm` | decay 0.99 -> 0.99 | biased, E[x^2]-E[x]^2 | 1e-5 |
| `paper` | ours by default: Algorithm 2's unbiased variance | decay 0.99 | unbiased | 1e-5 |

Our `momentum` is always the decay of the running averages (the weight of the old value);
torch's `momentum` is the weight of the new batch, so torch's 0.1 is our 0.9. tf-keras's
fused kernel, its default for 4-D inputs, averages the unbiased variance: there, the
`keras` preset with `running_variance='unbiased'`. Every library
normalizes training batches with the biased batch variance; they differ in what the running
variance averages. torch's `momentum=None` (a cumulative average) has no preset: it is
`population_stats` over the batches seen. Select a preset with a config option, e.g.
`--config=configs/mnist.py:bn,torch_bn`.
"""

from collections.abc import Mapping

BN_PRESETS: dict[str, Mapping[str, object]] = {
  'paper': {
    'momentum': 0.99,
    'epsilon': 1e-5,
    'running_variance': 'unbiased',
    'fast_variance': False,
  },
  'torch': {
    'momentum': 0.9,
    'epsilon': 1e-5,
    'running_variance': 'unbiased',
    'fast_variance': False,
  },
  'keras': {
    'momentum': 0.99,
    'epsilon': 1e-3,
    'running_variance': 'biased',
    'fast_variance': False,
  },
  'flax': {
    'momentum': 0.99,
    'epsilon': 1e-5,
    'running_variance': 'biased',
    'fast_variance': True,
  },
}


def bn_preset(name: str) -> Mapping[str, object]:
  """The BatchNorm fields of library `name`'s conventions.

  Raises:
    ValueError: no such preset, naming it and the presets.
  """
  if name not in BN_PRESETS:
    raise ValueError(f'Unknown BatchNorm preset {name!r}; expected one of {tuple(BN_PRESETS)}.')
  return BN_PRESETS[name]
