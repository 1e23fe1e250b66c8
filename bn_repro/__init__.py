"""bn_repro: reproducing Ioffe & Szegedy (2015), Batch Normalization, in JAX/Flax."""
