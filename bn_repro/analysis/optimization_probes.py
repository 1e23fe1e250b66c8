"""Santurkar et al. (2018), "How Does Batch Normalization Help Optimization?", Sec. 2.2
and 3.1: internal covariate shift (ICS) measured through gradients, and the smoothness of
the loss landscape along the gradient, as pure functions of a loss's value and gradient.

`value_and_grad(params) -> (loss, grads)` gives the training loss on one fixed batch (for
BN networks in training mode, batch statistics inside the gradient) and its gradient, e.g.
`jax.value_and_grad(loss_fn)`. The probes call it at several points: jit it once and call a
probe eagerly (one compiled gradient), or jit the whole probe. `layers` names the network's layers
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

These are absolute: they shrink with ||g|| as training progresses and carry the units of
the parameters. Their normalized companions (ours, not Santurkar et al.'s):
- normalized loss variation = loss variation / (eta_n ||g||^2), the range of the loss in
  units of the first-order decrease a step of the largest size eta_n predicts;
- relative gradient change = gradient predictiveness / ||g||;
- scale-invariant beta of layer l: moving only W_l along its own gradient g_l,
  beta_l = max_j ||g_l - g_l(W_l - eta_j g_l)|| / (eta_j ||g_l||), times ||W_l||^2. A loss
  invariant to the scale of W_l (W_l feeds BN: L(cW_l) = L(W_l)) has g_l(cW) = g_l(W) / c and
  curvature ~ 1/c^2, so beta_l ||W_l||^2 does not change when W_l is rescaled; in raw
  parameters a BN layer's beta would fall as its weights grow.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Params = dict
ValueAndGrad = Callable[[Params], tuple[jax.Array, Params]]


def _norm(tree: object) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def internal_covariate_shift(
  value_and_grad: ValueAndGrad,
  params: Params,
  learning_rate: float | jax.Array,
  layers: Sequence[str],
  groups: Sequence[str],
) -> dict[str, jax.Array]:
  """Santurkar et al.'s ICS of each layer in `layers` (module docstring).

  Args:
    value_and_grad: the loss on one batch and its gradient, functions of `params` only.
    params: every trainable parameter, top-level groups named in `groups`.
    learning_rate: of the plain SGD step the layers below take.
    layers: the layers whose weight gradients are compared, input to output.
    groups: every top-level group of `params`, input to output.

  Returns:
    {'l2': (len(layers),) ||G_i - G'_i||, 'cosine': (len(layers),) cos(G_i, G'_i),
     'gradient_norm': (len(layers),) ||G_i||}.
  """
  grads = value_and_grad(params)[1]
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
    after = value_and_grad(updated)[1][name]['kernel']
    l2.append(jnp.linalg.norm((before - after).ravel()))
    norm.append(jnp.linalg.norm(before.ravel()))
    cosine.append(jnp.vdot(before, after) / (norm[-1] * jnp.linalg.norm(after.ravel())))
  return {'l2': jnp.stack(l2), 'cosine': jnp.stack(cosine), 'gradient_norm': jnp.stack(norm)}


def landscape_along_gradient(
  value_and_grad: ValueAndGrad, params: Params, step_sizes: Sequence[float]
) -> dict[str, jax.Array]:
  """Loss variation, gradient predictiveness and effective beta-smoothness along the
  gradient (module docstring), with the loss at each step size `(n,)`."""
  loss, g = value_and_grad(params)
  g_norm = _norm(g)
  largest = max(step_sizes)
  losses, changes, ratios = [], [], []
  for eta in step_sizes:
    moved = jax.tree.map(lambda p, d, eta=eta: p - eta * d, params, g)
    moved_loss, moved_g = value_and_grad(moved)
    change = _norm(jax.tree.map(jnp.subtract, g, moved_g))
    losses.append(moved_loss)
    changes.append(change)
    ratios.append(change / (eta * g_norm))
  losses = jnp.stack(losses)
  variation, predictiveness = losses.max() - losses.min(), jnp.stack(changes).max()
  return {
    'loss': loss,
    'losses': losses,
    'gradient_norm': g_norm,
    'loss_variation': variation,
    'gradient_predictiveness': predictiveness,
    'beta_smoothness': jnp.stack(ratios).max(),
    'normalized_loss_variation': variation / (largest * g_norm**2),
    'relative_gradient_change': predictiveness / g_norm,
  }


def scale_invariant_beta(
  value_and_grad: ValueAndGrad,
  params: Params,
  step_sizes: Sequence[float],
  layers: Sequence[str],
) -> jax.Array:
  """beta_l ||W_l||^2 of each layer in `layers` (module docstring) `(len(layers),)`: W_l is
  `params[l]['kernel']`, moved alone along its own gradient by each of `step_sizes`."""
  grads = value_and_grad(params)[1]
  values = []
  for name in layers:
    kernel, g = params[name]['kernel'], grads[name]['kernel']
    g_norm = jnp.linalg.norm(g.ravel())
    ratios = []
    for eta in step_sizes:
      moved = {**params, name: {**params[name], 'kernel': kernel - eta * g}}
      change = jnp.linalg.norm((value_and_grad(moved)[1][name]['kernel'] - g).ravel())
      ratios.append(change / (eta * g_norm))
    values.append(jnp.stack(ratios).max() * jnp.sum(jnp.square(kernel)))
  return jnp.stack(values)
