"""Jitted, data-parallel training and evaluation steps.

Data parallelism is SPMD over the 1-D device mesh axis `batch` with
`jax.shard_map` under `jax.jit` (the pmap programming model). Parameters,
optimizer state and BN running statistics are replicated; each device sees
its slice of the global mini-batch. The gradient is taken of the pmean'd loss:
under shard_map the cotangent of a replicated parameter is already summed over
devices, so this yields the gradient of the global-batch mean loss.

This module imports neither TensorFlow nor ml_collections.
"""

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from bn_repro.data import transforms
from bn_repro.data.pipeline import TrainInput
from bn_repro.distributed import AXIS
from bn_repro.nn.batch_norm import NOISE_STREAM
from bn_repro.training.seeds import over_seeds
from bn_repro.training.state import TrainState


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of logits `(N, K)` against integer labels `(N,)`."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(
  state: TrainState,
  images: jax.Array,
  labels: jax.Array,
  dropout_key: jax.Array,
  *,
  model: nn.Module,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on this device's slice `images (n, ...)`, `labels (n,)`.

  Runs inside shard_map; loss and accuracy returned are global-batch means.
  """

  def loss_fn(params):
    logits, updates = model.apply(
      {'params': params, 'batch_stats': state.batch_stats},
      images,
      train=True,
      mutable=['batch_stats'],
      rngs=model_rngs(dropout_key),
    )
    loss = lax.pmean(cross_entropy_loss(logits, labels), AXIS)
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates.get('batch_stats', {}))
  accuracy = lax.pmean(jnp.mean(jnp.argmax(logits, -1) == labels), AXIS)
  return state, {'loss': loss, 'accuracy': accuracy}


def model_rngs(key: jax.Array) -> dict[str, jax.Array]:
  """The random streams a training step's `apply` gets from the step's `key`: dropout's
  (the key itself, as before noisy BN existed) and noisy BN's (`batch_norm.NOISE_STREAM`)."""
  return {'dropout': key, NOISE_STREAM: jax.random.fold_in(key, 1)}


def make_train_chunk_fn(
  model: nn.Module,
  preprocess: transforms.Preprocessor,
  mesh: Mesh,
  train_input: TrainInput,
  *,
  seed: int,
  distortion_strength: float = 0.0,
  scan_unroll: int | bool = 1,
  num_seeds: int = 1,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """Builds `chunk(state, resident, per_step) -> (state, metrics)` for T steps per call.

  `train_input` (a `bn_repro.data.pipeline` input) says where a step's examples come
  from: `train_input.fetch(resident, per_step_slice)` returns its uint8 images and
  labels on this device, `resident` being arrays kept on device across calls (the
  whole dataset for small datasets) and `per_step` a pytree with a leading T axis
  (example indices, or streamed batches). The random numbers of a step (dropout,
  photometric distortion) derive from (seed, step, device), so a resumed run draws
  the same ones. `scan_unroll` is `lax.scan`'s unroll: inside a loop body XLA:CPU
  runs the convolutions' gradients on a slower path (benchmarks/README.md,
  `profile_step`), so conv nets unroll their few fused steps fully, and a one-step
  chunk is no loop at all.

  With `num_seeds` > 1, S = num_seeds independent runs (seeds `seed`, ..., `seed + S - 1`)
  train side by side in one program (`jax.vmap`): every array of the state but the step
  has a leading S axis (`seeds.over_seeds`), and so has each step's `per_step` after T.

  Returns:
    A jitted function returning the new state (donated in) and metrics
    {'loss', 'accuracy'}, each float32 `(T,)`, or `(T, S)` for several seeds.
  """

  def chunk(first_seed, state, resident, per_steps):
    def one_step(state, per_step, run_seed):
      step_key = jax.random.fold_in(
        jax.random.fold_in(jax.random.key(run_seed), state.step), lax.axis_index(AXIS)
      )
      distort_key, dropout_key = jax.random.split(step_key)
      images, labels = train_input.fetch(resident, per_step)
      x = preprocess(images, distort_key, distortion_strength)
      return train_step(state, x, labels, dropout_key, model=model)

    step = over_seeds(one_step, num_seeds)

    def body(state, per_step):
      return step(state, per_step, first_seed)

    length = jax.tree.leaves(per_steps)[0].shape[0]
    if length == 1:  # Straight code: even a fully unrolled length-1 scan emits a loop.
      state, metrics = body(state, jax.tree.map(lambda a: a[0], per_steps))
      return state, jax.tree.map(lambda m: m[None], metrics)
    unroll = True if scan_unroll is True or scan_unroll >= length else scan_unroll
    return lax.scan(body, state, per_steps, unroll=unroll)

  sharded = jax.shard_map(
    chunk,
    mesh=mesh,
    in_specs=(P(), P(), train_input.resident_specs, train_input.per_step_specs),
    out_specs=(P(), P()),
  )
  jitted = jax.jit(sharded, donate_argnums=1)
  # The seed is an argument, not a constant of the program, so runs that differ only in
  # their seed share one compilation (and the persistent compilation cache's entry).
  return functools.partial(jitted, jnp.asarray(seed, jnp.int32))


def mean_probabilities_over_crops(logits: jax.Array, crops: int) -> jax.Array:
  """Class probabilities `(N, K)` from logits `(N * crops, K)`: each example's softmax
  averaged over its crops (the paper's multi-crop evaluation; crops=1: the softmax)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return probs.reshape(-1, crops, probs.shape[-1]).mean(axis=1)


def eval_step(
  state: TrainState,
  images: jax.Array,
  labels: jax.Array,
  mask: jax.Array,
  *,
  model: nn.Module,
  preprocess: Callable[[jax.Array], jax.Array],
  batch_statistics: bool = False,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Inference on this device's slice of an evaluation batch: with the running statistics
  (Algorithm 2, step 11), or with `batch_statistics` BN's statistics of the evaluation batch
  itself (over every device's slice; padding examples count in the last batch's statistics).

  Args:
    images: uint8 `(n, H, W, C)`, or `(n, crops, H, W, C)` for multi-crop evaluation
      (class probabilities averaged over the crops); labels: int32 `(n,)`; mask:
      bool `(n,)`, False for padding examples, which count nowhere.

  Returns:
    Global sums {'correct', 'correct_top5', 'loss', 'count'} and each hidden layer's input to its
    nonlinearity {'preactivationI': (n, units)} for this slice.
  """
  crops = images.shape[1] if images.ndim == 5 else 0
  if crops:  # (n, crops, H, W, C): the model sees every crop.
    images = images.reshape((-1,) + images.shape[2:])
  logits, state_vars = model.apply(
    {'params': state.params, 'batch_stats': state.batch_stats},
    preprocess(images),
    train=False,
    batch_statistics=batch_statistics,
    mutable=['intermediates', 'batch_stats'] if batch_statistics else ['intermediates'],
  )
  if crops:  # Multi-crop evaluation: average the class probabilities over the crops.
    logits = jnp.log(mean_probabilities_over_crops(logits, crops))
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  top5 = lax.top_k(logits, min(5, logits.shape[-1]))[1]
  sums = {
    'correct': jnp.sum((jnp.argmax(logits, -1) == labels) & mask),
    'correct_top5': jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) & mask),
    'loss': jnp.sum(jnp.where(mask, losses, 0.0)),
    'count': jnp.sum(mask),
  }
  sums = jax.tree.map(lambda v: lax.psum(v, AXIS), sums)
  # Per-example preactivations (Figure 1) are a single-crop notion: none for multi-crop.
  intermediates = {} if crops else state_vars.get('intermediates', {})
  return sums, {name: values[0] for name, values in intermediates.items()}


def make_eval_fn(
  model: nn.Module,
  preprocess: Callable[[jax.Array], jax.Array],
  mesh: Mesh,
  batch_statistics: bool = False,
) -> Callable[..., tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
  """Jitted `eval_step` with images, labels and mask sharded over the batch axis."""

  def step(state, images, labels, mask):
    return eval_step(
      state,
      images,
      labels,
      mask,
      model=model,
      preprocess=preprocess,
      batch_statistics=batch_statistics,
    )

  return jax.jit(
    jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)), out_specs=(P(), P(AXIS))
    )
  )
