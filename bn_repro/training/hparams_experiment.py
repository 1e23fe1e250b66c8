"""The HParams dashboard's columns for a logdir: the fields that tell its runs apart first.

Every run writes its flattened config as its hyperparameters (`dashboards.py`). Left to
itself, TensorBoard 2.21 orders them (values differ across the runs first, then by name)
and shows the first five, so where smoke and full runs mix, `batch_size`,
`checkpoint_every` and `eval.*` take the five columns. `write_experiment(LOGDIR)` writes
one experiment summary at LOGDIR's root, which the dashboard reads instead:

- Lead columns: of the fields that differ between the runs under LOGDIR, up to five, in
  the order of `LEAD_FIELDS` (variant, normalization, learning rate, initial weight scale,
  seed, ...) and then any other that differs, bookkeeping fields (`BOOKKEEPING`: how often
  to log, evaluate or checkpoint) last. The dashboard shows them by name order.
- Domains: discrete for strings and booleans (integers are written as strings, so that a
  batch size shows as 60, not 60.000), an interval for real numbers.
- Metrics: the final and best test accuracy and the training loss.

    python -m bn_repro.training.hparams_experiment --logdir=runs/mine
    tensorboard --logdir=runs/mine

Run it again after adding runs. It replaces any experiment summary it wrote earlier under
LOGDIR (TensorBoard reads one arbitrarily where there are several).
"""

import os
import pathlib
import sys
import time

from absl import app, flags

from bn_repro.training.tensorboard import encode_record, read_events

EXPERIMENT_FILE = 'events.out.tfevents.0.hparams_experiment'
LEAD_COLUMNS = 5  # What TensorBoard's HParams dashboard shows before any is ticked.
LEAD_FIELDS = (
  'variant',
  'model.norm.kind',
  'optimizer.learning_rate',
  'model.init_std',
  'seed',
  'model.nonlinearity',
  'batch_size',
  'num_steps',
)
BOOKKEEPING = ('log_every', 'eval_every', 'checkpoint_every', 'keep_checkpoints', 'eval.')
METRICS = ('eval/accuracy', 'eval/best_accuracy', 'train/loss')


def read_run_hparams(logdir: pathlib.Path) -> dict[str, dict[str, object]]:
  """`{run: {field: value}}` for every run under `logdir` that logged hyperparameters; `run`
  is its folder relative to `logdir` (as TensorBoard names it)."""
  logdir = pathlib.Path(logdir)
  runs = {}
  for folder in sorted({path.parent for path in logdir.rglob('*tfevents*')}):
    if (hparams := _session_hparams(folder)) is not None:
      runs[str(folder.relative_to(logdir))] = hparams
  return runs


def _session_hparams(folder: pathlib.Path) -> dict[str, object] | None:
  """The hyperparameters of the run in `folder` (written at its start: the first session
  start record ends the reading), or None."""
  from tensorboard.plugins.hparams import metadata

  for event in read_events(folder):
    for value in event.summary.value:
      if value.tag == metadata.SESSION_START_INFO_TAG:
        data = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
        return {name: _python_value(proto) for name, proto in data.hparams.items()}
  return None


def lead_fields(runs: dict[str, dict[str, object]]) -> list[str]:
  """The fields marked as differing (module docstring): at most LEAD_COLUMNS."""
  differing = [name for name in _all_fields(runs) if len(_values(runs, name)) > 1]
  ranked = sorted(
    differing,
    key=lambda name: (
      LEAD_FIELDS.index(name) if name in LEAD_FIELDS else len(LEAD_FIELDS),
      name.startswith(BOOKKEEPING),
      name,
    ),
  )
  return ranked[:LEAD_COLUMNS]


def experiment_proto(runs: dict[str, dict[str, object]], lead: list[str]) -> object:
  """The `api_pb2.Experiment` of `runs`: every field with its domain, the `lead` fields
  (`lead_fields(runs)`) marked as differing."""
  from tensorboard.plugins.hparams import api_pb2

  infos = []
  for name in _all_fields(runs):
    values = _values(runs, name)
    info = api_pb2.HParamInfo(name=name, differs=name in lead)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
      info.type = api_pb2.DATA_TYPE_FLOAT64
      info.domain_interval.min_value = min(values)
      info.domain_interval.max_value = max(values)
    else:
      types = {type(v) for v in values}
      info.type = api_pb2.DATA_TYPE_BOOL if types == {bool} else api_pb2.DATA_TYPE_STRING
      for value in sorted(values, key=str):
        if info.type == api_pb2.DATA_TYPE_BOOL:
          info.domain_discrete.values.add(bool_value=value)
        else:
          info.domain_discrete.values.add(string_value=str(value))
    infos.append(info)
  metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in METRICS]
  return api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time())


def write_experiment(logdir: pathlib.Path) -> list[str]:
  """Writes LOGDIR/EXPERIMENT_FILE for the runs under `logdir` (replacing any such file
  below it); returns the lead fields."""
  from tensorboard.compat.proto import event_pb2, summary_pb2
  from tensorboard.plugins.hparams import metadata, plugin_data_pb2

  logdir = pathlib.Path(logdir)
  for stale in logdir.rglob(EXPERIMENT_FILE):
    stale.unlink()
  runs = read_run_hparams(logdir)
  if not runs:
    raise ValueError(f'No run under {logdir} logged hyperparameters; expected training workdirs.')
  lead = lead_fields(runs)
  experiment = experiment_proto(runs, lead)
  summary = summary_pb2.Summary()
  summary.value.add(
    tag=metadata.EXPERIMENT_TAG,
    metadata=metadata.create_summary_metadata(
      plugin_data_pb2.HParamsPluginData(experiment=experiment)
    ),
    tensor=metadata.NULL_TENSOR,
  )
  event = event_pb2.Event(wall_time=time.time(), step=0, summary=summary)
  temporary = logdir / f'.{EXPERIMENT_FILE}.writing'
  temporary.write_bytes(encode_record(event.SerializeToString()))
  os.replace(temporary, logdir / EXPERIMENT_FILE)
  return lead


def _all_fields(runs: dict[str, dict[str, object]]) -> list[str]:
  return sorted({name for hparams in runs.values() for name in hparams})


def _values(runs: dict[str, dict[str, object]], name: str) -> set:
  return {hparams[name] for hparams in runs.values() if name in hparams}


def _python_value(proto: object) -> object:
  kind = proto.WhichOneof('kind')
  return {'string_value': proto.string_value, 'bool_value': proto.bool_value}.get(
    kind, proto.number_value
  )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; expected --logdir=DIR.')
  try:
    lead = write_experiment(pathlib.Path(_LOGDIR.value))
  except ValueError as error:
    sys.exit(f'FATAL: {error}')
  print(f'HParams for {_LOGDIR.value}: leading with {", ".join(lead) or "(no field differs)"}.')


if __name__ == '__main__':
  _LOGDIR = flags.DEFINE_string('logdir', None, "TensorBoard's logdir: training workdirs below it.")
  flags.mark_flag_as_required('logdir')
  app.run(main)
