"""The nonlinearities the paper and its follow-ups put after a normalized layer."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def lecun_tanh(x: jax.Array) -> jax.Array:
  """LeCun et al. (1998), Efficient BackProp: the symmetric sigmoid 1.7159 tanh(2x/3)."""
  return 1.7159 * jnp.tanh(2.0 * x / 3.0)


NONLINEARITIES: dict[str, Callable[[jax.Array], jax.Array]] = {
  'sigmoid': nn.sigmoid,
  'tanh': jnp.tanh,
  'relu': nn.relu,
  'lecun_tanh': lecun_tanh,
}


def get_nonlinearity(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the nonlinearity called `name`; raises naming the valid choices."""
  if name not in NONLINEARITIES:
    raise ValueError(f'Unknown nonlinearity {name!r}; expected one of {sorted(NONLINEARITIES)}.')
  return NONLINEARITIES[name]
