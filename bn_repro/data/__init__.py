"""Where a step's examples come from.

- `datasets`: loading TFDS datasets into memory (`mnist_fetch`, `fashion_mnist_fetch` and
  `offline` prepare the offline copies); `imagenet`: the streamed ImageNet pipeline.
- `ordering`: which examples form each batch, a pure function of (seed, step).
- `transforms`: on-device preprocessing and photometric distortion.
- `pipeline`: the two kinds of training input behind one interface (`TrainInput`), and
  `create_inputs`, everything the training loop needs about a config's data.
"""
