"""Reading a folder of trial logs for scoring: tolerant, fast, and loud about problems.

Layout (BENCHMARK.md section 8; the competition logs under ``shared/competition``)::

  <root>/<submission>/study_<s>/<workload>_<jax|pytorch>/trial_<t>/eval_measurements.csv

Only two columns of each ``eval_measurements.csv`` matter to scoring: the time
(``score`` = accumulated submission time, or ``global_step``) and
``validation/<target_metric_name>`` of the workload in the benchmark version.

Nothing here raises on bad logs. Each problem becomes one line in
``LoadResult.warnings`` naming the file or folder, and the trial is left out
(scoring then treats it as missing), except where noted:

* empty file; undecodable bytes; unreadable file; no time or metric column;
  a time cell that is not a finite number; a metric cell that is text or
  +-inf; a row with more cells than the header; a row other than the last with
  fewer cells than the header -> warning, trial left out.
* header but no eval rows -> warning, trial **kept** with no evals (a run that
  never reached the target). This is how the reference scorer (pandas) reads
  such a file: zero rows, so the target is never reached.
* the last row has fewer cells than the header (the file was cut off while
  being written) -> warning, that row alone is dropped and the earlier evals
  are kept. Its cells may themselves be cut (``0.77`` of ``0.7731``), so it
  is not trusted.
* an empty metric cell, ``nan`` or another pandas NA spelling (``NA``,
  ``null``, ``None``, ...) -> NaN, no warning: diverged or skipped evals are
  legitimate (the v0.5 logs have 2,433 such cells) and never reach a target.
* dotfiles and dot-folders anywhere, files directly under ``root``, files in a
  workload folder (the reference writes its ``<workload>_<fw>_<date>.log`` there)
  and files in a trial folder (hparams, meta data, ``measurements.csv``) are
  skipped silently; other stray files and folders get a warning.
* a workload folder of a known workload that is not asked for (e.g. the
  baseline's non-sampled held-out variants) is skipped silently, unread; a
  folder naming no workload of the version gets a warning.

The real v0.5 competition logs load with no warnings.

No pandas or numpy: the whole ``algoperf score`` run, interpreter start-up
included, has to stay well under a few seconds, and the ``csv`` module or plain
``str.split`` on two columns is all this needs.

``root`` may also be a folder inside a log extract (``scoring/extract.py``),
e.g. ``scoring/data/competition_v0.5.json.xz/self_tuning``: the same walk and
the same CSV parser run over the extract's in-memory tree, so both sources give
the same ``TrialLog`` values.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import (Dict, Iterable, Iterator, List, Optional, Sequence,
                    Set, Tuple)

from algoperf.benchmarks import BenchmarkVersion
from scoring import extract as extract_lib

EVAL_CSV = 'eval_measurements.csv'
FRAMEWORKS = ('jax', 'pytorch')
RULESETS = ('external', 'self')

_STUDY_RE = re.compile(r'study_(\d+)\Z')
_TRIAL_RE = re.compile(r'trial_(\d+)\Z')
_WORKLOAD_RE = re.compile(r'(.+)_(' + '|'.join(FRAMEWORKS) + r')\Z')

# Cells pandas reads as NA by default (besides what float() already parses as
# nan): the reference scorer saw NaN there, so a metric cell spelled this way is
# "no value at this eval", not text.
_NA_TOKENS = frozenset({
    '', 'NA', 'N/A', 'n/a', 'NULL', 'null', 'None', '<NA>', '#N/A', '#NA',
    '#N/A N/A', '-1.#IND', '1.#IND', '-1.#QNAN', '1.#QNAN',
})


@dataclasses.dataclass(frozen=True)
class TrialLog:
  """The scoring columns of one trial's ``eval_measurements.csv``."""

  submission: str
  study: str  # folder name, e.g. 'study_0'
  workload: str  # folder name without the framework suffix
  framework: str  # 'jax' or 'pytorch'
  trial: str  # folder name, e.g. 'trial_1'
  trial_number: int
  path: Path  # the CSV file
  times: Tuple[float, ...]  # time column, one per eval row, all finite
  values: Tuple[float, ...]  # metric column, one per eval row; NaN: no value

  @property
  def study_number(self) -> int:
    """The ``<s>`` of ``study_<s>``."""
    return int(self.study[len('study_'):])


@dataclasses.dataclass
class LoadResult:
  """Trials that loaded, one warning line per problem, and counts for reports."""

  trials: List[TrialLog]  # by (submission, workload, study, trial number)
  warnings: List[str]
  submissions: List[str]  # every submission folder found, even one with no trials
  workloads: Tuple[str, ...]  # the workloads asked for
  files_read: int = 0  # trial folders whose eval_measurements.csv was read (or tried)
  folders_skipped: int = 0  # workload folders of known workloads not asked for


@dataclasses.dataclass(frozen=True)
class _Task:
  """One trial folder to read."""

  submission: str
  study: str
  workload: str
  framework: str
  trial: str
  trial_number: int
  path: str  # a str, not a Path: thousands of Path objects cost real time
  time_column: str
  metric_column: str


def load_logs(
    root: str | Path,
    version: BenchmarkVersion,
    *,
    workloads: Optional[Iterable[str]] = None,
    time_column: str = 'score',
) -> LoadResult:
  """Loads every trial of the asked-for workloads under ``root``.

  Args:
    root: a folder of submission folders (see the module docstring).
    version: gives each workload's target metric, and which folder names are
      workloads at all.
    workloads: names to load; default: the version's base and held-out
      workloads. Each must be a workload of ``version``.
    time_column: ``'score'`` (seconds) or ``'global_step'`` (steps to target);
      any other column name works too.

  Returns:
    The trials that loaded, sorted by (submission, workload, study number,
    trial number, framework), and one warning line per problem found.

  Raises:
    KeyError: a name in ``workloads`` is not a workload of ``version``.
  """
  root = Path(root)
  if workloads is None:
    wanted = tuple(version.base_workloads) + tuple(version.held_out_workloads)
  else:
    wanted = tuple(sorted(set(workloads)))
  metric_columns = {
      w: 'validation/' + version.workload(w).target_metric_name for w in wanted
  }
  warnings: List[str] = []
  tree = _open_tree(root)
  tasks, submissions, skipped = _scan(root, version, metric_columns,
                                      time_column, warnings, tree)
  results = _read_all(tasks, tree)
  trials = []
  for trial, warning in results:
    if warning is not None:
      warnings.append(warning)
    if trial is not None:
      trials.append(trial)
  _warn_mixed_frameworks(trials, warnings)
  trials.sort(key=lambda t: (t.submission, t.workload, t.study_number,
                             t.trial_number, t.framework))
  return LoadResult(trials=trials, warnings=warnings, submissions=submissions,
                    workloads=wanted, files_read=len(tasks),
                    folders_skipped=skipped)


def expected_counts_problems(result: LoadResult, version: BenchmarkVersion,
                             ruleset: str) -> List[str]:
  """For ``--strict``: every count of studies or trials that is not the protocol's.

  Over every submission folder found and every workload in
  ``result.workloads``: a (submission, workload) whose number of studies with
  loaded trials differs from the version's (``external_num_studies`` or
  ``self_num_studies``), and every such study whose number of trials differs
  (``external_num_trials`` for external tuning, 1 for self-tuning).
  """
  if ruleset == 'external':
    num_studies = version.external_num_studies
    num_trials = version.external_num_trials
  elif ruleset == 'self':
    num_studies, num_trials = version.self_num_studies, 1
  else:
    raise ValueError(f'ruleset must be one of {RULESETS}, got {ruleset!r}.')
  # (submission, workload) -> study -> number of trials loaded
  counts: Dict[Tuple[str, str], Dict[str, int]] = defaultdict(
      lambda: defaultdict(int))
  for t in result.trials:
    counts[(t.submission, t.workload)][t.study] += 1
  problems = []
  for submission in result.submissions:
    for workload in result.workloads:
      studies = counts.get((submission, workload), {})
      if len(studies) != num_studies:
        problems.append(
            f'{submission}/{workload}: {_count(len(studies), "study", "studies")}'
            f' with logs, expected {num_studies} ({ruleset} tuning, '
            f'{version.name}).')
      for study in sorted(studies, key=lambda s: int(s[len('study_'):])):
        if studies[study] != num_trials:
          problems.append(
              f'{submission}/{study}/{workload}: '
              f'{_count(studies[study], "trial", "trials")} with logs, expected '
              f'{num_trials} ({ruleset} tuning, {version.name}).')
  return problems


def _count(n: int, one: str, many: str) -> str:
  return f'{n} {one if n == 1 else many}'


# --- Sources: a folder on disk, or a folder inside a log extract -------------


class _Tree:
  """Folders on disk: what the walk lists and the reader reads."""

  def listdir(self, path: str | Path, warnings: List[str]) -> List[os.DirEntry]:
    return _listdir(path, warnings)

  def read_columns(self, path: str, time_column: str,
                   metric_column: str) -> _Columns:
    return read_eval_columns(path, time_column, metric_column)


class _ExtractTree(_Tree):
  """The same walk over an extract's in-memory tree (``scoring/extract.py``)."""

  def __init__(self, extract: extract_lib.Extract):
    self._extract = extract

  def listdir(self, path: str | Path, warnings: List[str]) -> list:
    entries = self._extract.scandir(path)
    if entries is None:
      warnings.append(f'{path}: no such folder in the log extract; its logs '
                      'are left out.')
      return []
    return [e for e in entries if not e.name.startswith('.')]

  def read_columns(self, path: str, time_column: str,
                   metric_column: str) -> _Columns:
    text = self._extract.read_text(path)
    if text is None:
      return (), (), f'{os.path.dirname(path)}: no {EVAL_CSV}', None
    times, values, problem, note = parse_eval_csv(text, time_column,
                                                  metric_column)
    return (times, values, None if problem is None else f'{path}: {problem}',
            None if note is None else f'{path}: {note}')


def _open_tree(root: Path) -> _Tree:
  """The source ``root`` lives in; raises ``extract.ExtractError`` on a bad extract."""
  located = extract_lib.locate(root)
  if located is None:
    return _Tree()
  return _ExtractTree(extract_lib.read(located[0]))


def is_log_folder(root: str | Path) -> bool:
  """Whether ``root`` is a folder on disk or a folder inside a log extract.

  Raises:
    extract.ExtractError: ``root`` is inside an extract that cannot be read.
  """
  root = Path(root)
  located = extract_lib.locate(root)
  if located is None:
    return root.is_dir()
  return extract_lib.read(located[0]).scandir(root) is not None



# --- Walking the tree -------------------------------------------------------


def _listdir(path: str | Path, warnings: List[str]) -> List[os.DirEntry]:
  """Entries of ``path`` by name, dotfiles left out; a warning if unlistable."""
  try:
    with os.scandir(path) as it:
      entries = [e for e in it if not e.name.startswith('.')]
  except OSError as e:
    warnings.append(f'{path}: cannot list folder ({type(e).__name__}: '
                    f'{e.strerror or e}); its logs are left out.')
    return []
  entries.sort(key=lambda e: e.name)
  return entries


def _is_dir(entry: os.DirEntry) -> bool:
  try:
    return entry.is_dir()
  except OSError:
    return False


def _numbered(entries: Sequence[os.DirEntry], pattern: re.Pattern,
              ) -> Iterator[Tuple[os.DirEntry, Optional[int]]]:
  """Each entry with the number its name carries (None if it does not match)."""
  for e in entries:
    m = pattern.match(e.name)
    yield e, (int(m.group(1)) if m else None)


def _scan(root: Path, version: BenchmarkVersion, metric_columns: Dict[str, str],
          time_column: str, warnings: List[str], tree: _Tree,
          ) -> Tuple[List[_Task], List[str], int]:
  """Finds the trial folders to read; warns about folders that do not fit."""
  tasks: List[_Task] = []
  submissions: List[str] = []
  skipped = 0
  for sub in tree.listdir(root, warnings):
    # Files beside the submission folders (README, MANIFEST, outputs) are
    # expected in a logs folder; only folders are submissions.
    if not _is_dir(sub):
      continue
    if _STUDY_RE.match(sub.name):
      warnings.append(
          f'{sub.path}: a study folder where a submission folder is expected '
          '(is the logs folder one level too deep?); left out.')
      continue
    entries = tree.listdir(sub.path, warnings)
    if not any(_is_dir(e) and _STUDY_RE.match(e.name) for e in entries):
      # One line instead of one per child: usually root is a level too high.
      warnings.append(f'{sub.path}: no study_<n> folders; not a submission '
                      'folder, left out.')
      continue
    submissions.append(sub.name)
    for study in entries:
      if not _is_dir(study):
        warnings.append(f'{study.path}: unexpected file in a submission '
                        'folder (expected study_<n> folders); ignored.')
        continue
      if not _STUDY_RE.match(study.name):
        warnings.append(f'{study.path}: not a study_<n> folder; left out.')
        continue
      for wdir in tree.listdir(study.path, warnings):
        if not _is_dir(wdir):
          warnings.append(f'{wdir.path}: unexpected file in a study folder '
                          '(expected <workload>_<jax|pytorch> folders); ignored.')
          continue
        m = _WORKLOAD_RE.match(wdir.name)
        if not m:
          warnings.append(f'{wdir.path}: not a <workload>_<jax|pytorch> '
                          'folder; left out.')
          continue
        workload, framework = m.group(1), m.group(2)
        if workload not in metric_columns:
          if workload in version.workloads:
            skipped += 1  # known but not scored: never read
          else:
            warnings.append(f'{wdir.path}: {workload!r} is not a workload of '
                            f'benchmark {version.name}; left out.')
          continue
        for trial, number in _numbered(tree.listdir(wdir.path, warnings),
                                       _TRIAL_RE):
          if not _is_dir(trial):
            continue  # the reference's per-run .log files live here
          if number is None:
            warnings.append(f'{trial.path}: not a trial_<n> folder; left out.')
            continue
          tasks.append(_Task(
              submission=sub.name, study=study.name, workload=workload,
              framework=framework, trial=trial.name, trial_number=number,
              path=os.path.join(trial.path, EVAL_CSV), time_column=time_column,
              metric_column=metric_columns[workload]))
  return tasks, submissions, skipped


def _warn_mixed_frameworks(trials: List[TrialLog], warnings: List[str]) -> None:
  """Both ``wmt_jax`` and ``wmt_pytorch`` in one study would mix two runs."""
  frameworks: Dict[Tuple[Path, str], Set[str]] = defaultdict(set)
  for t in trials:
    # path: <study>/<workload>_<framework>/trial_<t>/eval_measurements.csv
    frameworks[(t.path.parents[2], t.workload)].add(t.framework)
  for (study_folder, workload), fws in sorted(frameworks.items()):
    if len(fws) > 1:
      both = ' and '.join(f'{workload}_{f}' for f in sorted(fws))
      warnings.append(f'{study_folder}: both {both}; the trials of both '
                      'are loaded.')


# --- Reading the CSVs -------------------------------------------------------


# Reading happens in this process. A pool of 2 was measured on the 2-core CI
# machine (v0.5 logs): external tuning, 3,654 files, 0.29 s in process vs
# 0.23 s pooled with the other core idle but 0.35 s with it busy; self-tuning,
# 399 files, 0.079 s vs 0.070-0.10 s. At most ~60 ms on a two-ruleset score of
# ~0.6 s, a loss on a loaded machine, and forking a process that has imported
# JAX can deadlock: not worth it.


# What reading one CSV gives: (times, values, problem, note); see parse_eval_csv.
_Columns = Tuple[Tuple[float, ...], Tuple[float, ...], Optional[str], Optional[str]]


def _read_all(tasks: List[_Task], tree: _Tree,
              ) -> List[Tuple[Optional[TrialLog], Optional[str]]]:
  """Reads every task's CSV; results in task order."""
  columns = [tree.read_columns(t.path, t.time_column, t.metric_column)
             for t in tasks]
  results: List[Tuple[Optional[TrialLog], Optional[str]]] = []
  for task, (times, values, problem, note) in zip(tasks, columns):
    if problem is not None:
      results.append((None, f'{problem}; trial left out.'))
      continue
    trial = TrialLog(
        submission=task.submission, study=task.study, workload=task.workload,
        framework=task.framework, trial=task.trial,
        trial_number=task.trial_number, path=Path(task.path), times=times,
        values=values)
    results.append((trial, None if note is None else f'{note}.'))
  return results


def read_eval_columns(path: str | Path, time_column: str,
                      metric_column: str) -> _Columns:
  """Reads one ``eval_measurements.csv``: (times, values, problem, note).

  ``problem`` and ``note`` (see ``parse_eval_csv``) already start with the
  path; a problem means the trial is left out, a note that it is kept.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return (), (), f'{os.path.dirname(path)}: no {EVAL_CSV}', None
  except IsADirectoryError:
    return (), (), f'{path}: a folder, not a file', None
  except OSError as e:
    return (), (), (f'{path}: cannot read ({type(e).__name__}: '
                    f'{e.strerror or e})'), None
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    return (), (), (f'{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at '
                    f'offset {e.start})'), None
  if text.startswith('\ufeff'):  # a BOM would glue itself to the first name
    text = text[1:]
  times, values, problem, note = parse_eval_csv(text, time_column,
                                                metric_column)
  return (times, values, None if problem is None else f'{path}: {problem}',
          None if note is None else f'{path}: {note}')


def _rows(text: str) -> Iterator[Tuple[int, List[str]]]:
  """(line number, cells) of each non-blank row."""
  if '"' in text:
    # Quoted cells (maybe with commas or newlines): let csv handle them.
    reader = csv.reader(io.StringIO(text, newline=''))
    for cells in reader:
      if cells and cells != ['']:
        yield reader.line_num, cells
    return
  # The common case (both the reference's and our own logs): plain numbers,
  # where str.split is several times faster than csv.
  for lineno, line in enumerate(text.splitlines(), start=1):
    if line:
      yield lineno, line.split(',')


def _parse_plain(text: str, time_column: str, metric_column: str,
                 ) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
  """The common case at C speed: unquoted, well-formed, every cell a number.

  None for anything else (quotes, missing columns, no rows, a short row, an
  empty or text cell, a non-finite number); the careful row-by-row parser
  then finds the rows again and says what is wrong, with the line number.
  """
  if '"' in text:
    return None
  lines = text.splitlines()
  if len(lines) < 2 or not all(lines):
    return None
  names = lines[0].split(',')
  if time_column not in names or metric_column not in names:
    return None
  ti, mi, width = names.index(time_column), names.index(metric_column), len(names)
  rows = [line.split(',') for line in lines[1:]]
  if any(len(cells) != width for cells in rows):
    return None
  try:
    times = tuple(map(float, [cells[ti] for cells in rows]))
    values = tuple(map(float, [cells[mi] for cells in rows]))
  except ValueError:
    return None
  # A NaN metric is fine here, but an infinite one and a non-finite time are
  # not: those go to the careful parser for their message.
  if (not all(map(math.isfinite, times))
      or math.inf in values or -math.inf in values):
    return None
  return times, values


def parse_eval_csv(
    text: str, time_column: str, metric_column: str,
) -> Tuple[Tuple[float, ...], Tuple[float, ...], Optional[str], Optional[str]]:
  """Parses the two scoring columns of an ``eval_measurements.csv``.

  Returns:
    (times, values, problem, note): ``problem`` (a phrase) means the trial
    must be left out; ``note`` means it is kept but something deserves a
    warning (no eval rows, a cut-off last row dropped).
  """
  fast = _parse_plain(text, time_column, metric_column)
  if fast is not None:
    return fast[0], fast[1], None, None
  if not text.strip():
    return (), (), 'empty file', None
  rows = _rows(text)
  header = next(rows)
  names = header[1]
  missing = [c for c in (time_column, metric_column) if c not in names]
  if missing:
    return (), (), ('no column ' + ' or '.join(repr(c) for c in missing)), None
  ti, mi = names.index(time_column), names.index(metric_column)
  width = len(names)
  body = list(rows)
  note = None
  if body and len(body[-1][1]) < width:
    lineno, cells = body.pop()
    note = (f'line {lineno} is cut off ({len(cells)} of {width} cells); that '
            f'row is dropped, the {len(body)} eval(s) before it are kept')
  if not body and note is None:
    note = 'header but no eval rows; kept as a trial that never reached the target'
  times: List[float] = []
  values: List[float] = []
  isfinite, nan, na = math.isfinite, math.nan, _NA_TOKENS
  for lineno, cells in body:
    if len(cells) != width:
      return (), (), (f'line {lineno} has {len(cells)} cells but the header '
                      f'has {width}'), None
    cell = cells[ti]
    try:
      t = float(cell)
    except ValueError:
      if cell.strip() in na:
        t = nan
      else:
        return (), (), (f'line {lineno}: {time_column!r} is {cell!r}, not a '
                        'number'), None
    if not isfinite(t):
      return (), (), (f'line {lineno}: {time_column!r} is {cell!r}, not a '
                      'finite time'), None
    cell = cells[mi]
    if cell in na:
      v = nan
    else:
      try:
        v = float(cell)
      except ValueError:
        if cell.strip() in na:
          v = nan
        else:
          return (), (), (f'line {lineno}: {metric_column!r} is {cell!r}, '
                          'not a number'), None
      if v in (math.inf, -math.inf):
        return (), (), (f'line {lineno}: {metric_column!r} is {cell!r}; '
                        'a metric must be finite or NaN'), None
    times.append(t)
    values.append(v)
  return tuple(times), tuple(values), None, note
