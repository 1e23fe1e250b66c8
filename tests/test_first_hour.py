"""A researcher's first hour: expected mistakes end in one line before any data is loaded,
the config files and fields can be listed, the scripts answer --help, and the README's
"Running experiments" block runs as written (with `,smoke` configs on SYNTHETIC data)."""

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from bn_repro.configuration import docs as config_docs
from bn_repro.configuration.files import REPO_ROOT, load_config
from bn_repro.heartbeat import heartbeat
from bn_repro.training import console
from bn_repro.training.train import describe_evaluation

SMOKE = '--config=configs/mnist.py:bn,smoke'
# One CPU device, as a researcher's machine has (the suite's 8 fake devices do not divide
# the MNIST batch of 60; that mistake has its own test in test_configs.py).
ONE_DEVICE = {'XLA_FLAGS': '--xla_backend_optimization_level=0'}


def _main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-m', 'bn_repro.main', *args],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, **ONE_DEVICE, **(env or {})},
  )


def _assert_one_fatal_line(
  result: subprocess.CompletedProcess, message: str, before_data: bool = True
) -> None:
  """The error is one line, last, with no traceback; `before_data`: nothing else was said
  (the config and workdir are checked before the data is loaded)."""
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert 'Traceback' not in result.stderr, result.stderr
  assert [line for line in lines if 'FATAL' in line] == lines[-1:], result.stderr
  assert lines[-1].startswith('FATAL: ') and message in lines[-1], result.stderr
  if before_data:
    assert len(lines) == 1, result.stderr


def test_a_workdir_that_is_a_file_is_one_line_before_data(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('')
  result = _main(SMOKE, f'--workdir={path}')
  _assert_one_fatal_line(result, f'--workdir={path} is a file, not a directory')


def test_a_workdir_of_another_config_is_one_line_before_data(tmp_path):
  other = load_config('configs/mnist.py:baseline,smoke')
  (tmp_path / 'config.json').write_text(other.to_json_best_effort(indent=2))
  (tmp_path / 'checkpoints').mkdir()  # What a run of that config left.
  result = _main(SMOKE, f'--workdir={tmp_path}')
  _assert_one_fatal_line(result, 'model.norm.kind')
  assert json.loads((tmp_path / 'config.json').read_text())['variant'] == 'baseline'


def test_imagenet_not_prepared_is_one_line_naming_the_fix(tmp_path):
  result = _main(
    '--config=configs/inception.py:bn_baseline,smoke',
    f'--workdir={tmp_path / "run"}',
    env={'TFDS_DATA_DIR': str(tmp_path / 'empty')},
  )
  _assert_one_fatal_line(result, 'imagenet2012 is not prepared', before_data=False)
  assert 'tfds build imagenet2012' in result.stderr


def test_ctrl_c_during_startup_is_one_line(synthetic_mnist_tfds, tmp_path):
  """Ctrl-C before training begins: one FATAL line (a signal after that checkpoints and
  stops, tested in test_preemption.py). The signal is sent as soon as the run says it is
  loading the data, many steps before training could end, so it lands in the startup."""
  # A background job of a non-interactive shell (CI) inherits SIGINT ignored, and Python
  # keeps it so: the child restores Python's own Ctrl-C handler, as a terminal would have it,
  # then runs the entry point (no preexec_fn: forking a multithreaded JAX process can hang).
  argv = ['bn_repro.main', SMOKE, f'--workdir={tmp_path / "run"}', '--config.num_steps=100000']
  child = (
    'import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); '
    f'sys.argv = {argv!r}; runpy.run_module("bn_repro.main", run_name="__main__")'
  )
  process = subprocess.Popen(
    [sys.executable, '-c', child],
    cwd=REPO_ROOT,
    stderr=subprocess.PIPE,
    text=True,
    env={**os.environ, **ONE_DEVICE, 'TFDS_DATA_DIR': str(synthetic_mnist_tfds)},
  )
  seen = []
  for line in process.stderr:
    seen.append(line)
    if 'Loading mnist' in line:
      process.send_signal(signal.SIGINT)
      break
  try:
    _, rest = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode != 0
  stderr = ''.join(seen) + rest
  assert 'Traceback' not in stderr, stderr
  last = rest.strip().splitlines()[-1]
  assert last.startswith('FATAL: interrupted (Ctrl-C) during startup'), stderr


def test_list_names_every_config_file_and_variant():
  result = _main('--list')
  assert result.returncode == 0, result.stderr
  for name in ('mnist', 'inception'):
    module = config_docs.load_config_module(f'configs/{name}.py')
    assert f'configs/{name}.py' in result.stdout
    assert ', '.join(module.VARIANTS) in result.stdout


def test_list_with_a_config_shows_overridden_values_and_their_docs():
  result = _main('--list', '--config=configs/mnist.py:bn', '--config.seed=3')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert '--config.seed=3' in lines
  assert '--config.model.norm.momentum=0.99  # Of the running averages used at test time.' in lines
  assert len(lines) == len(config_docs._leaves(load_config('configs/mnist.py:bn')))


def test_field_docs_read_trailing_and_preceding_comments_with_block_prefixes(tmp_path):
  source = tmp_path / 'config.py'
  source.write_text(
    'def get_config():\n'
    '  config.a = 1  # Trailing.\n'
    '  # Above, first line\n'
    '  # and second.\n'
    '  config.b.c = 2\n'
    '  config.d = 3\n'
    'def eval_config():\n'
    '  config.e = 4  # In the eval block.\n'
  )
  assert config_docs.field_docs(source) == {
    'a': 'Trailing.',
    'b.c': 'Above, first line and second.',
    'eval.e': 'In the eval block.',
  }


def test_the_evaluation_line_shows_every_seed_and_population_accuracy():
  text = describe_evaluation(
    {'accuracy': 0.97, 'seed_accuracies': [0.96, 0.98], 'population_accuracy': 0.975}
  )
  assert text == 'test accuracy 0.9700 (seeds 0.9600 0.9800), population statistics 0.9750'
  assert describe_evaluation({'accuracy': 0.5}) == 'test accuracy 0.5000'


@pytest.mark.parametrize(
  'script',
  ['reproduce_mnist.sh', 'reproduce_inception.sh', 'study.sh', 'sweep_mnist_lr.sh', 'test.sh'],
)
def test_every_shell_script_answers_help_without_installing(script):
  text = (REPO_ROOT / 'scripts' / script).read_text().splitlines()
  result = subprocess.run(
    ['bash', f'scripts/{script}', '--help'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=60,
    env={**os.environ, 'PATH': '/usr/bin:/bin'},
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0] == text[1].removeprefix('# ')


def test_the_readme_running_experiments_block_runs_as_written(synthetic_mnist_tfds, tmp_path):
  readme = (REPO_ROOT / 'README.md').read_text()
  block = re.search(r'## Running experiments\n\n```bash\n(.*?)```', readme, re.S).group(1)
  commands = [c.split('#')[0].strip() for c in block.replace('\\\n', ' ').splitlines()]
  ran = 0
  for command in filter(None, commands):
    args = shlex.split(command)
    if args[0].endswith('tensorboard'):  # A server; its logdir must hold the runs.
      assert (tmp_path / args[1].split('=', 1)[1] / 'lr0.5' / 'bn' / 'config.json').exists()
      continue
    assert args[0] == '.venv/bin/python'
    args = [sys.executable] + [
      a + ',smoke' if a.startswith('--config=') and a.count(':') == 1 else a for a in args[1:]
    ]
    args = [re.sub(r'=runs/', f'={tmp_path}/runs/', a) for a in args]
    result = subprocess.run(
      args,
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=600,
      env={**os.environ, **ONE_DEVICE, 'TFDS_DATA_DIR': str(synthetic_mnist_tfds)},
    )
    assert result.returncode == 0, f'{command}\n{result.stderr[-3000:]}'
    ran += 1
  assert ran == 6
  assert (tmp_path / 'runs/mine/figure/figure1.png').exists()
  summary = json.loads((tmp_path / 'runs/mine/figure/summary.json').read_text())
  assert set(summary['arms']) == {'baseline', 'bn'}


def _readme_python_commands() -> list[str]:
  """The Python entry points the READMEs name: `python -m MODULE` and `scripts/NAME.py`."""
  texts = [(REPO_ROOT / 'README.md').read_text()]
  texts += [p.read_text() for p in sorted((REPO_ROOT / 'results').glob('**/README.md'))]
  found = set()
  for text in texts:
    found.update(re.findall(r'python -m ((?:bn_repro|benchmarks)(?:\.\w+)+)', text))
    found.update(re.findall(r'\b(scripts/\w+\.py)\b', text))
  return sorted(found)


@pytest.mark.parametrize('command', _readme_python_commands())
def test_every_python_command_the_readme_names_answers_help(command, tmp_path):
  program = [str(REPO_ROOT / command)] if command.endswith('.py') else ['-m', command]
  result = subprocess.run(
    [sys.executable, *program, '--help'],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)},
  )
  output = result.stdout + result.stderr
  assert result.returncode in (0, 1) and 'Traceback' not in output, output[-2000:]
  assert re.search(r'usage|USAGE|flags:', output), output[-2000:]
  assert list(tmp_path.iterdir()) == []  # --help did nothing else (no folder named --help).


def test_a_long_step_logs_a_heartbeat_until_it_ends(caplog):
  with caplog.at_level(logging.INFO):
    with heartbeat('compiling the step', every_s=0.05):
      time.sleep(0.6)
    beats = len(caplog.records)
    time.sleep(0.2)
  assert beats >= 2 and len(caplog.records) == beats  # None after the block.
  messages = [record.getMessage() for record in caplog.records]
  assert re.fullmatch(r'\.\.\. still compiling the step \(\d+ s\)', messages[-1]), messages
  assert all(m.startswith('... ') and 'compiling the step' in m for m in messages)


def test_the_console_drops_tfds_folder_notices_and_keeps_other_warnings():
  def record(message):
    return logging.LogRecord('tfds', logging.WARNING, '/x/tfds/file_utils.py', 1, message, (), None)

  console_filter = console.OwnInfoOnly()
  assert not console_filter.filter(record('Variant folder /d/1.0 has no dataset_info.json'))
  assert console_filter.filter(record('Checksum mismatch'))
