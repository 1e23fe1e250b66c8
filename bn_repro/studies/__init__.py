"""The normalization studies (issue #4): `scripts/study.sh NAME` runs one, writing
`results/studies/NAME/{figure.png, table.md, summary.json}`.

Each module trains its arms with the ordinary trainer and configs and exposes
`run(context: bn_repro.studies.common.StudyContext)`.
"""

import types

from bn_repro.studies import (
  bias_redundancy,
  fig1_regimes,
  group_size,
  inference_statistics,
  learning_rates,
  nonlinearity_grid,
  stats_in_gradient,
  weight_norm,
  where_to_normalize,
)

STUDIES: dict[str, types.ModuleType] = {
  'stats_in_gradient': stats_in_gradient,  # 1. Sec. 2's bias example.
  'inference_statistics': inference_statistics,  # 2. Algorithm 2 vs moving averages.
  'where_to_normalize': where_to_normalize,  # 3. BN on Wu vs on u.
  'bias_redundancy': bias_redundancy,  # 4. BN(Wu + b) = BN(Wu).
  'nonlinearity_grid': nonlinearity_grid,  # 5. Nonlinearity x normalization.
  'learning_rates': learning_rates,  # 6. Higher learning rates, weight scale.
  'weight_norm': weight_norm,  # 7. WN vs BN.
  'group_size': group_size,  # 8. Statistics batch size.
  'fig1_regimes': fig1_regimes,  # 9. Where Figure 1's picture holds.
}
