"""Prints BN-Inception's layer table and parameter count (the paper's Figure 5 network,
full size, 224x224 inputs, 1000 classes).

  .venv/bin/python scripts/inception_layers.py
"""

import argparse

from bn_repro.models.inception import BNInception, layer_table


def main() -> None:
  argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
  rows = layer_table(BNInception(num_classes=1000))
  print(f'{"layer":<24}{"output":>20}{"params":>12}')
  for name, shape, n in rows:
    print(f'{name:<24}{str(shape[1:]):>20}{n:>12,}')
  print(f'{"total":<24}{"":>20}{sum(n for *_, n in rows):>12,}')


if __name__ == '__main__':
  main()
