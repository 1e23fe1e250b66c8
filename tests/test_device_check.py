"""The device check's CPU path runs and its 200-step run's loss falls (benchmarks/device_check.sh
--cpu), so the script is known to work before an accelerator is lent."""

import subprocess

from bn_repro.configuration.files import REPO_ROOT


def test_device_check_cpu_path_prints_its_table_and_passes():
  result = subprocess.run(
    ['bash', 'benchmarks/device_check.sh', '--cpu'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  out = result.stdout
  for row in ('| BN-Inception at 224', '| ImageNet input', '| Figure 1 arm, 50,000 MNIST steps'):
    assert row in out, out
  assert ': falls (' in out and 'Device check passed' in out


def test_device_check_refuses_the_accelerator_path_without_one():
  result = subprocess.run(
    ['bash', 'benchmarks/device_check.sh'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
    'FATAL: no accelerator here; run benchmarks/device_check.sh --cpu for the CPU path.'
  )
