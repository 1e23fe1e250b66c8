"""Fresh-machine plumbing: data fetches are serialized across processes and name their fixes;
the venv script leaves the caller's shell alone and rebuilds a broken venv."""

import os
import subprocess
import sys

import pytest

from bn_repro.configuration.files import REPO_ROOT
from bn_repro.data import fashion_mnist_fetch, offline

TIMEOUT_S = 900


def test_fetch_lock_serializes_processes(tmp_path):
  """A second process enters `offline.exclusive` only after the first has left it."""
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import pathlib, time; from bn_repro.data import offline\n'
      f'directory = pathlib.Path({str(tmp_path)!r})\n'
      'with offline.exclusive(directory):\n'
      '  print("held", flush=True); time.sleep(2); (directory / "done").write_text("x")\n',
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == 'held'
  with offline.exclusive(tmp_path):
    assert (tmp_path / 'done').exists()  # Written by the holder just before it released.
  holder.wait(timeout=60)


def _fake_tool(directory, name, exit_code):
  path = directory / name
  path.write_text(f'#!/bin/sh\necho "{name} failed" >&2\nexit {exit_code}\n')
  path.chmod(0o755)


def test_a_corrupt_cached_deb_is_deleted_and_named(tmp_path, monkeypatch):
  tools, cache = tmp_path / 'bin', tmp_path / 'cache'
  tools.mkdir()
  cache.mkdir()
  _fake_tool(tools, 'dpkg', 2)  # What dpkg -x does on a truncated archive.
  deb = cache / f'{fashion_mnist_fetch.DEBIAN_PACKAGE}_1.0_all.deb'
  deb.write_bytes(b'not an archive')
  monkeypatch.setenv('PATH', str(tools))
  with pytest.raises(offline.DataIntegrityError, match='dpkg failed.*was deleted; run again'):
    fashion_mnist_fetch.fetch_idx_files(cache)
  assert not deb.exists()


def test_sourcing_the_venv_script_keeps_the_callers_shell_options():
  result = subprocess.run(
    ['bash', '-c', 'set +e +u; source scripts/setup_venv.sh; echo "$-"; shopt -o pipefail || true'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  options, pipefail = result.stdout.strip().splitlines()[-2:]
  assert 'e' not in options and 'u' not in options and pipefail.split()[-1] == 'off'


@pytest.mark.slow
def test_a_venv_without_pip_is_rebuilt(tmp_path):
  """A venv whose python lacks pip is rebuilt (a full install: slow, needs the registry)."""
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  result = subprocess.run(
    ['bash', '-c', 'source scripts/setup_venv.sh && "$VENV_PYTHON" -m pip --version'],
    cwd=REPO_ROOT,
    env=dict(os.environ, BN_REPRO_VENV=str(venv)),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Rebuilding virtualenv' in result.stderr
