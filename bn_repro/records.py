"""JSON-lines records of a run, next to its TensorBoard event files (as big_vision does).

`WORKDIR/metrics.jsonl` holds one line per logging call, `{"step": s, "TAG": value, ...}`
(what the event files hold, readable without TensorFlow); `unit_percentiles.jsonl`
(`bn_repro.analysis.unit_drift`) uses the same functions. Lines are appended and fsynced;
a reader drops a torn last line (a writer killed mid-line); a resumed run truncates the
records after its checkpoint, since it replays those steps. Reports, studies and figures
read runs through `read_metrics`.
"""

import json
import os
import pathlib
import tempfile

METRICS_FILE = 'metrics.jsonl'

Scalars = dict[str, list[tuple[int, float]]]


def append(path: pathlib.Path, records: list[dict]) -> None:
  """Appends `records` (JSON-serializable dicts with a 'step') as lines, flushed to disk."""
  with open(path, 'a') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in records))
    f.flush()
    os.fsync(f.fileno())


def read(path: pathlib.Path) -> list[dict]:
  """Every whole record of the file at `path` ([] if absent); a torn last line is dropped."""
  if not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines(keepends=True):
    if not line.endswith('\n'):
      break  # Torn: the writer died before the newline.
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      break
  return out


def truncate(path: pathlib.Path, last_step: int) -> None:
  """Keeps the whole records of steps <= `last_step` (a resume replays the rest)."""
  if not path.exists():
    return
  kept = [r for r in read(path) if r['step'] <= last_step]
  write_atomically(path, ''.join(json.dumps(r) + '\n' for r in kept))


def write_atomically(path: pathlib.Path, content: str | bytes) -> None:
  """Writes `content` to `path` through a temporary file in the same folder and a rename,
  so a reader sees the old file or the new one whole; readable by all, as `open` makes it."""
  path = pathlib.Path(path)
  handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  try:
    with os.fdopen(handle, 'wb' if isinstance(content, bytes) else 'w') as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other users.
    os.replace(temporary, path)
  except BaseException:
    pathlib.Path(temporary).unlink(missing_ok=True)
    raise


def read_metrics(workdir: str | pathlib.Path) -> Scalars:
  """{tag: [(step, value), ...]} in step order from `WORKDIR/metrics.jsonl`."""
  out: Scalars = {}
  for record in read(pathlib.Path(workdir) / METRICS_FILE):
    step = record['step']
    for tag, value in record.items():
      if tag != 'step':
        out.setdefault(tag, []).append((step, value))
  return {tag: sorted(values) for tag, values in out.items()}
