#!/usr/bin/env python3
"""Builds the shipped extract of the first competition's logs (v0.5).

Reads the full log tree (``--logs``: mlcommons/submissions_algorithms
``previous_leaderboards/algoperf_v05/logs``, or a folder of the same layout)
and writes ``scoring/data/competition_v0.5.json.xz``: for every trial of a
scored workload (the version's base and held-out workloads), the
``global_step``, ``score`` and ``validation/<target metric>`` columns of its
``eval_measurements.csv``, cells copied verbatim. A file that is not plainly
well-formed is kept whole, so scoring meets the same problem in the extract as
in the original. Same logs, same bytes.

  python scripts/build_competition_extract.py            # (re)write the extract
  python scripts/build_competition_extract.py --check    # exit 1 if it is stale

``--check`` compares the uncompressed contents, which do not depend on the
liblzma version that compressed them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from algoperf import benchmarks  # noqa: E402
from scoring import extract, loading  # noqa: E402

DEFAULT_OUTPUT = REPO / 'scoring' / 'data' / 'competition_v0.5.json.xz'
RULESET_FOLDERS = ('external_tuning', 'self_tuning')
_WORKLOAD_RE = re.compile(r'(.+)_(' + '|'.join(loading.FRAMEWORKS) + r')\Z')


def _source(logs: Path) -> Dict[str, str]:
  """Where the logs came from, as their MANIFEST.md says (if it is there)."""
  manifest = logs / 'MANIFEST.md'
  if not manifest.is_file():
    return {}
  text = manifest.read_text(encoding='utf-8')
  found = {}
  for key, pattern in (('repository', r'Repository:\s*(\S+)'),
                       ('commit', r'Commit:\s*`?([0-9a-f]{40})'),
                       ('path', r'Source path:\s*`([^`]+)`')):
    m = re.search(pattern, text)
    if m:
      found[key] = m.group(1)
  return found


def collect(logs: Path, version: benchmarks.BenchmarkVersion
            ) -> Tuple[Dict[str, str], List[str]]:
  """(relative path -> reduced CSV text, notes about files kept whole or skipped)."""
  scored = set(version.base_workloads) | set(version.held_out_workloads)
  files: Dict[str, str] = {}
  notes: List[str] = []
  for ruleset in RULESET_FOLDERS:
    folder = logs / ruleset
    if not folder.is_dir():
      raise FileNotFoundError(
          f'{folder} is missing: --logs must hold {" and ".join(RULESET_FOLDERS)}.')
    pattern = f'*/study_*/*/trial_*/{loading.EVAL_CSV}'
    for path in sorted(folder.glob(pattern)):
      m = _WORKLOAD_RE.match(path.parents[1].name)
      if m is None or m.group(1) not in scored:
        continue  # scoring never reads these (e.g. non-sampled variants)
      rel = path.relative_to(logs).as_posix()
      try:
        text = path.read_text(encoding='utf-8')
      except (OSError, UnicodeDecodeError) as e:
        notes.append(f'{path}: left out ({type(e).__name__}: {e}).')
        continue
      metric = 'validation/' + version.workload(m.group(1)).target_metric_name
      reduced = extract.reduce_csv(text, metric)
      if reduced is None:
        notes.append(f'{path}: not plainly well-formed; kept whole.')
        reduced = text
      files[rel] = reduced
  return files, notes


def build(logs: Path, benchmark: str = 'v0.5') -> Tuple[Dict[str, str], dict, List[str]]:
  """The extract's files and metadata from the full logs under ``logs``."""
  version = benchmarks.load(benchmark)
  files, notes = collect(logs, version)
  meta = {
      'benchmark': version.name,
      'description': (
          f'Scoring columns of the AlgoPerf {version.name} competition logs: '
          'global_step, score and validation/<target metric> of every trial '
          'of the base and held-out workloads.'),
      'source': _source(logs),
      'num_files': len(files),
  }
  return files, meta, notes


def main(argv: List[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--logs', type=Path, required=True,
                      help='full log tree (external_tuning/ and self_tuning/)')
  parser.add_argument('--output', type=Path, default=DEFAULT_OUTPUT,
                      help=f'extract to write or check (default {DEFAULT_OUTPUT})')
  parser.add_argument('--benchmark', default='v0.5')
  parser.add_argument('--check', action='store_true',
                      help='write nothing; exit 1 if --output differs from a rebuild')
  args = parser.parse_args(argv)
  if not args.logs.is_dir():
    print(f'error: no log folder at {args.logs}; pass --logs PATH (the full '
          'logs are in mlcommons/submissions_algorithms, '
          'previous_leaderboards/algoperf_v05/logs).', file=sys.stderr)
    return 2
  try:
    files, meta, notes = build(args.logs, args.benchmark)
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for note in notes:
    print(f'note: {note}', file=sys.stderr)
  if args.check:
    try:
      shipped = extract.read_payload(args.output)
    except extract.ExtractError as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    if shipped != extract.payload(files, meta):
      print(f'{args.output} is stale: rebuilding from {args.logs} gives other '
            'contents. Run scripts/build_competition_extract.py.', file=sys.stderr)
      return 1
    print(f'{args.output} is up to date ({len(files)} trial logs).')
    return 0
  args.output.parent.mkdir(parents=True, exist_ok=True)
  size = extract.write(args.output, files, meta)
  print(f'Wrote {args.output}: {len(files)} trial logs, {size:,} bytes.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
