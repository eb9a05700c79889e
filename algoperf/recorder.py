"""Experiment folder layout and logs (CSV and JSON), written atomically.

Layout (the same as the reference benchmark, so either side's scoring reads
the other's logs)::

  <experiment_dir>/<experiment_name>/<workload>_<framework>/
    trial_<k>/
      hparams.json              the trial's hyperparameters (external tuning)
      meta_data_<p>.json        system, software and workload facts
      flags_<p>.json            the runner's flags
      measurements.csv          every logged row (evals and submission scalars)
      eval_measurements.csv     one row per eval; what scoring reads

``p`` is the preemption count. JSON files go through ``atomic_write_text``:
a run killed mid-write (preemption, OOM, Ctrl-C) leaves either the old file or
the new one, never a truncated one. The CSVs grow by appending (one write and
an fsync per flush, so a killed process leaves complete rows only; a row cut
short by an OS crash or a full disk is removed when the file is next opened)
and are rewritten atomically only when a new column appears. A resumed run and
the scorer can always read what is there.

This module imports no JAX: the scorer and the CLI use it too, and it must
stay cheap to import.
"""

from __future__ import annotations

import collections
import csv
import enum
import io
import json
import logging
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

PathLike = Union[str, os.PathLike]

MEASUREMENTS_FILE = 'measurements.csv'
EVAL_MEASUREMENTS_FILE = 'eval_measurements.csv'
HPARAMS_FILE = 'hparams.json'

_TRIAL_DIR_RE = re.compile(r'^trial_\d+$')
_INT_RE = re.compile(r'^[+-]?\d+$')

# mkstemp creates files readable by the owner only; logs should get the
# permissions an ordinary open() would give them, so remember the umask once.
_UMASK = os.umask(0)
os.umask(_UMASK)


class ExistingRunError(RuntimeError):
  """Raised when a log folder already holds a run and no flag says what to do."""


# --- folder layout -----------------------------------------------------------


def _has_trial_logs(log_dir: pathlib.Path) -> bool:
  """Whether ``log_dir`` holds a ``trial_*`` folder with anything in it.

  An empty trial folder (a run that died before writing a byte) is not a run
  worth protecting.
  """
  if not log_dir.is_dir():
    return False
  for entry in log_dir.iterdir():
    if entry.is_dir() and _TRIAL_DIR_RE.match(entry.name):
      if any(entry.iterdir()):
        return True
  return False


def get_log_dir(
    experiment_dir: PathLike,
    experiment_name: Optional[str],
    workload_name: str,
    framework: str = 'jax',
    *,
    overwrite: bool = False,
    resume_last_run: bool = False,
) -> pathlib.Path:
  """Returns (and creates) the log folder of one workload run.

  That is ``<experiment_dir>/<experiment_name>/<workload>_<framework>``.
  ``experiment_name`` may contain ``/`` (studies are ``<name>/study_<s>``)
  or be ``None`` (then the workload folder sits directly in
  ``experiment_dir``).

  A previous run is never overwritten silently. If the folder already holds
  a non-empty ``trial_*`` folder:

  * ``overwrite=True`` deletes the whole ``<workload>_<framework>`` folder
    (as the reference benchmark does; nothing is kept aside) and recreates it;
  * ``resume_last_run=True`` keeps it and returns it;
  * neither raises ``ExistingRunError`` naming the folder and both flags.

  Raises:
    ValueError: both flags are set, or ``experiment_name`` is absolute or
      climbs out of ``experiment_dir`` with ``..``.
    ExistingRunError: see above.
  """
  if overwrite and resume_last_run:
    raise ValueError(
        '--overwrite and --resume_last_run are mutually exclusive: overwrite '
        'deletes the previous run, resume_last_run continues it.'
    )
  base = pathlib.Path(experiment_dir).expanduser()
  if experiment_name:
    name = pathlib.PurePosixPath(experiment_name)
    # A crafted name must not make --overwrite delete a folder outside
    # the experiment directory.
    if name.is_absolute() or '..' in name.parts:
      raise ValueError(
          f'experiment_name must be a relative path without "..", got '
          f'{experiment_name!r}.'
      )
    base = base.joinpath(*name.parts)
  log_dir = base / f'{workload_name}_{framework}'

  if _has_trial_logs(log_dir):
    if overwrite:
      logging.info('Removing previous run in %s (--overwrite).', log_dir)
      shutil.rmtree(log_dir)
    elif resume_last_run:
      logging.info('Resuming the run in %s (--resume_last_run).', log_dir)
    else:
      raise ExistingRunError(
          f'{log_dir} already holds the logs of a previous run. Pass '
          '--resume_last_run to continue it, or --overwrite to delete it and '
          'start afresh (or choose another --experiment_name).'
      )
  log_dir.mkdir(parents=True, exist_ok=True)
  return log_dir


def trial_dir(log_dir: PathLike, trial_index: int) -> pathlib.Path:
  """Returns (and creates) ``<log_dir>/trial_<trial_index>``."""
  if isinstance(trial_index, bool) or not isinstance(trial_index, int):
    raise TypeError(f'trial_index must be an int, got {trial_index!r}.')
  if trial_index < 0:
    raise ValueError(f'trial_index must be >= 0, got {trial_index}.')
  path = pathlib.Path(log_dir) / f'trial_{trial_index}'
  path.mkdir(parents=True, exist_ok=True)
  return path


# --- atomic writes -------------------------------------------------------------


def _fsync_dir(directory: pathlib.Path) -> None:
  """Makes a rename durable; best effort, since not every OS/filesystem allows it."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def atomic_write_text(path: PathLike, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` so that readers see old or new, never half.

  The text goes to a temporary file in the same folder (``os.replace`` is only
  atomic within one filesystem), is fsync'ed, then renamed over ``path``. On
  any error the temporary file is removed and the original is left untouched.
  """
  path = pathlib.Path(path)
  data = text.encode('utf-8')
  fd, tmp_name = tempfile.mkstemp(
      dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp'
  )
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp_name, 0o666 & ~_UMASK)
    os.replace(tmp_name, path)
  except BaseException:
    # BaseException: a KeyboardInterrupt mid-write must not leave litter either.
    try:
      os.unlink(tmp_name)
    except FileNotFoundError:
      pass
    raise
  _fsync_dir(path.parent)


def _json_default(obj: Any) -> Any:
  """Converts types logs commonly hold: numpy scalars, enums, paths, namedtuples."""
  if isinstance(obj, enum.Enum):
    return obj.name
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  if hasattr(obj, '_asdict'):
    return obj._asdict()
  if getattr(obj, 'ndim', None) == 0 and hasattr(obj, 'item'):
    return obj.item()
  if hasattr(obj, 'tolist'):
    return obj.tolist()
  raise TypeError(f'{type(obj).__name__} is not JSON serialisable: {obj!r}')


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically.

  numpy/jax scalars, enums (by name), paths and namedtuples are converted.
  """
  # Serialise first: a TypeError must not get as far as touching the disk.
  text = json.dumps(obj, indent=indent, default=_json_default) + '\n'
  atomic_write_text(path, text)


# --- hyperparameters -----------------------------------------------------------


# pylint: disable-next=redefined-outer-name
def write_hparams(hparams: Any, trial_dir: PathLike) -> Any:
  """Records a trial's hyperparameters in ``hparams.json``; on resume, reuses them.

  If ``<trial_dir>/hparams.json`` exists (a resumed trial), its contents win
  over ``hparams``: they are returned as a namedtuple ``Hyperparameters``,
  so a resumed trial keeps the point it started with even if the search space
  or its sampling changed since.

  Otherwise ``hparams`` (a namedtuple, or a mapping) is written and returned
  unchanged. ``None`` (self-tuning, no hyperparameters) writes no file and
  returns ``None``, as the reference benchmark does.
  """
  path = pathlib.Path(trial_dir) / HPARAMS_FILE
  if path.exists():
    with open(path, encoding='utf-8') as f:
      stored = json.load(f)
    logging.info('Using the hyperparameters stored in %s.', path)
    fields = list(stored)
    if hparams is not None:
      given = hparams._asdict() if hasattr(hparams, '_asdict') else dict(hparams)
      if json.loads(json.dumps(given, default=_json_default)) != stored:
        logging.warning(
            'Hyperparameters given differ from those stored in %s; keeping '
            'the stored ones.', path
        )
    return collections.namedtuple('Hyperparameters', fields)(**stored)
  if hparams is None:
    return None
  values = hparams._asdict() if hasattr(hparams, '_asdict') else dict(hparams)
  write_json(path, dict(values))
  return hparams


# --- CSV logs ------------------------------------------------------------------


def _to_scalar(key: str, value: Any) -> Union[None, bool, int, float, str]:
  """Turns a metric value into a Python scalar.

  Accepts Python numbers, strings, None, numpy scalars and 0-d (or
  one-element) numpy/jax arrays. Reading a jax array waits for the device.
  """
  # Exact Python types, because np.float64 subclasses float but would be
  # written as 'np.float64(...)' by repr, and np.bool_ is no bool at all.
  if value is None:
    return None
  if isinstance(value, bool):
    return bool(value)
  if isinstance(value, enum.Enum):
    return value.name
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    return float(value)
  if isinstance(value, str):
    return str(value)
  dtype = getattr(value, 'dtype', None)
  if dtype is not None:
    size = getattr(value, 'size', 1)
    if size != 1:
      raise ValueError(
          f'Metric {key!r} must be a scalar, got an array of shape '
          f'{getattr(value, "shape", "?")}.'
      )
    if getattr(value, 'ndim', 0):
      # numpy >= 2.4 converts only 0-d arrays with float()/int().
      value = value.reshape(())
    # dtype.kind is 'V' for bfloat16 and friends; float() handles those.
    kind = getattr(dtype, 'kind', 'f')
    if kind == 'b':
      return bool(value)
    if kind in 'iu':
      return int(value)
    return float(value)
  try:
    return float(value)
  except (TypeError, ValueError) as e:
    raise TypeError(
        f'Metric {key!r} must be a number or a string, got '
        f'{type(value).__name__}: {value!r}.'
    ) from e


def _format_cell(value: Union[None, bool, int, float, str]) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    # repr is the shortest string that reads back to the same float.
    return repr(value)
  return str(value)


def _scan_records(data: bytes) -> Tuple[int, int, int]:
  """(records, end of the first record, end of the last complete record) in ``data``.

  A record ends at a newline outside quotes; with the ``csv`` module's
  quoting (a quote inside a quoted cell is doubled) that is a newline after an
  even number of quotes since the record began. Records are counted as
  ``csv.reader`` yields them (a blank line is a record), as
  ``checkpoints.rewind_logs`` counts them. Bytes after the last complete record
  are a row cut off mid-write.
  """
  if b'"' not in data:  # The usual case: numbers and plain names only.
    last_end = data.rfind(b'\n') + 1
    return data.count(b'\n', 0, last_end), data.find(b'\n') + 1, last_end
  count = first_end = last_end = 0
  start, odd = 0, False
  while True:
    newline = data.find(b'\n', start)
    if newline < 0:
      return count, first_end, last_end
    odd ^= bool(data.count(b'"', start, newline) & 1)
    start = newline + 1
    if not odd:
      count += 1
      last_end = start
      first_end = first_end or start


def _csv_text(rows: List[List[str]]) -> str:
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerows(rows)
  return buffer.getvalue()


class _CsvLog:
  """One CSV log file that grows by appending.

  Holds only the header, the row count, the file's size and the rows not yet
  written. ``flush()`` appends the pending rows with one ``os.write`` on an
  ``O_APPEND`` descriptor and fsyncs: a process killed between flushes leaves
  complete rows only. A pending row with a column the header lacks makes the
  flush rewrite the file once (atomically), with the sorted union of the
  columns as header and empty cells where old rows have none.
  """

  def __init__(self, path: pathlib.Path) -> None:
    self.path = path
    self.columns: Optional[List[str]] = None  # None: no header written yet.
    self._column_set: frozenset = frozenset()
    self.num_rows = 0  # Rows in the file (header excluded).
    self.size = 0  # Bytes in the file as this object last left it.
    self.pending: List[Dict[str, str]] = []
    self._load()

  def _set_columns(self, columns: Optional[List[str]]) -> None:
    self.columns = columns
    self._column_set = frozenset(columns or ())

  def _load(self) -> None:
    """Reads the header and counts the rows; removes a cut-off last row first."""
    self._set_columns(None)
    self.num_rows = self.size = 0
    try:
      data = self.path.read_bytes()
    except FileNotFoundError:
      return
    count, first_end, last_end = _scan_records(data)
    if last_end < len(data):
      # An OS crash or a full disk cut the last write short. The rows before
      # it are intact; the partial one would glue itself to the next row.
      logging.warning('%s ends in an incomplete row (%d bytes without a line '
                      'end, cut off mid-write); removing it.', self.path,
                      len(data) - last_end)
      with open(self.path, 'r+b') as f:
        f.truncate(last_end)
        f.flush()
        os.fsync(f.fileno())
    self.size = last_end
    if count:
      header = data[:first_end].decode('utf-8')
      self._set_columns(next(csv.reader(io.StringIO(header, newline='')), []))
      self.num_rows = count - 1

  def flush(self) -> None:
    """Writes the pending rows; on an error they stay pending and the file as it was."""
    if not self.pending:
      return
    try:
      actual: Optional[int] = os.stat(self.path).st_size
    except FileNotFoundError:
      actual = None
    if (actual or 0) != self.size:
      logging.warning('%s was changed by someone else (%s bytes, expected %d); '
                      'reading it again.', self.path, actual, self.size)
      self._load()
    keys = set()
    for row in self.pending:
      keys.update(row)
    if self.columns is None:
      columns = sorted(keys)
      self._append(_csv_text([columns] + self._cells(columns)).encode('utf-8'))
      self._set_columns(columns)
    elif keys <= self._column_set:
      self._append(_csv_text(self._cells(self.columns)).encode('utf-8'))
    else:
      self._rewrite(sorted(self._column_set | keys))
    self.num_rows += len(self.pending)
    self.pending = []

  def _cells(self, columns: List[str]) -> List[List[str]]:
    return [[row.get(c, '') for c in columns] for row in self.pending]

  def _append(self, data: bytes) -> None:
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                 0o666)
    try:
      try:
        view, written = memoryview(data), 0
        while written < len(data):  # One write, unless the kernel takes less.
          written += os.write(fd, view[written:])
        os.fsync(fd)
      except BaseException:
        # A half-written row must not stay for the next flush to glue onto;
        # the rows stay pending, and the file is as the last flush left it.
        try:
          if os.fstat(fd).st_size != self.size:
            os.ftruncate(fd, self.size)
        except OSError:
          pass
        raise
    finally:
      os.close(fd)
    if self.size == 0:
      _fsync_dir(self.path.parent)  # The file is new: make its name durable.
    self.size += len(data)

  def _rewrite(self, columns: List[str]) -> None:
    old_columns = self.columns or []
    rows: List[List[str]] = [columns]
    if self.size:
      with open(self.path, newline='', encoding='utf-8') as f:
        records = csv.reader(f)
        next(records, None)  # The old header.
        for record in records:
          # Missing cells are padded; surplus cells have no column and go.
          cells = dict(zip(old_columns, record))
          rows.append([cells.get(c, '') for c in columns])
    old_count = len(rows) - 1
    rows.extend(self._cells(columns))
    text = _csv_text(rows)
    atomic_write_text(self.path, text)
    self._set_columns(columns)
    self.num_rows = old_count
    self.size = len(text.encode('utf-8'))


class MetricsLogger:
  """Collects scalar rows and appends them to ``measurements.csv`` and ``eval_measurements.csv``.

  Submissions call ``workload.metrics_logger.append_scalar_metrics(metrics,
  global_step)`` from inside the timed ``update_params``, so that call only
  converts the values and keeps the row in memory; ``flush()`` (the runner
  calls it off the clock, at each eval and at the end) appends the rows kept
  since the last flush. Eval rows (``is_eval=True``) come from the runner, off
  the clock, and are written at once, to both files.

  Columns are the sorted union of all keys seen, as in the reference logs;
  missing cells are empty. A row with a new column rewrites its file once
  (atomically, old rows padded with empty cells); otherwise rows are appended
  with one write and an fsync per flush, so a killed process leaves complete
  rows only, and a flush costs the new rows, not the whole file. Only the
  header and row counts stay in memory.

  If the trial folder already has CSVs (a resumed trial) their rows are kept,
  byte for byte, and new rows follow them; a last line without a line end (an
  OS crash or a full disk cut it short) is removed first.

  On multi-host runs only process 0 should write: give the other processes a
  logger with ``enabled=False`` (it converts values but writes nothing).
  """

  def __init__(
      self,
      trial_dir: PathLike,  # pylint: disable=redefined-outer-name
      preemption_count: int = 0,
      enabled: bool = True,
  ) -> None:
    """Opens the logs of ``trial_dir``.

    Args:
      trial_dir: the trial folder (created if missing).
      preemption_count: written with every row unless a call gives its own;
        the runner sets it (or ``self.preemption_count``) after a resume.
      enabled: False turns every write into a no-op (non-zero processes).
    """
    self.trial_dir = pathlib.Path(trial_dir)
    self.preemption_count = preemption_count
    self.enabled = enabled
    self.measurements_path = self.trial_dir / MEASUREMENTS_FILE
    self.eval_measurements_path = self.trial_dir / EVAL_MEASUREMENTS_FILE
    self._log: Optional[_CsvLog] = None
    self._eval_log: Optional[_CsvLog] = None
    if enabled:
      self.trial_dir.mkdir(parents=True, exist_ok=True)
      self._log = _CsvLog(self.measurements_path)
      self._eval_log = _CsvLog(self.eval_measurements_path)

  @property
  def num_rows(self) -> int:
    """How many rows ``measurements.csv`` holds once flushed."""
    if self._log is None:
      return 0
    return self._log.num_rows + len(self._log.pending)

  @property
  def num_eval_rows(self) -> int:
    """How many rows ``eval_measurements.csv`` holds once flushed."""
    if self._eval_log is None:
      return 0
    return self._eval_log.num_rows + len(self._eval_log.pending)

  def append_scalar_metrics(
      self,
      metrics: Mapping[str, Any],
      global_step: int,
      preemption_count: Optional[int] = None,
      is_eval: bool = False,
  ) -> None:
    """Adds one row: ``metrics`` plus ``global_step`` and ``preemption_count``.

    ``metrics`` itself is not modified. ``preemption_count=None`` means the
    logger's current ``preemption_count``. Non-eval rows stay in memory until
    ``flush()`` (no file is touched); eval rows go to both files immediately.

    Raises:
      ValueError/TypeError: a value is not a scalar.
    """
    row = {str(k): _format_cell(_to_scalar(str(k), v)) for k, v in metrics.items()}
    row['global_step'] = str(int(global_step))
    if preemption_count is None:
      preemption_count = self.preemption_count
    row['preemption_count'] = str(int(preemption_count))
    if self._log is None or self._eval_log is None:
      return
    self._log.pending.append(row)
    if is_eval:
      self._eval_log.pending.append(row)  # Rows are never modified: share it.
      self.flush()

  def flush(self) -> None:
    """Appends the rows kept since the last flush to their files."""
    if self._log is None or self._eval_log is None:
      return
    self._log.flush()
    self._eval_log.flush()

  def finish(self) -> None:
    """Writes everything still buffered; call once at the end of the trial."""
    self.flush()


def _parse_cell(text: str) -> Union[None, bool, int, float, str]:
  if text == '':
    return None
  if _INT_RE.match(text):
    return int(text)
  if text in ('True', 'False'):
    return text == 'True'
  try:
    return float(text)
  except ValueError:
    return text


def read_eval_measurements(path: PathLike) -> List[Dict[str, Any]]:
  """Reads a measurements CSV (ours or the reference's) into a list of dicts.

  Cells are parsed: integers to ``int``, other numbers (``nan``, ``inf``
  included) to ``float``, ``True``/``False`` to ``bool``, empty cells to
  ``None``; anything else stays a string. ``path`` may be a trial folder,
  meaning its ``eval_measurements.csv``.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / EVAL_MEASUREMENTS_FILE
  with open(path, newline='', encoding='utf-8') as f:
    rows = []
    for row in csv.DictReader(f):
      row.pop(None, None)
      rows.append(
          {k: _parse_cell('' if v is None else v) for k, v in row.items()}
      )
  return rows


__all__ = [
    'EVAL_MEASUREMENTS_FILE', 'ExistingRunError', 'HPARAMS_FILE',
    'MEASUREMENTS_FILE', 'MetricsLogger', 'atomic_write_text', 'get_log_dir',
    'read_eval_measurements', 'trial_dir', 'write_hparams', 'write_json',
]
