"""Log extracts: a whole tree of trial logs in one small file, read like a folder.

The first competition's logs are 65 MB of CSVs; scoring reads three columns of
them. An extract keeps, for each trial's ``eval_measurements.csv``, the
``global_step``, ``score`` and ``validation/<target metric>`` columns with
their cells copied verbatim (no float round trip), in one xz-compressed JSON
file (``scoring/data/competition_v0.5.json.xz``, built by
``scripts/build_competition_extract.py``). So ``algoperf reproduce v0.5``
works offline and in Docker.

A path *inside* an extract names a folder of its tree, exactly as on disk::

  scoring/data/competition_v0.5.json.xz/external_tuning/<submission>/study_0/...

``scoring.loading`` walks such a folder with the same code as a real one
(``locate`` tells the two apart), so there is one scoring implementation.

The file holds ``{"format": FORMAT, "meta": {...}, "files": {relative path:
CSV text}}`` serialized with sorted keys and no whitespace, so the same logs
always give the same bytes (for a given liblzma; ``payload`` compares the
uncompressed bytes, which do not depend on it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import lzma
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

FORMAT = 'algoperf-log-extract/1'
SUFFIX = '.json.xz'
TIME_COLUMNS = ('global_step', 'score')


class ExtractError(ValueError):
  """An extract that cannot be read: corrupt, cut short or of another format."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """A file or folder inside an extract, shaped like ``os.DirEntry``."""

  name: str
  path: str
  folder: bool

  def is_dir(self) -> bool:
    return self.folder


@dataclasses.dataclass(frozen=True)
class Extract:
  """A loaded extract: CSV texts by path, and the folder listing they imply."""

  path: Path  # the .json.xz file
  meta: Mapping[str, object]
  files: Mapping[str, str]  # full path (``path``/relative) -> CSV text
  folders: Mapping[str, Tuple[Entry, ...]]  # full path -> entries, by name

  def scandir(self, folder: str | Path) -> Optional[Tuple[Entry, ...]]:
    """The entries of ``folder`` (a path inside the extract); None if no such folder."""
    return self.folders.get(os.path.normpath(folder))

  def read_text(self, file: str | Path) -> Optional[str]:
    """The CSV text of ``file`` (a path inside the extract); None if absent."""
    return self.files.get(os.path.normpath(file))


def locate(path: str | Path) -> Optional[Tuple[Path, str]]:
  """Splits a path into (extract file, folder inside it); None if not in an extract.

  ``x/competition_v0.5.json.xz/self_tuning`` gives
  ``(Path('x/competition_v0.5.json.xz'), 'self_tuning')``; a real folder or a
  path that exists nowhere gives None. Costs a stat or two per path level.
  """
  path = Path(path)
  for candidate in (path, *path.parents):
    if candidate.name.endswith(SUFFIX) and candidate.is_file():
      inner = path.relative_to(candidate).as_posix()
      return candidate, '' if inner == '.' else inner
    if candidate.is_dir():
      return None
  return None


def payload(files: Mapping[str, str], meta: Mapping[str, object]) -> bytes:
  """The uncompressed bytes of an extract: deterministic for the same input."""
  for name in files:
    parts = name.split('/')
    if name.startswith('/') or '' in parts or '.' in parts or '..' in parts:
      raise ValueError(f'Extract paths must be relative and normalized, got {name!r}.')
  doc = {'format': FORMAT, 'meta': dict(meta), 'files': dict(files)}
  return json.dumps(doc, sort_keys=True, ensure_ascii=True,
                    separators=(',', ':')).encode('ascii')


def write(path: str | Path, files: Mapping[str, str],
          meta: Mapping[str, object]) -> int:
  """Writes an extract (xz, preset 9) atomically; returns its size in bytes."""
  path = Path(path)
  data = lzma.compress(payload(files, meta), format=lzma.FORMAT_XZ,
                       check=lzma.CHECK_CRC64, preset=9)
  tmp = path.with_name(f'.{path.name}.tmp')
  tmp.write_bytes(data)
  os.replace(tmp, path)
  return len(data)


def read_payload(path: str | Path) -> bytes:
  """The uncompressed bytes of the extract at ``path``.

  Raises:
    ExtractError: the file cannot be read or is not valid xz.
  """
  path = Path(path)
  try:
    return lzma.decompress(path.read_bytes())
  except (OSError, lzma.LZMAError, EOFError) as e:
    raise ExtractError(_broken(path, f'{type(e).__name__}: {e}')) from e


def read(path: str | Path) -> Extract:
  """Loads the extract at ``path`` (cached while the file is unchanged).

  Raises:
    ExtractError: the file is unreadable, corrupt or not an extract.
  """
  path = Path(path)
  try:
    st = path.stat()
  except OSError as e:
    raise ExtractError(_broken(path, f'{type(e).__name__}: {e.strerror or e}')) from e
  return _read_cached(str(path), st.st_mtime_ns, st.st_size)


def _broken(path: Path, why: str) -> str:
  return (f'{path}: not a readable log extract ({why}). Rebuild it with '
          '`python scripts/build_competition_extract.py`, or restore it with '
          f'`git checkout -- {path}`.')


@functools.lru_cache(maxsize=4)
def _read_cached(path_str: str, mtime_ns: int, size: int) -> Extract:
  del mtime_ns, size  # only part of the cache key
  path = Path(path_str)
  raw = read_payload(path)
  try:
    doc = json.loads(raw)
  except ValueError as e:
    raise ExtractError(_broken(path, f'bad JSON: {e}')) from e
  if not isinstance(doc, dict) or doc.get('format') != FORMAT:
    found = doc.get('format') if isinstance(doc, dict) else type(doc).__name__
    raise ExtractError(_broken(path, f'format {found!r}, expected {FORMAT!r}'))
  files = doc.get('files')
  if not isinstance(files, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
    raise ExtractError(_broken(path, '"files" is not a map of paths to CSV text'))
  root = os.path.normpath(path)
  full: Dict[str, str] = {}
  children: Dict[str, Dict[str, bool]] = {root: {}}
  for rel, text in files.items():
    parts = rel.split('/')
    folder = root
    for i, part in enumerate(parts):
      child = os.path.join(folder, part)
      is_folder = i < len(parts) - 1
      children.setdefault(folder, {})[part] = is_folder
      if is_folder:
        children.setdefault(child, {})
      folder = child
    full[folder] = text
  folders = {
      f: tuple(Entry(n, os.path.join(f, n), d) for n, d in sorted(kids.items()))
      for f, kids in children.items()
  }
  return Extract(path=path, meta=doc.get('meta') or {}, files=full,
                 folders=folders)


def reduce_csv(text: str, metric_column: str) -> Optional[str]:
  """An ``eval_measurements.csv`` cut to the time columns and ``metric_column``.

  Cells are copied verbatim. Returns None when the file is not plainly
  well-formed (quoted cells, a missing column, a row of another width): the
  caller then keeps the whole text, so the loader meets exactly the problem it
  would meet in the original file.
  """
  if '"' in text:
    return None
  if text.startswith('\ufeff'):
    text = text[1:]
  lines = [line for line in text.splitlines() if line]
  if not lines:
    return None
  names = lines[0].split(',')
  wanted = (*TIME_COLUMNS, metric_column)
  if any(c not in names for c in wanted):
    return None
  index = [names.index(c) for c in wanted]
  out: List[str] = []
  for line in lines:
    cells = line.split(',')
    if len(cells) != len(names):
      return None
    out.append(','.join(cells[i] for i in index))
  return '\n'.join(out) + '\n'


__all__ = ['Entry', 'Extract', 'ExtractError', 'FORMAT', 'SUFFIX', 'locate',
           'payload', 'read', 'read_payload', 'reduce_csv', 'write']
