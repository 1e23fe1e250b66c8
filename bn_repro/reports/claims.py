"""The paper's claims (and Santurkar et al.'s), each with the rule, in words, that judges
it from our summary files. `results/REPORT.md` (`bn_repro.reports.paper_report`) is their
table; the code of each rule is its judge in `bn_repro.reports.judges`.

A rule is never changed to flip a verdict; where a rule was rewritten after its results were
seen, the earlier reading stays beside it as its own row, and the report's provenance column
(`bn_repro.reports.provenance`) says, from git, when each rule was fixed.
"""

import dataclasses
from collections.abc import Callable

from bn_repro.reports import judges
from bn_repro.reports.judges import NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, VERDICTS

__all__ = ['CLAIMS', 'NOT_REPRODUCED', 'NOT_TESTABLE', 'PARTLY', 'REPRODUCED', 'VERDICTS', 'Claim']


@dataclasses.dataclass(frozen=True)
class Claim:
  """One row of the report.

  Attributes:
    where: the paper's section, figure or table (or the later paper).
    claim: what it says.
    paper: its number.
    summary: the summary file, relative to `results/`; None: not testable here.
    rule: the rule, in words, that `judge` implements.
    judge: summary -> (ours, verdict).
  """

  where: str
  claim: str
  paper: str
  summary: str | None
  rule: str
  judge: Callable[[dict], tuple[str, str]] | None = None


CLAIMS = (
  Claim(
    'Fig. 1(a)',
    'With BN the MNIST network reaches higher test accuracy, faster',
    'BN ahead throughout 50k steps (read off the figure)',
    'mnist_5seeds/summary.json',
    'each arm at its own best rate of the one-seed sweep (baseline 2.0, BN 0.5), 5 seeds paired '
    'by data order: reproduced if BN is ahead by a one-sided paired t test at 95% at >= 3 of '
    'the 10k..50k marks AND reaches 97% in fewer steps by the same test; partly if either',
    judges.fig1a_paired,
  ),
  Claim(
    'Fig. 1(a), earlier reading',
    'With BN the MNIST network reaches higher test accuracy, faster',
    'BN ahead throughout 50k steps (read off the figure)',
    'mnist/summary.json',
    'reproduced if, at every learning rate of reproduce_mnist.sh, BN leads by more than 2 '
    'standard errors of the seed-mean gap at >= 3 of the 10k..50k marks; partly if at some',
    judges.fig1a_two_standard_errors,
  ),
  Claim(
    'Fig. 1(b, c)',
    "Without BN a sigmoid's input distribution moves over training; with BN it stays",
    'a visible drift without BN, none with (15th, 50th, 85th percentiles read off the figure)',
    'studies/fig1_regimes/summary.json',
    "study 9's cells where both arms trained (final test accuracy >= 0.9); holds in a cell if "
    'the baseline/BN ratio of location drift exceeds 1.5 in >= 2 of 3 seeds AND that of spread '
    'drift (medians over units and seeds) exceeds 1.5; reproduced if in every such cell, '
    'partly if in some; the tuned-rate cells (lr 0.5 and 2.0, init std 0.1) reported first',
    judges.fig1bc_location_and_spread,
  ),
  Claim(
    'Fig. 1(b, c), earlier reading',
    "Without BN a sigmoid's input distribution moves over training; with BN it stays",
    'a visible drift without BN, none with (one unit, read off the figure)',
    'studies/fig1_regimes/summary.json',
    "study 9's per-cell rule (its docstring); reproduced if it holds in every cell, partly "
    'if in some',
    judges.fig1bc_location_only,
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-Baseline matches Inception in fewer steps',
    '13.3M vs 31.0M steps (2.3x)',
    'inception_small/summary.json',
    'reproduced if every BN-Baseline seed reaches the target at least 2x sooner than '
    "Inception's median; partly if its median is sooner",
    judges.inception_faster('bn_baseline', 2.0),
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-x5 matches Inception with far fewer steps',
    '2.1M vs 31.0M steps (14.8x)',
    'inception_small/summary.json',
    "reproduced if every BN-x5 seed reaches the target at least 5x sooner than Inception's "
    'median; partly if its median is sooner',
    judges.inception_faster('bn_x5', 5.0),
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'BN-x30 reaches a higher accuracy than Inception',
    '74.8% vs 72.2% max',
    'inception_small/summary.json',
    "reproduced if BN-x30's worst seed beats Inception's best; partly if its median does",
    judges.bn_x30_higher,
  ),
  Claim(
    'Table (Sec. 4.2.2)',
    'With BN, sigmoid Inception trains; without, it does not',
    '69.8% (BN-x5-Sigmoid) vs chance',
    'inception_small/summary.json',
    'reproduced if BN-x5-Sigmoid exceeds 50% and Inception with sigmoid stays below 20%',
    judges.sigmoid_inception,
  ),
  Claim(
    'Table (Sec. 4.2.2), earlier proxy design',
    'With BN, sigmoid Inception trains; without, it does not',
    '69.8% (BN-x5-Sigmoid) vs chance',
    'inception_small/earlier_design/summary.json',
    'reproduced if BN-x5-Sigmoid exceeds 50% and Inception with sigmoid stays below 20%',
    judges.sigmoid_inception,
  ),
  Claim(
    'Table (Sec. 4.2.3)',
    'An ensemble of 6 BN networks: 4.82% top-5 error on ImageNet',
    '4.82% top-5 test error',
    None,
    'needs ImageNet and days of accelerator time; not testable on this machine',
  ),
  Claim(
    'Sec. 2',
    'With the normalization outside the gradient, the bias b grows without bound',
    'b grows indefinitely while the loss stays fixed',
    'studies/stats_in_gradient/summary.json',
    'reproduced if, in every seed, with the mean held out the norm of b exceeds 1 after 1k '
    'steps and grows to the end, and stays below 1e-3 with the mean inside',
    judges.stats_in_gradient,
  ),
  Claim(
    'Sec. 3.3',
    'BN allows higher learning rates',
    'x5 and x30 rates train (BN-x5, BN-x30)',
    'studies/learning_rates/summary.json',
    'reproduced if the largest rate that trains is higher with BN for the MLP and the '
    'Inception proxy; partly if for one',
    judges.higher_rates,
  ),
  Claim(
    'Sec. 3.3',
    'BN is invariant to the scale of the weights',
    'BN((aW)u) = BN(Wu)',
    'studies/learning_rates/summary.json',
    'reproduced if the logits change by < 1e-5 (relative) for a in 0.01..100 with epsilon 0',
    judges.weight_scale,
  ),
  Claim(
    'Algorithm 2',
    'Inference with population statistics (unbiased variance) is deterministic and accurate',
    'used for all inference',
    'studies/inference_statistics/summary.json',
    'reproduced if population statistics are within 0.3 points (2 SE of a 10k test set) of the '
    'moving averages and beat mini-batch statistics over test batches of 50 (seed means)',
    judges.population_statistics,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN with noise injected after it trains about as well as BN',
    'noisy BN ~ BN (their Fig. 2)',
    'studies/noisy_bn/summary.json',
    "study 10's rule per setting (its docstring): test accuracy with noise-free population "
    'statistics; reproduced if it holds at every n = 1 setting, partly if at some',
    judges.noisy_bn,
  ),
  Claim(
    'Santurkar et al. 2018, earlier reading',
    'BN with noise injected after it trains about as well as BN',
    'noisy BN ~ BN (their Fig. 2)',
    'studies/noisy_bn/earlier_reading/summary.json',
    "noisy BN's seed-mean final test accuracy with running averages at most 0.5 points "
    "(MLP; 1 point for a 600-step Inception proxy) below BN's at a setting; reproduced if at "
    'every setting, partly if at some',
    judges.noisy_bn_running_averages,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN does not reduce internal covariate shift (their gradient measure)',
    'ICS not smaller with BN (their Fig. 3)',
    'studies/ics_measure/summary.json',
    "study 11's rule (its docstring): a verdict per measure (L2, relative L2, cosine); "
    'reproduced if the claim holds by all three, partly if mixed',
    judges.santurkar_by_measure,
  ),
  Claim(
    'Santurkar et al. 2018, earlier reading',
    'BN does not reduce internal covariate shift (their gradient measure)',
    'ICS not smaller with BN (their Fig. 3)',
    'studies/ics_measure/earlier_reading/summary.json',
    'BN reduces ICS at a (learning rate, layer) if in 2 of 3 seeds its median L2 change over '
    "steps 1,000-10,000 is below the baseline's AND its median cosine above; reproduced if "
    'that happens in at most half of the pairs',
    judges.santurkar_study,
  ),
  Claim(
    'Santurkar et al. 2018',
    'BN makes the loss landscape smoother along the gradient',
    'smaller loss variation, gradient change, beta-smoothness (their Fig. 4)',
    'studies/loss_landscape/summary.json',
    "study 12's rule (its docstring): a verdict per measure with effect sizes; reproduced if "
    'BN is smoother by all three normalized measures, partly if mixed',
    judges.santurkar_by_measure,
  ),
  Claim(
    'Santurkar et al. 2018, earlier reading',
    'BN makes the loss landscape smoother along the gradient',
    'smaller loss variation, gradient change, beta-smoothness (their Fig. 4)',
    'studies/loss_landscape/earlier_reading/summary.json',
    'BN smoother at a learning rate if in 2 of 3 seeds its medians over steps 1,000-10,000 of '
    "loss variation, gradient predictiveness and beta-smoothness are all below the baseline's; "
    'reproduced if so at both rates',
    judges.santurkar_study,
  ),
  Claim(
    'Wu & He 2018, Fig. 1',
    "BN's error rises when the (normalization) batch is small",
    'ResNet-50 ImageNet error 23.6% at 32 images per GPU, 34.7% at 2',
    'studies/small_batches/summary.json',
    "study 13's rule (its docstring): BN's seed-mean test error at B=2 at least 0.5 points "
    'above B=32 with the seed ranges apart AND 0.5 points more than the no-normalization '
    "control's rise: reproduced; partly if only the first",
    judges.study_claim('bn_degrades'),
  ),
  Claim(
    'Wu & He 2018, Fig. 1',
    "GroupNorm's error does not depend on the batch size",
    '24.1% at 32 and at 2 images per GPU',
    'studies/small_batches/summary.json',
    "study 13's rule: GroupNorm's seed-mean test error within 0.5 points of its B=32 value "
    "at every B: reproduced; partly if only net of the control's change",
    judges.study_claim('gn_independent'),
  ),
  Claim(
    'Ioffe 2017, Sec. 4',
    "Batch Renorm recovers most of BN's loss with small mini-batches",
    'substantially better than BN with small mini-batches (abstract)',
    'studies/small_batches/summary.json',
    "study 13's rule: at each B in {2, 4} where BN lost >= 0.5 points against B=32, Batch "
    'Renorm recovers >= half of it: reproduced if at every such B, partly if at one; not '
    'testable if BN lost at neither',
    judges.study_claim('brn_recovers'),
  ),
  Claim(
    'Ioffe 2017, Sec. 4',
    'Batch Renorm matches BN with ordinary mini-batches',
    'matches BN at the usual batch (Inception-v3, ImageNet)',
    'studies/small_batches/summary.json',
    "study 13's rule: Batch Renorm's seed-mean test error at B=32 at most 0.5 points above BN's",
    judges.study_claim('brn_matches_bn'),
  ),
  Claim(
    'Ioffe 2017, Sec. 4',
    "BN's accuracy suffers when mini-batches are not i.i.d.",
    'lower validation accuracy with batches of 16 same-class pairs (Inception-v3, ImageNet)',
    'studies/non_iid_batches/summary.json',
    "study 14's rule (its docstring): at each non-i.i.d. order (same-class pairs, halves) BN's "
    'seed-mean test error >= 0.5 points above i.i.d. with the seed ranges apart AND 0.5 '
    "points more than the control's rise: reproduced if at both orders, partly if at one",
    judges.study_claim('bn_suffers'),
  ),
  Claim(
    'Ioffe 2017, Sec. 4',
    'Batch Renorm does not suffer from non-i.i.d. mini-batches',
    'keeps most of the i.i.d. accuracy where BN loses it',
    'studies/non_iid_batches/summary.json',
    "study 14's rule: at each order where BN's error rose >= 0.5 points, Batch Renorm's rise "
    "is at most half of BN's: reproduced if at every such order, partly if at one; not "
    'testable if BN rose at none',
    judges.study_claim('brn_does_not_suffer'),
  ),
  Claim(
    'Wu & He 2018',
    'GroupNorm does not depend on how the batch is drawn (no batch statistics)',
    'per-example statistics (by construction)',
    'studies/non_iid_batches/summary.json',
    "study 14's rule: GroupNorm's seed-mean test error within 0.5 points of i.i.d. at both "
    "orders: reproduced; partly if only within 0.5 of the control's change",
    judges.study_claim('gn_does_not_suffer'),
  ),
  Claim(
    'Wu & Johnson 2021, Sec. 3',
    'Population statistics (PreciseBN) are at least as accurate as the moving averages',
    'as good or better, ImageNet ResNet-50',
    'studies/precise_statistics/summary.json',
    "study 15's rule (its docstring): at every batch size (32, 256, 1024) the test error with "
    'population statistics from 10^4 samples, averaged over 10 checkpoints, at most 0.1 '
    "points above the EMA's (momentum 0.99): reproduced; partly if at some",
    judges.study_claim('population_as_accurate'),
  ),
  Claim(
    'Wu & Johnson 2021, Sec. 3',
    "The moving averages' lag costs most at large batch and early in training",
    'largest gap at large batch, early',
    'studies/precise_statistics/summary.json',
    "study 15's rule: the EMA's excess error over population statistics at the first "
    'checkpoint larger at B=1024 than at B=32, and at B=1024 larger first than last: '
    'reproduced if both, partly if one',
    judges.study_claim('gain_large_batch_early'),
  ),
  Claim(
    'Wu & Johnson 2021, Sec. 3',
    'Population statistics give a steadier test error than the moving averages',
    'steadier validation curves',
    'studies/precise_statistics/summary.json',
    "study 15's rule: the mean change of the test error between consecutive checkpoints over "
    "the last half at most the EMA's at every batch size: reproduced; partly if at some",
    judges.study_claim('population_steadier'),
  ),
  Claim(
    'Wu & Johnson 2021, Sec. 3',
    '10^3-10^4 samples suffice for the population statistics',
    '10^3-10^4 samples',
    'studies/precise_statistics/summary.json',
    "study 15's rule: at the last checkpoint the test errors from 10^3 and 10^4 samples within "
    '0.1 points at every batch size: reproduced; partly if at some',
    judges.study_claim('thousand_samples_suffice'),
  ),
  Claim(
    'Wu & Johnson 2021',
    'At small normalization batch, evaluating with batch statistics (as in training) beats '
    'population statistics',
    'the train-test inconsistency of small normalization batches',
    'studies/train_test_consistency/summary.json',
    "study 16's rule (its docstring): batch statistics over g at least 0.5 points below "
    'population statistics at g = 2 and 4: reproduced; partly if at one',
    judges.study_claim('batch_statistics_evaluation_helps'),
  ),
  Claim(
    'Wu & Johnson 2021',
    'A FrozenBN tail (the last steps trained with frozen statistics) reduces the inconsistency',
    'FrozenBN at the end of training',
    'studies/train_test_consistency/summary.json',
    "study 16's rule: the frozen-tail arm's test error at least 0.5 points below the plain "
    "arm's with population statistics at g = 2 and 4: reproduced; partly if at one",
    judges.study_claim('frozen_tail_helps'),
  ),
)
