"""Screenshots of TensorBoard's dashboards over a logdir, as a researcher's browser shows them.

  .venv/bin/python scripts/dashboard_screenshots.py --logdir=runs/mine --out=runs/mine/screens

Writes the logdir's HParams experiment (`bn_repro.training.hparams_experiment`), starts a
TensorBoard server on a free port of 127.0.0.1, and saves what headless Chromium draws of
its Scalars, HParams, Distributions and Text dashboards as OUT/{scalars, hparams,
distributions, text}.png. Chromium is Debian's `chromium`; where it is missing the script
installs it with apt-get (root only). Used to look at the dashboards before a change that
touches them is called done; the tests check the same data through the server's HTTP API.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from bn_repro.training import hparams_experiment

_LOGDIR = flags.DEFINE_string('logdir', None, 'TensorBoard logdir: training workdirs below it.')
_OUT = flags.DEFINE_string('out', None, 'Folder for the PNG screenshots.')
_WIDTH = flags.DEFINE_integer('width', 1600, 'Browser window width in pixels.')
_HEIGHT = flags.DEFINE_integer('height', 1100, 'Browser window height in pixels.')

DASHBOARDS = ('scalars', 'hparams', 'distributions', 'text')
_STARTUP_TIMEOUT_S = 240
_RENDER_BUDGET_MS = 20_000  # Chromium's virtual time for TensorBoard to load and draw.
# Without these Chromium tries Google's hosts at every start, which this network refuses.
_CHROMIUM_FLAGS = (
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--hide-scrollbars',
)


def chromium() -> str:
  """The Chromium executable, installed from Debian's packages where missing."""
  if (found := shutil.which('chromium')) is None:
    print('Installing Debian package chromium (apt-get install -y chromium)...', flush=True)
    subprocess.run(['apt-get', 'install', '-y', '-q', 'chromium'], check=True, timeout=1800)
    found = shutil.which('chromium')
  return found


def start_tensorboard(logdir: pathlib.Path) -> tuple[subprocess.Popen, str]:
  """A TensorBoard server over `logdir` and its address, once it listens."""
  server = subprocess.Popen(
    [sys.executable, '-m', 'tensorboard.main', f'--logdir={logdir}', '--host=127.0.0.1']
    + ['--port=0', '--load_fast=false'],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + _STARTUP_TIMEOUT_S
  while time.monotonic() < deadline:
    line = server.stderr.readline()
    if match := re.search(r'http://127\.0\.0\.1:(\d+)/', line):
      return server, f'http://127.0.0.1:{match[1]}'
    if not line and server.poll() is not None:
      break
  server.terminate()
  raise RuntimeError(f'TensorBoard did not start over {logdir} in {_STARTUP_TIMEOUT_S} s.')


def screenshot(browser: str, url: str, path: pathlib.Path, size: tuple[int, int]) -> None:
  """Saves what Chromium draws of `url` at `size` (width, height) to `path`."""
  with tempfile.TemporaryDirectory() as profile:
    subprocess.run(
      [browser, *_CHROMIUM_FLAGS, f'--user-data-dir={profile}']
      + [f'--window-size={size[0]},{size[1]}', f'--virtual-time-budget={_RENDER_BUDGET_MS}']
      + [f'--screenshot={path}', url],
      check=True,
      capture_output=True,
      timeout=300,
    )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; expected --logdir and --out.')
  logdir, out = pathlib.Path(_LOGDIR.value), pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  lead = hparams_experiment.write_experiment(logdir)
  print(f'HParams leads with {", ".join(lead) or "(no field differs)"}.', flush=True)
  browser = chromium()
  server, address = start_tensorboard(logdir)
  try:
    time.sleep(5)  # The server reads the event files in the background after it listens.
    for dashboard in DASHBOARDS:
      path = out / f'{dashboard}.png'
      screenshot(browser, f'{address}/#{dashboard}', path, (_WIDTH.value, _HEIGHT.value))
      print(f'{dashboard}: {path}', flush=True)
  finally:
    server.terminate()
    server.wait(timeout=60)


if __name__ == '__main__':
  flags.mark_flags_as_required(['logdir', 'out'])
  app.run(main)
