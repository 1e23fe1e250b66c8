r"""BN-Inception on ImageNet, paper Sec. 4.2 (Table "steps to 72.2%"), and its CPU proxy.

Variants (`--config=configs/inception.py:VARIANT[,small][,smoke]`):
  inception          no BN; dropout 40%, LRN, the original L2 and LR decay; LR 0.0015
  bn_baseline        inception + BN before each nonlinearity, nothing else
  bn_x5              BN + all Sec. 4.2.1 changes, LR x5 (0.0075)
  bn_x30             as bn_x5 with LR x30 (0.045)
  bn_x5_sigmoid      as bn_x5 with the logistic sigmoid
  inception_sigmoid  no BN, sigmoid (the paper: never beats chance)
Options: `small` = the CPU proxy (Fashion-MNIST 28x28, small stride-2 stem, width 1/8,
3,000 steps, the paper's schedule compressed into them; the data comes offline from
Debian's `dataset-fashion-mnist` package through apt, see bn_repro/data/fashion_mnist_fetch.py);
`smoke` = one step of a tiny model through the ImageNet pipeline at 32x32 (tests run it on
tfds.testing.mock_data); `small,smoke` = 4 steps of a tiny proxy model on the proxy's data,
offline (a check that the proxy runs, in seconds); `torch_bn`, `keras_bn`, `flax_bn` =
that library's BatchNorm conventions (bn_repro/nn/presets.py).

Each Sec. 4.2.1 change is its own field, so each can be ablated alone:
  optimizer.lr_multiple (1, 5, 30), model.dropout_rate (0.4 -> 0),
  optimizer.weight_decay_factor (1 -> 1/5), schedule.decay_speedup (1 -> 6),
  model.lrn (on -> off), input.shuffle ('shards' -> 'within_shards'),
  input.distortion_strength (1.0 -> 0.5).

Commands:
  python -m bn_repro.main --config=configs/inception.py:bn_x5 --workdir=runs/bn_x5  (ImageNet)
  python -m bn_repro.main --config=configs/inception.py:bn_x5,small --workdir=runs/small_bn_x5
  python -m bn_repro.main --config=configs/inception.py:bn_x5,small,smoke --workdir=/tmp/check

Values the paper does NOT STATE, chosen here:
- SGD momentum 0.9 (GoogLeNet's).
- Batch 32 per step with one BN group of 32: the paper's per-worker mini-batch, so
  step counts compare with its table; scale out with --config.batch_size=32*N (groups stay 32).
- Original L2 weight decay 4e-5 (TF-slim's Inception), 1/5 of it for the BN-x variants.
- LR decay: x0.96 every 8 epochs of 32-example steps (GoogLeNet's "4% every 8 epochs"),
  i.e. every 320,000 steps; 6x faster (53,333 steps) for the BN-x variants.
- Convolution biases in the arms without BN (GoogLeNet computes g(Wu + b)); none with BN,
  whose beta takes the bias's role (Sec. 3.2).
- Inputs: intensities in [0, 1] minus the training set's mean per channel, as GoogLeNet
  (input.preprocess='mean_subtracted'), for every arm: harmless under BN, and the no-BN arms
  get the centred input they were designed for.
- Photometric distortion strength 1.0 for Inception, 0.5 ("fewer") for the BN-x variants.
- Shuffling: the original pipeline visits shards in random order with a fixed order inside
  each shard; the BN-x variants also shuffle within shards.
- Table readings: plain 7x7 stem, 128-channel pool projections in 4c/4d
  (see bn_repro/models/inception.py).

The `small` proxy (scripts/reproduce_inception.sh --scale=small), a data-limited design so
that the no-BN baseline converges on 2 CPU cores (the paper's claim is about reaching the
accuracy of a converged Inception; a 1.6-epoch proxy judged an early-training level):
- Data: Fashion-MNIST (real, offline from Debian's `dataset-fashion-mnist` package), a
  fixed class-balanced subset of 5,000 training images (calibrated, below: the first 500 of
  each class in the stored order, `input.train_subset_size`), the same for every arm and
  seed; the whole 10,000-image test set.
- Model as before: BN-Inception at width 1/8 with a small stride-2 stem, batch 32, BN
  groups of 32; the no-BN arms keep their convolution biases and mean subtraction.
- Schedule: T = 8,000 steps (51 epochs of the subset) for Inception and BN-Baseline, the
  paper's shape over them: x0.96 every T / 96.8 = 83 steps (the paper's Inception reached
  72.2% after 96.8 of GoogLeNet's 8-epoch decay periods: 31.0M steps of 32 over 1,281,167
  images), so the LR ends at about 1/51 of its start. The BN-x arms decay 6x faster (as the
  paper) and run T // 3 = 2,666 steps, where their LR has fallen to 1/2,600 of its start
  (negligible). Inception with sigmoid also runs T/3 (a cost choice: the claim is that it
  never learns). Base LR 0.03, calibrated (below); the BN-x rates are the paper's
  multiples of it (x5: 0.15, x30: 0.9).
- Order and calibration: the Inception seeds run first. The validity gate, fixed here
  before any run: in every Inception seed the smoothed accuracy gains at most 1 point from
  step T/2 to T (its plateau is reached). Calibration may change T and the base LR only on
  Inception-arm runs before any BN arm has run (every attempt is recorded in the summary's
  `calibration`); then the design is frozen. If the gate fails on the final runs, the BN-x
  rows of the report read "not testable with this proxy", never "not reproduced".
  The base LR (0.03) and the subset (5,000) are calibrated values; every attempt, what it
  changed and why, is the summary's `calibration` (results/inception_small/README.md).
- A 300-step pilot of BN-x30 at its rate runs before the BN-x30 arms: if it diverges, the
  table says "x30 not testable at this base rate" and the arms are not run.
- Seeds: 3 of inception, bn_baseline, bn_x5, bn_x30; 2 of each sigmoid arm. BN-Baseline
  runs the whole T (no early stop: its final and maximum accuracies are rows of the table).
- Evaluation on the first 2,000 test images (binomial standard error about 0.008 at 85%)
  log-spaced early (steps 24, 34, 50, 70, 100, 140, 200, 280, 400) and every 500 steps, so
  the plateau (the last 5 evaluations, 6,000-8,000) and the gate's two windows span equal
  step ranges; each run's best (by that evaluation) and final checkpoint are re-scored on
  the full test set, and so is the target (the lowest Inception seed's final checkpoint on
  the full test set). Training accuracy: the mean of the last 5
  logged training-batch accuracies (with dropout in the arms that have it).
- The target: the minimum over the Inception seeds of the mean of their last 5
  evaluations (the paper's 72.2% plays that role); a run's steps to target: the first
  evaluation where its smoothed curve (mean over a centred window of 5 evaluations, shrunk
  at the ends) reaches it (bn_repro/reports/inception_table.py).
The earlier design (3,000 steps on all 60,000 images, every arm 1.6 epochs) is kept in
results/inception_small/earlier_design/ as sensitivity evidence.
These choices were fixed before any run of this design and are not tuned on its outcome.
"""

import ml_collections
from ml_collections import config_dict

from bn_repro.training import optim
from configs import common

# GoogLeNet's 8-epoch decay periods the paper's Inception took to reach 72.2%: 31.0M steps
# of 32 examples over ImageNet's 1,281,167 training images (the `small` schedule above).
PAPER_DECAYS_TO_TARGET = 31.0e6 * 32 / 1_281_167 / 8

VARIANTS = (
  'inception',
  'bn_baseline',
  'bn_x5',
  'bn_x30',
  'bn_x5_sigmoid',
  'inception_sigmoid',
)
OPTIONS = ('small', 'smoke')


# The `small` proxy's design (module docstring): T steps for the arms at the paper's slow
# schedule, T / 3 for the others, on a class-balanced subset of the training images.
PROXY_STEPS = 8_000
PROXY_SUBSET_SIZE = 5_000
PROXY_EVAL_STEPS = (24, 34, 50, 70, 100, 140, 200, 280, 400)


def _small_proxy(config: ml_collections.ConfigDict, variant: str, fast_decay: bool) -> None:
  """The CPU proxy's fields (every choice is explained in the module docstring)."""
  config.num_steps = (
    PROXY_STEPS // 3 if fast_decay or variant == 'inception_sigmoid' else PROXY_STEPS
  )
  config.eval_every = 500
  config.log_every = 50
  config.checkpoint_every = 500
  config.input.dataset = 'fashion_mnist'
  config.input.train_subset_size = PROXY_SUBSET_SIZE
  config.input.num_shards = 1024
  config.model.stem = 'small'
  config.model.width = 0.125
  config.optimizer.learning_rate = 0.03  # Calibrated: module docstring.
  config.schedule.decay_steps = round(PROXY_STEPS / PAPER_DECAYS_TO_TARGET)
  config.eval.batch_size = 1000
  config.eval.num_examples = 2_000
  config.eval.extra_steps = PROXY_EVAL_STEPS


def _set_model(
  config: ml_collections.ConfigDict, variant: str, uses_bn: bool, changes_4_2_1: bool
) -> None:
  """`config.model`: BN-Inception (bn_repro/models/inception.py) for `variant`."""
  config.model = ml_collections.ConfigDict()
  config.model.name = 'inception'
  config.model.nonlinearity = 'sigmoid' if variant.endswith('sigmoid') else 'relu'
  config.model.dropout_rate = 0.0 if changes_4_2_1 else 0.4
  config.model.lrn = not changes_4_2_1
  config.model.stem = 'plain'
  config.model.pool_proj_4cd = 128
  config.model.conv_bias = not uses_bn  # GoogLeNet's g(Wu + b); BN's beta replaces b.
  config.model.width = 1.0
  # 'bfloat16': mixed precision for accelerators (convolutions and activations in bfloat16;
  # parameters, BN statistics, logits and the loss stay float32). The paper's runs: float32.
  config.model.compute_dtype = 'float32'
  config.model.norm = common.norm_config(
    'batch' if uses_bn else 'none', config_dict.FieldReference(32, field_type=int)
  )


def _smoke(config: ml_collections.ConfigDict, small_data: bool) -> None:
  """The `smoke` option: a few steps of a tiny model, on the proxy's data (`small_data`)
  or on the ImageNet pipeline at 32x32 (tests use mock data)."""
  config.input.train_subset_size = None  # Whatever data the check has.
  config.num_steps = 1
  config.batch_size = 8
  config.model.norm.group_size = 4
  config.log_every = 1
  config.steps_per_call = 1
  config.eval_every = 1
  config.checkpoint_every = 1
  config.input.image_size = 32
  config.input.shuffle_buffer = 16
  config.model.width = 1 / 32
  config.eval.batch_size = 8
  config.eval.num_examples = None
  config.eval.extra_steps = ()
  if small_data:  # `small,smoke`: the proxy's data, offline, in seconds.
    config.num_steps = 4
    config.log_every = config.eval_every = config.checkpoint_every = 2
    config.eval.batch_size = 100
    config.eval.num_examples = 200
  else:  # `smoke` alone: the ImageNet pipeline on 32x32 images (tests use mock data).
    config.input.dataset = 'imagenet2012'


def get_config(arg: str = 'bn_x5') -> ml_collections.ConfigDict:
  """Returns the locked config for `arg` = 'VARIANT[,small][,smoke]'."""
  variant, options = common.parse_variant(arg, 'configs/inception.py', VARIANTS, OPTIONS)
  uses_bn = variant.startswith('bn_')
  changes_4_2_1 = variant in ('bn_x5', 'bn_x30', 'bn_x5_sigmoid')
  small = 'small' in options or 'smoke' in options

  config = common.base_config(variant)
  config.num_steps = 3_000_000
  config.batch_size = 32
  config.log_every = 100
  # Convolutions run slower inside a rolled XLA:CPU loop; fuse a few steps per host call
  # as straight-line code (benchmarks/README.md).
  config.steps_per_call = 2
  config.scan_unroll = config.get_ref('steps_per_call')  # Fully unrolled.
  config.eval_every = 10_000
  config.checkpoint_every = 10_000
  config.keep_checkpoints = 3

  config.input = common.input_config(
    'imagenet2012',
    'mean_subtracted',
    shuffle='within_shards' if changes_4_2_1 else 'shards',
    num_shards=1024,
    distortion_strength=0.5 if changes_4_2_1 else 1.0,
  )
  config.input.shuffle_buffer = 16_384  # Examples in the tf.data shuffle buffer (ImageNet).
  config.input.image_size = 224

  _set_model(config, variant, uses_bn, changes_4_2_1)
  common.apply_bn_preset(config.model.norm, options)

  lr_multiple = {'bn_x5': 5.0, 'bn_x30': 30.0, 'bn_x5_sigmoid': 5.0}.get(variant, 1.0)
  config.optimizer = optim.optimizer_config(
    learning_rate=0.0015,
    lr_multiple=lr_multiple,
    momentum=0.9,
    weight_decay=4e-5,
    weight_decay_factor=0.2 if changes_4_2_1 else 1.0,
  )
  config.schedule = optim.schedule_config(
    'exponential',
    decay_rate=0.96,
    decay_steps=320_000,
    decay_speedup=6.0 if changes_4_2_1 else 1.0,
  )

  # Images per evaluation call, crops included: with eval.crops=144 set it to a multiple of
  # 144 x devices (e.g. --config.eval.batch_size=1152 on 8 devices: 8 images, 1,152 crops).
  config.eval = common.eval_config(batch_size=500)
  config.eval.crops = 1  # 144: the paper's multi-crop evaluation (ImageNet only).

  if small:
    _small_proxy(config, variant, changes_4_2_1)
  if 'smoke' in options:  # A few steps of a tiny model: a check that everything runs.
    _smoke(config, small_data='small' in options)

  config.lock()
  return config
