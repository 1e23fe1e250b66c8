"""What every experiment config shares: the `VARIANT[,option...]` argument, the run
fields, and the BN, evaluation and Algorithm 2 blocks.

A config file (one per experiment family) calls `parse_variant` and `base_config`, then
sets what its family changes. Every field is overridable from the command line
(`--config.model.norm.momentum=0.9`).
"""

import ml_collections
from ml_collections import config_dict


def parse_variant(
  arg: str, config_file: str, variants: tuple[str, ...], options: tuple[str, ...]
) -> tuple[str, set[str]]:
  """Splits 'VARIANT[,option...]' and checks both against what `config_file` offers."""
  variant, *chosen = arg.split(',')
  if variant not in variants:
    raise ValueError(f'Unknown {config_file} variant {variant!r}; expected one of {variants}.')
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
  # eval/* logs their mean, eval_seedI/* each run (in-memory datasets only).
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
  # Train on a fixed class-balanced subset of this many examples (datasets.class_balanced_subset);
  # None: the whole training split. In-memory datasets only.
  config.train_subset_size = config_dict.placeholder(int)
  config.tfds_data_dir = config_dict.placeholder(str)  # None: TFDS's default.
  # Where the offline fetch keeps what it downloads; None: $BN_REPRO_DATA_DIR or
  # ~/.cache/bn_repro.
  config.download_cache_dir = config_dict.placeholder(str)
  return config


def norm_config(kind: str, group_size: object) -> ml_collections.ConfigDict:
  """`config.model.norm`: the normalization `kind` and BatchNorm's fields
  (bn_repro/nn/batch_norm.py), one to one; a kind reads the fields its layer has
  (bn_repro/nn/normalization.py), so switching the kind keeps the paper's BN settings."""
  config = ml_collections.ConfigDict()
  # A key of bn_repro.nn.normalization.NORMS: none, batch, mean_only_batch, weight, ...
  config.kind = kind
  config.momentum = 0.99  # Of the running averages used at test time.
  config.epsilon = 1e-5
  config.group_size = group_size  # Examples per statistics group; None: the global batch.
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
  return config


def eval_config(batch_size: int) -> ml_collections.ConfigDict:
  """`config.eval`: how and when the test set is evaluated."""
  config = ml_collections.ConfigDict()
  config.batch_size = batch_size  # Images per evaluation call.
  config.num_examples = config_dict.placeholder(int)  # The first N test examples; None: all.
  config.extra_steps = ()  # Evaluations besides every eval_every steps.
  config.percentiles = (15, 50, 85)  # Of the tracked unit's input (Figure 1(b, c)).
  config.typical_unit = 0  # The unit whose input Figure 1(b, c) tracks.
  return config
