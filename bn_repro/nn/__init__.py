"""The layers under study: BatchNorm (Algorithms 1 and 2, groups, mean-only, noisy BN),
weight normalization, population statistics, the normalization registry the models build
from (`normalization.NORMS`), and the CPU kernels the models use."""
