"""Santurkar et al. (2018), "How Does Batch Normalization Help Optimization?", Sec. 2.2
and 3.1: internal covariate shift (ICS) measured through gradients, and the smoothness of
the loss landscape along the gradient. Pure functions of a loss; jit them with the loss.

`loss_fn(params) -> scalar` is the training loss on one fixed batch (for BN networks in
training mode, batch statistics inside the gradient). `layers` names the network's layers
from input to output, each a top-level key of `params`; layer i's weight W_i is
`params[layers[i]]['kernel']`, and "the layers below layer i" are every top-level group
listed before it in `groups` (e.g. an MLP's dense0, bn0, dense1, bn1, ...).

ICS (Santurkar et al., Definition 2.1): at step t with parameters (W_1, ..., W_k) and batch
(x, y), G_i = dL/dW_i at (W_1, ..., W_k) and G'_i = dL/dW_i at (W'_1, ..., W'_{i-1}, W_i,
..., W_k), where W'_j = W_j - lr dL/dW_j is the SGD update the layers below take at this
step on the same batch. ICS_i = ||G_i - G'_i||_2, reported with cos(G_i, G'_i).

Landscape (Sec. 3.1, Figure 4): with g = dL/dw at w and step sizes eta_1..eta_n,
- loss variation = max_j L(w - eta_j g) - min_j L(w - eta_j g);
- gradient predictiveness = max_j ||g - dL/dw(w - eta_j g)||_2 (smaller: more predictive);
- effective beta-smoothness = max_j ||g - dL/dw(w - eta_j g)||_2 / ||eta_j g||_2.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Params = dict
Loss = Callable[[Params], jax.Array]


def _norm(tree: object) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def internal_covariate_shift(
  loss_fn: Loss,
  params: Params,
  learning_rate: float | jax.Array,
  layers: Sequence[str],
  groups: Sequence[str],
) -> dict[str, jax.Array]:
  """Santurkar et al.'s ICS of each layer in `layers` (module docstring).

  Args:
    loss_fn: the loss on one batch, a function of `params` only.
    params: every trainable parameter, top-level groups named in `groups`.
    learning_rate: of the plain SGD step the layers below take.
    layers: the layers whose weight gradients are compared, input to output.
    groups: every top-level group of `params`, input to output.

  Returns:
    {'l2': (len(layers),) ||G_i - G'_i||, 'cosine': (len(layers),) cos(G_i, G'_i),
     'gradient_norm': (len(layers),) ||G_i||}.
  """
  grads = jax.grad(loss_fn)(params)
  l2, cosine, norm = [], [], []
  for name in layers:
    below = groups[: groups.index(name)]
    updated = {
      key: jax.tree.map(lambda p, g: p - learning_rate * g, value, grads[key])
      if key in below
      else value
      for key, value in params.items()
    }
    before = grads[name]['kernel']
    after = jax.grad(loss_fn)(updated)[name]['kernel']
    l2.append(jnp.linalg.norm((before - after).ravel()))
    norm.append(jnp.linalg.norm(before.ravel()))
    cosine.append(jnp.vdot(before, after) / (norm[-1] * jnp.linalg.norm(after.ravel())))
  return {'l2': jnp.stack(l2), 'cosine': jnp.stack(cosine), 'gradient_norm': jnp.stack(norm)}


def landscape_along_gradient(
  loss_fn: Loss, params: Params, step_sizes: Sequence[float]
) -> dict[str, jax.Array]:
  """Loss variation, gradient predictiveness and effective beta-smoothness along the
  gradient (module docstring), with the loss at each step size `(n,)`."""
  loss, g = jax.value_and_grad(loss_fn)(params)
  g_norm = _norm(g)
  losses, changes, ratios = [], [], []
  for eta in step_sizes:
    moved = jax.tree.map(lambda p, d, eta=eta: p - eta * d, params, g)
    moved_loss, moved_g = jax.value_and_grad(loss_fn)(moved)
    change = _norm(jax.tree.map(jnp.subtract, g, moved_g))
    losses.append(moved_loss)
    changes.append(change)
    ratios.append(change / (eta * g_norm))
  losses = jnp.stack(losses)
  return {
    'loss': loss,
    'losses': losses,
    'loss_variation': losses.max() - losses.min(),
    'gradient_predictiveness': jnp.stack(changes).max(),
    'beta_smoothness': jnp.stack(ratios).max(),
  }
