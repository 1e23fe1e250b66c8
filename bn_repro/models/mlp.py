"""The fully connected MNIST network of the paper's Sec. 4.1 (Figure 1).

Three hidden layers of 100 units, y = g(Wu + b), and a 10-way softmax layer. In
the BN variant every hidden layer computes g(BN(Wu)): the bias b is dropped
because BN's mean subtraction cancels it and beta takes its role (Sec. 3.2).
The normalization studies vary this: the normalization kind
(`bn_repro.nn.normalization`), BN on the layer input u instead of Wu
(`bn_position='input'`), a redundant pre-BN bias, and BN statistics held out of
the gradient (the Sec. 2 example).
"""

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bn_repro.models.nonlinearities import get_nonlinearity
from bn_repro.nn import normalization as norm_lib

BN_POSITIONS = ('preactivation', 'input')


class MLP(nn.Module):
  """Multilayer perceptron with optional normalization of each hidden layer.

  Attributes:
    hidden_sizes: units per hidden layer (the paper: 100, 100, 100).
    num_classes: output units (10 for MNIST).
    nonlinearity: a name in `bn_repro.models.nonlinearities.NONLINEARITIES`.
    norm: `config.model.norm`: the normalization kind (`kind`, a key of
      `bn_repro.nn.normalization.NORMS`) and its layer's fields.
    init_std: std of the Gaussian initialization of every unnormalized weight
      matrix; the paper says only "small random Gaussian values".
    bn_position: 'preactivation' (BN on Wu, the paper's choice) or 'input' (BN on
      u, the previous layer's output, Sec. 3.2's rejected alternative; then W u keeps b).
    pre_bn_bias: keep the bias b in BN(Wu + b), which BN's centring makes redundant.
    axis_name: the data-parallel mesh axis, passed to BatchNorm.
  """

  hidden_sizes: Sequence[int]
  num_classes: int
  nonlinearity: str
  norm: Mapping[str, object]
  init_std: float
  bn_position: str = 'preactivation'
  pre_bn_bias: bool = False
  axis_name: str | None = None

  @nn.compact
  def __call__(
    self, x: jax.Array, *, train: bool, batch_statistics: bool | None = None
  ) -> jax.Array:
    """Maps images `(N, H, W, C)` or `(N, D)` to logits `(N, num_classes)`.

    `train` switches training behaviour (BN's batch statistics); `batch_statistics`
    overrides BN's choice alone (population statistics, batch-statistics inference).

    The input of each hidden layer's nonlinearity, shape `(N, units)`, is sown
    into the `intermediates` collection as `preactivationI` (Figure 1(b, c)).
    """
    kind = self.norm['kind']
    norm_lib.get_norm(kind)  # An unknown kind fails here, naming it.
    if x.ndim not in (2, 4):
      raise ValueError(
        f'MLP input shape {x.shape}: expected images (N, H, W, C) or vectors (N, D).'
      )
    if self.bn_position not in BN_POSITIONS:
      raise ValueError(f'Unknown bn_position {self.bn_position!r}; expected one of {BN_POSITIONS}.')
    g = get_nonlinearity(self.nonlinearity)
    kernel_init = nn.initializers.normal(stddev=self.init_std)
    bn = norm_lib.make_norm(
      self.norm,
      batch_statistics=train if batch_statistics is None else batch_statistics,
      axis_name=self.axis_name,
    )
    bn_on_input = bn is not None and self.bn_position == 'input'
    bn_on_preactivation = bn is not None and not bn_on_input
    x = x.reshape((x.shape[0], -1))
    for i, units in enumerate(self.hidden_sizes):
      if bn_on_input:
        x = bn(name=f'bn{i}')(x)
      x = norm_lib.linear_layer(
        kind,
        units,
        use_bias=self.pre_bn_bias or not bn_on_preactivation,
        kernel_init=kernel_init,
        name=f'dense{i}',
      )(x)
      if bn_on_preactivation:
        x = bn(name=f'bn{i}')(x)
      self.sow('intermediates', f'preactivation{i}', x)
      x = g(x)
    return nn.Dense(self.num_classes, kernel_init=kernel_init, name='logits')(x).astype(jnp.float32)
