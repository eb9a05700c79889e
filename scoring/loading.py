"""Reading a folder of trial logs for scoring: tolerant, fast, and loud about problems.

Layout (docs/RULES.md, Logs; the layout ``algoperf run`` writes under its
``--experiment_dir``, and the reference's)::

  <root>/<submission>/study_<s>/<workload>_<jax|pytorch>/trial_<t>/eval_measurements.csv

A *submission folder* is any folder below ``root``, at any depth, that
directly holds ``study_<n>`` folders; its name is its path relative to
``root`` joined with ``/`` (``nadamw``, or ``x/y`` for a run made with
``--experiment_name x/y/study_0``). Folders on the way to one are passed
through silently; the search does not go into a submission folder's other
folders, nor into folders named like a workload or trial folder.

A study folder may carry the timestamp ``--append_timestamp`` adds
(``study_0-2026-12-02-10-11-12``): its study is the number before it. The
trials of one study number are one study, whichever folders they are in; a
trial (same workload, study number, trial number) found in several of them is
scored from the newest folder (the latest timestamp; a folder without one is
the oldest), and a warning says so. The reference scorer counts each folder as
a study of its own, so a warning also names every study spread over several
folders.

Only two columns of each ``eval_measurements.csv`` matter to scoring: the time
(``score`` = accumulated submission time, or ``global_step``) and
``validation/<target_metric_name>`` of the workload in the benchmark version.
A file without a ``score`` column but with ``accumulated_submission_time``
(an older column set, the same seconds) is scored from that column, with one
warning line per submission folder.

Our own runner also writes ``meta_data_<p>.json`` into each trial folder; a few
facts of the first attempt's ``meta_data_0.json`` are read (``TrialMeta``):
the benchmark version, the tuning ruleset, whether the compilation cache was
on, and the machine-speed factor the budget was scaled by. Times (every time
column but ``global_step``) are divided by that factor as they are loaded, so
they are reference-machine seconds (``speed_rescale=False``: as logged).
Logs of other tools (the reference's, the competition's, a log extract) have
no meta data and are not probed for it per trial: see ``_MetaProbe``.

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
* a ``meta_data_0.json`` that is not a JSON object, or a fact in it of the
  wrong type -> warning, the trial is kept and that fact is ignored.
* dotfiles and dot-folders anywhere, files directly under ``root`` or in a
  folder on the way to a submission folder, files in a workload folder (the
  reference writes its ``<workload>_<fw>_<date>.log`` there) and files in a
  trial folder (hparams, meta data, ``measurements.csv``) are skipped
  silently; other stray files and folders get a warning (a folder below
  ``root`` that leads to no submission folder gets one line, at its top).
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
import gc
import io
import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import (Dict, Iterable, Iterator, List, NamedTuple, Optional,
                    Sequence, Set, Tuple, Union)

from algoperf.benchmarks import BenchmarkVersion
from scoring import extract as extract_lib

EVAL_CSV = 'eval_measurements.csv'
META_FILE = 'meta_data_0.json'  # the first attempt's facts hold for the trial
FRAMEWORKS = ('jax', 'pytorch')
RULESETS = ('external', 'self')
STEP_COLUMN = 'global_step'  # the one time column that is not seconds
SCORE_COLUMN = 'score'  # submission time: what scoring reads by default
# Older logs' name for the same seconds, read where a file has no `score`.
OLD_SCORE_COLUMN = 'accumulated_submission_time'

LAYOUT = ('ROOT/<submission>/study_<n>/<workload>_<jax|pytorch>/trial_<k>/'
          'eval_measurements.csv')
"""The layout scoring reads, for messages."""

# A folder tree deeper than this below root is not searched further (it also
# stops a symlink loop).
MAX_DEPTH = 32

# study_<n>, or study_<n>-YYYY-MM-DD-HH-MM-SS (algoperf run --append_timestamp).
_STUDY_RE = re.compile(r'study_(\d+)(-\d{4}(?:-\d{2}){5})?\Z')
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
class TrialMeta:
  """What scoring uses of a trial's ``meta_data_0.json`` (None: not recorded)."""

  benchmark: Optional[str] = None  # the version the run used: 'small', 'v0.6'
  tuning_ruleset: Optional[str] = None  # 'external' or 'self'
  compilation_cache_used: Optional[bool] = None  # JAX's persistent cache on
  speed_factor: float = 1.0  # the budget was the nominal one x this


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
  # (seconds: divided by ``speed_factor``, unless speed_rescale=False)
  values: Tuple[float, ...]  # metric column, one per eval row; NaN: no value
  meta: Optional[TrialMeta] = None  # None: no meta_data_0.json (not our runner)

  @property
  def study_number(self) -> int:
    """The ``<s>`` of ``study_<s>`` (or of ``study_<s>-<timestamp>``)."""
    return study_number(self.study)

  @property
  def speed_factor(self) -> float:
    """Its machine-speed factor, which its times are divided by (1.0 if none)."""
    return 1.0 if self.meta is None else self.meta.speed_factor


def study_number(folder_name: str) -> int:
  """The study number of a study folder's name: ``study_3`` and
  ``study_3-2026-12-02-10-11-12`` are both 3.

  Raises:
    ValueError: not a study folder's name.
  """
  m = _STUDY_RE.match(folder_name)
  if not m:
    raise ValueError(f'{folder_name!r} is not a study_<n> folder name.')
  return int(m.group(1))


def _study_age(folder_name: str) -> str:
  """Sorts a study number's folders oldest first (no timestamp: the oldest)."""
  m = _STUDY_RE.match(folder_name)
  return (m.group(2) or '') if m else ''


@dataclasses.dataclass
class LoadResult:
  """Trials that loaded, one warning line per problem, and counts for reports."""

  trials: List[TrialLog]  # by (submission, workload, study, trial number)
  warnings: List[str]
  submissions: List[str]  # every submission folder found, even one with no trials
  workloads: Tuple[str, ...]  # the workloads asked for
  files_read: int = 0  # trial folders whose eval_measurements.csv was read (or tried)
  folders_skipped: int = 0  # workload folders of known workloads not asked for


class FoundTrial(NamedTuple):
  """A trial folder the walk found (before any CSV is read)."""

  submission: str
  study: str
  workload: str
  framework: str
  trial: str
  trial_number: int
  folder: str  # a str, not a Path: thousands of Path objects cost real time
  meta: Optional[TrialMeta]


class _WorkloadDir(NamedTuple):
  """A ``<workload>_<framework>`` folder: its trials and its own warnings."""

  path: str
  workload: str
  trials: List[FoundTrial]
  warnings: List[str]  # said only if the workload is read


class _NoSubmission(NamedTuple):
  """A folder below root that leads to no submission folder (said once, at its top)."""

  text: str


_Event = Union[str, _WorkloadDir, _NoSubmission]


@dataclasses.dataclass
class Discovery:
  """What walking a logs folder found, before any version is chosen.

  ``trials`` holds every trial folder of every workload folder (scored or not,
  known or not), with its meta data where the runner wrote some;
  ``submissions`` every submission folder, in walk order.
  """

  root: Path
  submissions: List[str]
  trials: List[FoundTrial]
  events: List[_Event]  # warnings and workload folders, in walk order
  root_has_studies: bool  # root itself holds study_<n> folders (one level too deep)
  tree: '_Tree'

  def workload_names(self) -> Set[str]:
    """Every workload named by a workload folder that holds trials."""
    return {t.workload for t in self.trials}

  def folder_warnings(self) -> List[str]:
    """The warnings about folders that do not fit the layout (no version needed)."""
    return [e if isinstance(e, str) else e.text for e in self.events
            if not isinstance(e, _WorkloadDir)]


def load_logs(
    root: str | Path,
    version: BenchmarkVersion,
    *,
    workloads: Optional[Iterable[str]] = None,
    time_column: str = 'score',
    discovery: Optional[Discovery] = None,
    speed_rescale: bool = True,
) -> LoadResult:
  """Loads every trial of the asked-for workloads under ``root``.

  Args:
    root: a folder of submission folders (see the module docstring).
    version: gives each workload's target metric, and which folder names are
      workloads at all.
    workloads: names to load; default: the version's base and held-out
      workloads. Each must be a workload of ``version``.
    time_column: ``'score'`` (seconds) or ``'global_step'`` (steps to target);
      any other column name works too. Every column but ``global_step`` is
      taken as seconds and divided by the trial's meta ``speed_factor``.
    discovery: ``discover(root)``, if the caller already has it.
    speed_rescale: False keeps the times as logged (the run machine's
      seconds, what other tools read), not divided by ``speed_factor``.

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
  if discovery is None:
    discovery = discover(root)
  warnings: List[str] = []
  tasks: List[Tuple[FoundTrial, str, str]] = []  # (trial, CSV path, metric column)
  skipped = 0
  join = os.path.join
  for event in discovery.events:
    if isinstance(event, str):
      warnings.append(event)
    elif isinstance(event, _NoSubmission):
      warnings.append(event.text)
    elif event.workload not in metric_columns:
      if event.workload in version.workloads:
        skipped += 1  # known but not scored: never read
      else:
        warnings.append(f'{event.path}: {event.workload!r} is not a workload '
                        f'of benchmark {version.name}; left out.')
    else:
      warnings.extend(event.warnings)
      metric = metric_columns[event.workload]
      tasks.extend((t, join(t.folder, EVAL_CSV), metric) for t in event.trials)
  # Reading makes no reference cycles, only thousands of short-lived lists,
  # which set the cyclic collector off again and again for nothing.
  collecting = gc.isenabled()
  gc.disable()
  try:
    trials = _read_all(tasks, discovery.tree, time_column, warnings, root,
                       speed_rescale=speed_rescale)
  finally:
    if collecting:
      gc.enable()
  trials = _merge_timestamped_studies(trials, root, warnings)
  _warn_mixed_frameworks(trials, warnings)
  trials.sort(key=lambda t: (t.submission, t.workload, t.study_number,
                             t.trial_number, t.framework))
  return LoadResult(trials=trials, warnings=warnings,
                    submissions=list(discovery.submissions), workloads=wanted,
                    files_read=len(tasks), folders_skipped=skipped)


def discover(root: str | Path) -> Discovery:
  """Walks ``root`` for submission, study, workload and trial folders.

  Reads no CSV, only the trials' ``meta_data_0.json`` (our runner's logs);
  knows no benchmark version, so it can help choose one. A ``root`` that
  cannot be listed gives a warning and nothing found.

  Raises:
    extract.ExtractError: ``root`` is inside an extract that cannot be read.
  """
  root = Path(root)
  tree = _open_tree(root)
  events: List[_Event] = []
  submissions: List[str] = []
  trials: List[FoundTrial] = []
  entries = tree.listdir(root, events)
  root_has_studies = any(_is_dir(e) and _STUDY_RE.match(e.name) for e in entries)
  _walk(tree, entries, '', 0, events, submissions, trials)
  return Discovery(root=root, submissions=submissions, trials=trials,
                   events=events, root_has_studies=root_has_studies, tree=tree)


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
  counts: Dict[Tuple[str, str], Dict[int, int]] = defaultdict(
      lambda: defaultdict(int))
  for t in result.trials:
    counts[(t.submission, t.workload)][t.study_number] += 1
  problems = []
  for submission in result.submissions:
    for workload in result.workloads:
      studies = counts.get((submission, workload), {})
      if len(studies) != num_studies:
        problems.append(
            f'{submission}/{workload}: {_count(len(studies), "study", "studies")}'
            f' with logs, expected {num_studies} ({ruleset} tuning, '
            f'{version.name}).')
      for study in sorted(studies):
        if studies[study] != num_trials:
          problems.append(
              f'{submission}/study_{study}/{workload}: '
              f'{_count(studies[study], "trial", "trials")} with logs, expected '
              f'{num_trials} ({ruleset} tuning, {version.name}).')
  return problems


def _count(n: int, one: str, many: str) -> str:
  return f'{n} {one if n == 1 else many}'


# --- Sources: a folder on disk, or a folder inside a log extract -------------


class _Tree:
  """Folders on disk: what the walk lists and the reader reads."""

  has_meta = True  # trial folders may hold our runner's meta_data_0.json

  def listdir(self, path: str | Path, warnings: List) -> List[os.DirEntry]:
    return _listdir(path, warnings)

  def read_columns(self, path: str, time_column: str,
                   metric_column: str) -> _Columns:
    return read_eval_columns(path, time_column, metric_column)


class _ExtractTree(_Tree):
  """The same walk over an extract's in-memory tree (``scoring/extract.py``)."""

  has_meta = False  # an extract keeps eval CSV columns only

  def __init__(self, extract: extract_lib.Extract):
    self._extract = extract

  def listdir(self, path: str | Path, warnings: List) -> list:
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
      return _unread(f'{os.path.dirname(path)}: no {EVAL_CSV}', time_column)
    return _with_path(path, parse_evals(text, time_column, metric_column))


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


# --- Meta data --------------------------------------------------------------


def parse_meta(text: str) -> Tuple[Optional[TrialMeta], List[str]]:
  """The scoring facts of a ``meta_data_0.json`` text, and its problems (phrases).

  Absent keys are not recorded (``speed_factor`` absent or null is 1.0). A
  fact of the wrong type is a problem and is ignored; text that is not a JSON
  object gives no meta at all.
  """
  try:
    raw = json.loads(text)
  except ValueError as e:
    return None, [f'not valid JSON ({e})']
  if not isinstance(raw, dict):
    return None, [f'a JSON {type(raw).__name__}, not an object']
  problems = []
  benchmark = raw.get('benchmark')
  if benchmark is not None and not isinstance(benchmark, str):
    problems.append(f'benchmark is {benchmark!r}, not a version name')
    benchmark = None
  ruleset = raw.get('tuning_ruleset')
  if ruleset is not None and ruleset not in RULESETS:
    problems.append(f'tuning_ruleset is {ruleset!r}, not "external" or "self"')
    ruleset = None
  cache = raw.get('compilation_cache_used')
  if cache is not None and not isinstance(cache, bool):
    problems.append(f'compilation_cache_used is {cache!r}, not true or false')
    cache = None
  factor = raw.get('speed_factor')
  if factor is None:
    factor = 1.0
  elif (isinstance(factor, bool) or not isinstance(factor, (int, float))
        or not math.isfinite(factor) or factor <= 0):
    problems.append(f'speed_factor is {factor!r}, not a positive number; '
                    'times are not rescaled')
    factor = 1.0
  return TrialMeta(benchmark=benchmark, tuning_ruleset=ruleset,
                   compilation_cache_used=cache,
                   speed_factor=float(factor)), problems


def read_meta(trial_folder: str | Path) -> Tuple[Optional[TrialMeta], Optional[str], bool]:
  """Reads ``trial_folder/meta_data_0.json``: (meta, warning line, file exists)."""
  path = os.path.join(trial_folder, META_FILE)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return None, None, False
  except OSError as e:
    return None, (f'{path}: cannot read ({type(e).__name__}: '
                  f'{e.strerror or e}); the trial is scored without its meta '
                  'data.'), True
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError:
    return None, f'{path}: not UTF-8 text; the trial is scored without its meta data.', True
  meta, problems = parse_meta(text)
  if meta is None:
    return None, (f'{path}: {problems[0]}; the trial is scored without its '
                  'meta data.'), True
  warning = None
  if problems:
    warning = f'{path}: {"; ".join(problems)}; ignored.'
  return meta, warning, True


class _MetaProbe:
  """Reads meta data only where our runner wrote some, at almost no cost elsewhere.

  Our runner writes ``meta_data_0.json`` into every trial folder it makes,
  the reference never does. Per submission folder, the first trial folders
  are probed; once one has the file, every trial of that submission is read,
  and after ``MISSES`` trials in a row without one, the submission is taken
  for another tool's logs and no more are tried. So 4,000 competition
  trials cost a few dozen failed opens, not 4,000.
  """

  MISSES = 3

  def __init__(self, tree: _Tree):
    self._off = not tree.has_meta
    self._ours = False
    self._misses = 0

  def read(self, folder: str, warnings: List[str]) -> Optional[TrialMeta]:
    if self._off:
      return None
    meta, warning, exists = read_meta(folder)
    if warning is not None:
      warnings.append(warning)
    if exists:
      self._ours = True
    elif not self._ours:
      self._misses += 1
      self._off = self._misses >= self.MISSES
    return meta


# --- Walking the tree -------------------------------------------------------


def _listdir(path: str | Path, warnings: List) -> List[os.DirEntry]:
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


def _walk(tree: _Tree, entries: Sequence, prefix: str, depth: int,
          events: List[_Event], submissions: List[str],
          trials: List[FoundTrial]) -> bool:
  """Looks for submission folders among ``entries`` and below; True if any found.

  ``entries`` are the listing of a folder that is not itself a submission
  folder (``root`` at depth 0); ``prefix`` is that folder's name relative to
  root plus ``/`` ('' for root).
  """
  found = False
  for sub in entries:
    # Files beside the submission folders (README, MANIFEST, outputs) are
    # expected in a logs folder; only folders are submissions.
    if not _is_dir(sub):
      continue
    if depth == 0 and _STUDY_RE.match(sub.name):
      events.append(
          f'{sub.path}: a study folder where a submission folder is expected '
          '(is the logs folder one level too deep?); left out.')
      continue
    name = prefix + sub.name
    children = tree.listdir(sub.path, events)
    if any(_is_dir(e) and _STUDY_RE.match(e.name) for e in children):
      submissions.append(name)
      _scan_submission(tree, sub, name, children, events, trials)
      found = True
      continue
    below: List[_Event] = []
    # A workload or trial folder cannot hold a submission folder: not searched.
    searched = (depth + 1 < MAX_DEPTH and not _WORKLOAD_RE.match(sub.name)
                and not _TRIAL_RE.match(sub.name))
    if searched and _walk(tree, children, name + '/', depth + 1, below,
                          submissions, trials):
      events.extend(below)
      found = True
      continue
    # Nothing below: one line here instead of one per folder further down
    # (but problems listing folders down there are kept).
    events.extend(e for e in below if isinstance(e, str))
    events.append(_NoSubmission(_no_submission_text(sub.path, children)))
  return found


def _no_submission_text(path: str, children: Sequence) -> str:
  if any(_is_dir(e) and _WORKLOAD_RE.match(e.name) for e in children):
    # e.g. a run made with --experiment_name my_run (no /study_<n> at its end).
    return (f'{path}: holds <workload>_<jax|pytorch> folders but no study_<n> '
            'folders; move them into a study_0 folder (an --experiment_name '
            'should end in /study_<n>); left out.')
  return f'{path}: no study_<n> folders; not a submission folder, left out.'


def _scan_submission(tree: _Tree, sub, name: str, entries: Sequence,
                     events: List[_Event], trials: List[FoundTrial]) -> None:
  """The study, workload and trial folders of one submission folder."""
  probe = _MetaProbe(tree)
  for study in entries:
    if not _is_dir(study):
      events.append(f'{study.path}: unexpected file in a submission '
                    'folder (expected study_<n> folders); ignored.')
      continue
    if not _STUDY_RE.match(study.name):
      events.append(f'{study.path}: not a study_<n> folder; left out.')
      continue
    for wdir in tree.listdir(study.path, events):
      if not _is_dir(wdir):
        events.append(f'{wdir.path}: unexpected file in a study folder '
                      '(expected <workload>_<jax|pytorch> folders); ignored.')
        continue
      m = _WORKLOAD_RE.match(wdir.name)
      if not m:
        events.append(f'{wdir.path}: not a <workload>_<jax|pytorch> '
                      'folder; left out.')
        continue
      workload, framework = m.group(1), m.group(2)
      own_warnings: List[str] = []
      found: List[FoundTrial] = []
      for trial, number in _numbered(tree.listdir(wdir.path, own_warnings),
                                     _TRIAL_RE):
        if not _is_dir(trial):
          continue  # the reference's per-run .log files live here
        if number is None:
          own_warnings.append(f'{trial.path}: not a trial_<n> folder; left out.')
          continue
        found.append(FoundTrial(
            submission=name, study=study.name, workload=workload,
            framework=framework, trial=trial.name, trial_number=number,
            folder=trial.path, meta=probe.read(trial.path, own_warnings)))
      trials.extend(found)
      events.append(_WorkloadDir(path=wdir.path, workload=workload,
                                 trials=found, warnings=own_warnings))


def _merge_timestamped_studies(trials: List[TrialLog], root: Path,
                               warnings: List[str]) -> List[TrialLog]:
  """One study per study number; a trial found in several folders: the newest.

  ``study_0`` and ``study_0-<timestamp>`` folders (``--append_timestamp``)
  hold one study. Where the same trial (workload, study number, trial number,
  framework) is in several of them, the newest folder's is kept. One warning
  per (submission, workload, study number) spread over several folders: the
  reference scorer counts each folder as a study of its own.
  """
  folders: Dict[Tuple[str, str, int], Set[str]] = defaultdict(set)
  for t in trials:
    folders[(t.submission, t.workload, t.study_number)].add(t.study)
  spread = {key: names for key, names in folders.items() if len(names) > 1}
  if not spread:
    return trials
  newest: Dict[tuple, TrialLog] = {}
  replaced: Dict[Tuple[str, str, int], Set[str]] = defaultdict(set)
  for t in trials:
    key = (t.submission, t.workload, t.study_number, t.trial_number, t.framework)
    kept = newest.get(key)
    if kept is not None:
      replaced[key[:3]].add(t.trial)
      if _study_age(t.study) <= _study_age(kept.study):
        continue
    newest[key] = t
  for (submission, workload, number), names in sorted(spread.items()):
    listed = ', '.join(sorted(names, key=_study_age))
    text = (f'{root / submission}: study {number} of {workload} is in '
            f'{len(names)} folders ({listed}); scored as one study (the '
            'reference scorer counts each folder as a study of its own)')
    twice = replaced.get((submission, workload, number))
    if twice:
      shown = ', '.join(sorted(twice, key=lambda n: (len(n), n)))
      text += (f'; {shown} {"is" if len(twice) == 1 else "are"} in more '
               'than one of them: the newest folder\'s scored')
    warnings.append(text + '.')
  kept_ids = {id(t) for t in newest.values()}
  return [t for t in trials if id(t) in kept_ids]


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


class ParsedEvals(NamedTuple):
  """What reading one eval CSV gives (see ``parse_evals``)."""

  times: Tuple[float, ...]
  values: Tuple[float, ...]
  problem: Optional[str]  # the trial is left out
  note: Optional[str]  # the trial is kept, with a warning
  time_column: str  # the column the times came from


_Columns = ParsedEvals  # what a tree's read_columns gives


def _read_all(tasks: Sequence[Tuple[FoundTrial, str, str]], tree: _Tree,
              time_column: str, warnings: List[str], root: Path, *,
              speed_rescale: bool = True) -> List[TrialLog]:
  """Reads every task's CSV; the trials that loaded, warnings in task order.

  Files timed by the older ``accumulated_submission_time`` column (no
  ``score``) get one warning per submission folder, after the others.
  """
  rescale = speed_rescale and time_column != STEP_COLUMN
  trials: List[TrialLog] = []
  old_column: Dict[str, List[str]] = defaultdict(list)  # submission -> paths
  for found, path, metric in tasks:
    times, values, problem, note, used = tree.read_columns(path, time_column, metric)
    if problem is not None:
      warnings.append(f'{problem}; trial left out.')
      continue
    if note is not None:
      warnings.append(f'{note}.')
    if used != time_column:
      old_column[found.submission].append(path)
    meta = found.meta
    if rescale and meta is not None and meta.speed_factor != 1.0:
      # Reference-machine seconds: the budget was scaled by the factor, so
      # dividing the times by it makes them compare with the nominal budget.
      factor = meta.speed_factor
      times = tuple(t / factor for t in times)
    trials.append(TrialLog(
        submission=found.submission, study=found.study, workload=found.workload,
        framework=found.framework, trial=found.trial,
        trial_number=found.trial_number, path=Path(path), times=times,
        values=values, meta=meta))
  for submission, paths in old_column.items():
    some = 'trial has' if len(paths) == 1 else 'trials have'
    warnings.append(
        f'{root / submission}: {len(paths)} {some} no {SCORE_COLUMN!r} column '
        f'in {EVAL_CSV} (an older column set; e.g. {paths[0]}): scored from '
        f'{OLD_SCORE_COLUMN!r}, the same submission time.')
  return trials


def _unread(problem: str, time_column: str) -> ParsedEvals:
  return ParsedEvals((), (), problem, None, time_column)


def _with_path(path: str | Path, parsed: ParsedEvals) -> ParsedEvals:
  """``parsed`` with its problem and note starting with ``path``."""
  return parsed._replace(
      problem=None if parsed.problem is None else f'{path}: {parsed.problem}',
      note=None if parsed.note is None else f'{path}: {parsed.note}')


def read_eval_columns(path: str | Path, time_column: str,
                      metric_column: str) -> ParsedEvals:
  """Reads one ``eval_measurements.csv`` (see ``parse_evals``).

  ``problem`` and ``note`` already start with the path; a problem means the
  trial is left out, a note that it is kept.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    return _unread(f'{os.path.dirname(path)}: no {EVAL_CSV}', time_column)
  except IsADirectoryError:
    return _unread(f'{path}: a folder, not a file', time_column)
  except OSError as e:
    return _unread(f'{path}: cannot read ({type(e).__name__}: '
                   f'{e.strerror or e})', time_column)
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    return _unread(f'{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at '
                   f'offset {e.start})', time_column)
  if text.startswith('\ufeff'):  # a BOM would glue itself to the first name
    text = text[1:]
  return _with_path(path, parse_evals(text, time_column, metric_column))


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


def _time_column_in(names: Sequence[str], time_column: str) -> str:
  """``time_column``, or the older name of ``score`` where only that one is there."""
  if (time_column == SCORE_COLUMN and time_column not in names
      and OLD_SCORE_COLUMN in names):
    return OLD_SCORE_COLUMN
  return time_column


def _parse_plain(text: str, time_column: str, metric_column: str,
                 ) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...], str]]:
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
  time_column = _time_column_in(names, time_column)
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
  return times, values, time_column


def parse_eval_csv(
    text: str, time_column: str, metric_column: str,
) -> Tuple[Tuple[float, ...], Tuple[float, ...], Optional[str], Optional[str]]:
  """Parses the two scoring columns of an ``eval_measurements.csv``.

  Returns:
    (times, values, problem, note): ``problem`` (a phrase) means the trial
    must be left out; ``note`` means it is kept but something deserves a
    warning (no eval rows, a cut-off last row dropped, the times read from
    ``accumulated_submission_time`` for want of ``score``).
  """
  parsed = parse_evals(text, time_column, metric_column)
  note = parsed.note
  if parsed.problem is None and parsed.time_column != time_column:
    said = (f'no {time_column!r} column; the times are its older name '
            f'{parsed.time_column!r}')
    note = said if note is None else f'{note}; {said}'
  return parsed.times, parsed.values, parsed.problem, note


def parse_evals(text: str, time_column: str, metric_column: str) -> ParsedEvals:
  """``parse_eval_csv``'s work, saying which column the times came from.

  With ``time_column`` ``'score'``, a file that has no ``score`` column but
  has ``accumulated_submission_time`` (an older column set: the same seconds)
  is read from that one; ``time_column`` of the result says so, and the
  caller warns.
  """
  fast = _parse_plain(text, time_column, metric_column)
  if fast is not None:
    return ParsedEvals(fast[0], fast[1], None, None, fast[2])
  if not text.strip():
    return _unread('empty file', time_column)
  rows = _rows(text)
  header = next(rows)
  names = header[1]
  time_column = _time_column_in(names, time_column)
  missing = [c for c in (time_column, metric_column) if c not in names]
  if missing:
    return _unread('no column ' + ' or '.join(repr(c) for c in missing),
                   time_column)
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
      return _unread(f'line {lineno} has {len(cells)} cells but the header '
                     f'has {width}', time_column)
    cell = cells[ti]
    try:
      t = float(cell)
    except ValueError:
      if cell.strip() in na:
        t = nan
      else:
        return _unread(f'line {lineno}: {time_column!r} is {cell!r}, not a '
                       'number', time_column)
    if not isfinite(t):
      return _unread(f'line {lineno}: {time_column!r} is {cell!r}, not a '
                     'finite time', time_column)
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
          return _unread(f'line {lineno}: {metric_column!r} is {cell!r}, '
                         'not a number', time_column)
      if v in (math.inf, -math.inf):
        return _unread(f'line {lineno}: {metric_column!r} is {cell!r}; '
                       'a metric must be finite or NaN', time_column)
    times.append(t)
    values.append(v)
  return ParsedEvals(tuple(times), tuple(values), None, note, time_column)
