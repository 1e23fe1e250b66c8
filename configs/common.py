"""What every experiment config shares: the `VARIANT[,option...]` argument, the run
fields, and the BN, evaluation and Algorithm 2 blocks.

A config file (one per experiment family) calls `parse_variant` and `base_config`, then
sets what its family changes. Every field is overridable from the command line
(`--config.model.norm.momentum=0.9`).
"""

import ml_collections
from ml_collections import config_dict

from bn_repro.nn.presets import BN_PRESETS

# Options every config file offers besides its own: a library's BatchNorm conventions
# (bn_repro/nn/presets.py), e.g. --config=configs/mnist.py:bn,torch_bn.
BN_PRESET_OPTIONS = {f'{name}_bn': name for name in BN_PRESETS}


def parse_variant(
  arg: str, config_file: str, variants: tuple[str, ...], options: tuple[str, ...]
) -> tuple[str, set[str]]:
  """Splits 'VARIANT[,option...]' and checks both against what `config_file` offers
  (`options` and the BN presets' `BN_PRESET_OPTIONS`, at most one of them)."""
  variant, *chosen = arg.split(',')
  if variant not in variants:
    raise ValueError(f'Unknown {config_file} variant {variant!r}; expected one of {variants}.')
  options = options + tuple(BN_PRESET_OPTIONS)
  presets = [option for option in chosen if option in BN_PRESET_OPTIONS]
  if len(presets) > 1:
    raise ValueError(f'{config_file}: options {presets} each set BatchNorm; choose one.')
  for option in chosen:
    if option not in options:
      raise ValueError(f'Unknown {config_file} option {option!r}; expected one of {options}.')
  return variant, set(chosen)


def base_config(variant: str) -> ml_collections.ConfigDict:
  """The run fields every experiment has, with the defaults both families use."""
  config = ml_collections.ConfigDict()
  config.variant = variant
  config.seed = 0
  # Runs trained side by side in one program (jax.vmap), seeded seed..seed+num_seeds-1;
  # eval/* logs their mean, eval_seed_sd/* their spread, WORKDIR/seedI each run (and
  # metrics.jsonl eval_seedI/*; in-memory datasets only).
  config.num_seeds = 1
  config.num_devices = config_dict.placeholder(int)  # None: all local devices.
  config.log_param_norms = False  # Log params/LAYER/NAME L2 norms with the train metrics.
  # Algorithm 2: inference statistics recomputed over the first K training batches
  # (bn_repro/nn/population_stats.py); 0: off. The final state with them is saved in
  # WORKDIR/population_checkpoint and evaluated as eval_population/*; with every_eval,
  # at every evaluation too (the moving-average vs population gap during training).
  config.population_stats = ml_collections.ConfigDict()
  config.population_stats.num_batches = 0
  config.population_stats.every_eval = False
  # 'algorithm2' (the paper: mean of the unbiased batch variances) or 'pooled' (fvcore's
  # PreciseBN: the variance of all the batches' values pooled).
  config.population_stats.estimator = 'algorithm2'
  return config


def input_config(
  dataset: str, preprocess: str, shuffle: str, num_shards: int, distortion_strength: float
) -> ml_collections.ConfigDict:
  """`config.input`: the dataset, how its pixels are fed, and how it is ordered."""
  config = ml_collections.ConfigDict()
  config.dataset = dataset
  config.preprocess = preprocess  # bn_repro/data/transforms.py PREPROCESSORS.
  config.distortion_strength = distortion_strength  # Photometric distortions; 0: none.
  config.shuffle = shuffle  # bn_repro/data/ordering.py SHUFFLES.
  config.num_shards = num_shards
  # shuffle='class_chunks' (non-i.i.d. batches, in-memory datasets): examples per same-class
  # chunk of a batch; 2: batches of same-class pairs (Ioffe 2017).
  config.class_chunk = 2
  # Train on a fixed class-balanced subset of this many examples (datasets.class_balanced_subset);
  # None: the whole training split. In-memory datasets only.
  config.train_subset_size = config_dict.placeholder(int)
  config.tfds_data_dir = config_dict.placeholder(str)  # None: TFDS's default.
  # Where the offline fetch keeps what it downloads; None: $BN_REPRO_DATA_DIR or
  # ~/.cache/bn_repro.
  config.download_cache_dir = config_dict.placeholder(str)
  return config


def norm_config(kind: str, group_size: object) -> ml_collections.ConfigDict:
  """`config.model.norm`: the normalization `kind`, BatchNorm's fields
  (bn_repro/nn/batch_norm.py) and GroupNorm's `num_groups`; a kind reads the fields its
  layer has (bn_repro/nn/normalization.py), so switching the kind keeps the paper's BN
  settings. The BN fields default to the `paper` preset (bn_repro/nn/presets.py)."""
  config = ml_collections.ConfigDict()
  # A key of bn_repro.nn.normalization.NORMS: none, batch, mean_only_batch, weight, ...
  config.kind = kind
  config.momentum = 0.99  # Of the running averages used at test time.
  config.epsilon = 1e-5
  config.group_size = group_size  # Examples per statistics group; None: the global batch.
  # What the running variance averages: 'unbiased' (Algorithm 2, torch) or 'biased'.
  config.running_variance = 'unbiased'
  # FrozenBN: from this training step on, BN normalizes with its running statistics, which
  # stop updating (freeze_affine: gamma and beta stop too); None: never.
  config.freeze_from = config_dict.placeholder(int)
  config.freeze_affine = False
  # Algorithm 1's two-pass variance; the one-pass E[x^2] - E[x]^2 (True, as flax) is faster
  # for the BN layer alone, hardly for a whole network (benchmarks/README.md).
  config.fast_variance = False
  # 'none' (Algorithm 1), 'mean' or 'mean_and_variance': batch statistics held out of the
  # gradient, the flawed scheme of the paper's Sec. 2 (ablations only).
  config.stop_gradient = 'none'
  # Noisy BN (Santurkar et al. 2018): n_mu, n_sigma of the shifting noise added after BN in
  # training (bn_repro/nn/batch_norm.py); 0: none. noise_redraw 'step' redraws each
  # unit's noise mean and std every step (theirs), 'fixed' draws them once (the control).
  config.noise_mean = 0.0
  config.noise_std = 0.0
  config.noise_redraw = 'step'
  # GroupNorm's G (kind 'group'; bn_repro/nn/group_norm.py): it must divide every
  # normalized layer's width. Wu & He 2018 use 32.
  config.num_groups = 32
  # Batch Renormalization (kind 'batch_renorm'; bn_repro/nn/batch_renorm.py): the clipping
  # bounds once relaxed, the schedule relaxing them (renorm_schedule scales the paper's to a
  # run; 0 steps: relaxed from the start), and renorm_momentum (None: r and d from the
  # inference averages, as the paper; a decay: their own averages, as tf-keras).
  config.rmax = 3.0
  config.dmax = 5.0
  config.renorm_warmup_steps = 0
  config.rmax_ramp_steps = 0
  config.dmax_ramp_steps = 0
  config.renorm_momentum = config_dict.placeholder(float)
  return config


def apply_bn_preset(norm: ml_collections.ConfigDict, options: set[str]) -> None:
  """Sets `norm`'s BatchNorm fields to the library preset named among `options`, if any."""
  for option in options & set(BN_PRESET_OPTIONS):
    norm.update(BN_PRESETS[BN_PRESET_OPTIONS[option]])


def eval_config(batch_size: int) -> ml_collections.ConfigDict:
  """`config.eval`: how and when the test set is evaluated."""
  config = ml_collections.ConfigDict()
  config.batch_size = batch_size  # Images per evaluation call.
  config.num_examples = config_dict.placeholder(int)  # The first N test examples; None: all.
  config.extra_steps = ()  # Evaluations besides every eval_every steps.
  config.percentiles = (15, 50, 85)  # Of the tracked unit's input (Figure 1(b, c)).
  config.typical_unit = 0  # The unit whose input Figure 1(b, c) tracks.
  # Evaluate with BN's statistics of each evaluation batch (of batch_size) instead of the
  # running averages (Wu & Johnson 2021's batch-statistics evaluation).
  config.batch_statistics = False
  return config
