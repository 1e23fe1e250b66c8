"""The fully connected MNIST network of the paper's Sec. 4.1 (Figure 1).

Three hidden layers of 100 units, y = g(Wu + b), and a 10-way softmax layer. In
the BN variant every hidden layer computes g(BN(Wu)): the bias b is dropped
because BN's mean subtraction cancels it and beta takes its role (Sec. 3.2).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bn_repro import layers
from bn_repro.nonlinearities import get_nonlinearity

NORMALIZATIONS = ('none', 'batch')


class MLP(nn.Module):
  """Multilayer perceptron with optional batch normalization before each nonlinearity.

  Attributes:
    hidden_sizes: units per hidden layer (the paper: 100, 100, 100).
    num_classes: output units (10 for MNIST).
    nonlinearity: a name in `bn_repro.nonlinearities.NONLINEARITIES`.
    normalization: 'none' (the paper's baseline) or 'batch' (BN on Wu).
    init_std: std of the Gaussian initialization of every weight matrix; the
      paper says only "small random Gaussian values".
    bn_momentum, bn_epsilon, bn_group_size: see `bn_repro.layers.BatchNorm`.
    axis_name: the data-parallel mesh axis, passed to BatchNorm.
  """

  hidden_sizes: Sequence[int]
  num_classes: int
  nonlinearity: str
  normalization: str
  init_std: float
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-5
  bn_group_size: int | None = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps images `(N, H, W, C)` or `(N, D)` to logits `(N, num_classes)`.

    The input of each hidden layer's nonlinearity, shape `(N, units)`, is sown
    into the `intermediates` collection as `preactivation` (Figure 1(b, c)).
    """
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(
        f'Unknown normalization {self.normalization!r}; expected one of {NORMALIZATIONS}.'
      )
    g = get_nonlinearity(self.nonlinearity)
    kernel_init = nn.initializers.normal(stddev=self.init_std)
    use_bn = self.normalization == 'batch'
    x = x.reshape((x.shape[0], -1))
    for i, units in enumerate(self.hidden_sizes):
      x = nn.Dense(units, use_bias=not use_bn, kernel_init=kernel_init, name=f'dense{i}')(x)
      if use_bn:
        x = layers.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          epsilon=self.bn_epsilon,
          group_size=self.bn_group_size,
          axis_name=self.axis_name,
          name=f'bn{i}',
        )(x)
      self.sow('intermediates', f'preactivation{i}', x)
      x = g(x)
    return nn.Dense(self.num_classes, kernel_init=kernel_init, name='logits')(x).astype(jnp.float32)
