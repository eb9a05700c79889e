#!/usr/bin/env python3
"""Runs externally written AlgoPerf JAX submissions, unchanged, on a small workload.

    python scripts/run_external_submissions.py \
        --algoperf_repo ~/src/algorithmic-efficiency \
        --submissions_repo ~/src/submissions_algorithms \
        --scratch /tmp/external_runs

From local clones (work trees or bare repositories) of the reference
(``mlcommons/algorithmic-efficiency``: its ``algorithms/`` folder) and the
leaderboard (``mlcommons/submissions_algorithms``: ``previous_leaderboards/``
and ``submissions/``), it copies every JAX submission, with the package tree
around it, into ``--scratch`` (never into this repository) and runs each with
``algoperf run`` for ``--steps`` steps on ``--workload`` (default mnist1d,
batch size 128 where the submission does not know the workload). It prints
a table: the submission, whether it trained, and a one-line cause.

A JAX submission is a module that defines or imports all four hooks
(``get_batch_size``, ``init_optimizer_state``, ``update_params``,
``data_selection``) and imports neither ``torch`` nor anything under a
``pytorch`` folder. Its search space is the nearest
``tuning_search_space.json`` in its folder or above; where there is none
(the reference's target-setting algorithms keep one per workload), the
repository's search space that covers the most hyperparameters the
submission's folder reads. Self-tuning submissions (a ``self_tuning`` folder
on their path) run under ``--tuning_ruleset self``.

Budgets are scaled (``--speed_factor``, default 20) so that a slow first
compile does not stop a run before its steps: the question here is whether
a submission runs, not how fast.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from algoperf.check import hyperparameter_reads  # noqa: E402  pylint: disable=wrong-import-position

HOOKS = ('get_batch_size', 'init_optimizer_state', 'update_params',
         'data_selection')
# The folders of each repository that hold submissions.
FOLDERS = {
    'algorithmic-efficiency': ('algorithms',),
    'submissions_algorithms': ('previous_leaderboards', 'submissions'),
}
_SKIP_PARTS = {'logs', 'pytorch', '.git', 'tests', 'gpu_tests', 'examples',
               '__pycache__'}


def _copy_tree(source: Path, folders: Sequence[str], into: Path) -> None:
  """Copies ``folders`` of the clone ``source`` (work tree or bare) to ``into``."""
  into.mkdir(parents=True, exist_ok=True)
  if (source / 'HEAD').is_file() and (source / 'objects').is_dir():
    # A bare repository: its HEAD's sources and search spaces, file by file
    # (logs and large files may be absent from a partial clone).
    listing = subprocess.run(
        ['git', '--git-dir', str(source), 'ls-tree', '-r', 'HEAD', '--',
         *folders], check=True, capture_output=True, text=True).stdout
    for line in listing.splitlines():
      meta, name = line.split('\t', 1)
      _, kind, blob = meta.split()
      if (kind != 'blob' or not name.endswith(('.py', '.json'))
          or '/logs/' in f'/{name}'):
        continue
      data = subprocess.run(['git', '--git-dir', str(source), 'cat-file',
                             'blob', blob], capture_output=True).stdout
      (into / name).parent.mkdir(parents=True, exist_ok=True)
      (into / name).write_bytes(data)
    return
  for folder in folders:
    if (source / folder).is_dir():
      shutil.copytree(source / folder, into / folder, dirs_exist_ok=True,
                      ignore=shutil.ignore_patterns('logs', '.git', '*.log'))


def _top_level_names(tree: ast.Module) -> set:
  names = set()
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      names.add(node.name)
    elif isinstance(node, ast.ImportFrom):
      names.update(a.asname or a.name for a in node.names)
    elif isinstance(node, ast.Assign):
      names.update(t.id for t in node.targets if isinstance(t, ast.Name))
  return names


def _imports(tree: ast.Module) -> List[str]:
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.extend(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.append(node.module)
  return out


def is_jax_submission(path: Path) -> bool:
  """Defines or imports the four hooks, and imports no PyTorch."""
  if _SKIP_PARTS & set(path.parts):
    return False
  try:
    tree = ast.parse(path.read_text(errors='replace'))
  except SyntaxError:
    return path.name == 'submission.py'  # Run it: the error is the cause.
  if not set(HOOKS) <= _top_level_names(tree):
    return False
  return not any(m.split('.')[0] == 'torch' or 'pytorch' in m
                 for m in _imports(tree))


def find_submissions(root: Path) -> List[Path]:
  """The JAX submission files under ``root``, sorted."""
  return sorted(p for p in root.rglob('*.py') if is_jax_submission(p))


def _reads_of(path: Path) -> set:
  try:
    return {r.name for r in hyperparameter_reads(path.read_text(), str(path))}
  except SyntaxError:
    return set()


def _reads(folder: Path) -> set:
  return set().union(*(_reads_of(p) for p in folder.glob('*.py')))


def search_space_for(submission: Path, repo_root: Path) -> Optional[Path]:
  """The nearest search space above the file, else the best-covering one in its repo."""
  folder = submission.parent
  while True:
    candidate = folder / 'tuning_search_space.json'
    if candidate.is_file():
      return candidate
    if folder == repo_root or folder.parent == folder:
      break
    folder = folder.parent
  # The file's own reads (else its folder's); the space that covers most of
  # them, with the fewest names it does not read.
  wanted = _reads_of(submission) or _reads(submission.parent)
  best: Tuple[Tuple[int, int], str, Optional[Path]] = ((-1, 0), '', None)
  for candidate in sorted(repo_root.rglob('tuning_search_space.json')):
    try:
      space = json.loads(candidate.read_text())
    except (ValueError, OSError):
      continue
    # A dict of ranges, or a list of fixed points (dicts).
    names = (set(space) if isinstance(space, dict) else
             {k for point in space if isinstance(point, dict) for k in point})
    score = (len(wanted & names), -len(names - wanted))
    if score > best[0]:
      best = (score, str(candidate), candidate)
  return best[2]


def _cause(stderr: str, stdout: str) -> str:
  """The line that says why a run did not train."""
  lines = [l.strip() for l in (stderr + '\n' + stdout).splitlines() if l.strip()]
  for marker in ('failed at step', 'error:', 'raised', 'Error'):
    for line in lines:
      if marker in line and not line.startswith(('File ', 'Traceback')):
        return line
  return lines[-1] if lines else '(no output)'


def run_one(submission: Path, repo_root: Path, scratch: Path, label: str,
            args: argparse.Namespace) -> Dict[str, object]:
  """Runs one submission; returns its row of the table."""
  self_tuning = 'self_tuning' in submission.parts
  command = [sys.executable, '-m', 'algoperf.cli', 'run',
             f'--submission_path={submission}', f'--workload={args.workload}',
             f'--max_global_steps={args.steps}',
             f'--global_batch_size={args.global_batch_size}',
             f'--experiment_dir={scratch / "experiments"}',
             f'--experiment_name={label}', '--overwrite', '--rng_seed=0',
             '--noprogress', f'--speed_factor={args.speed_factor}',
             '--num_tuning_trials=1']
  space = None
  if self_tuning:
    command.append('--tuning_ruleset=self')
  else:
    space = search_space_for(submission, repo_root)
    if space is not None:
      command.append(f'--tuning_search_space={space}')
  started = time.perf_counter()
  try:
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=args.timeout, cwd=repo_root,
                          env={**os.environ, 'PYTHONPATH': str(REPO)})
    code, out, err = done.returncode, done.stdout, done.stderr
  except subprocess.TimeoutExpired as e:
    code, out, err = -1, str(e.stdout or ''), f'timed out after {args.timeout} s'
  elapsed = time.perf_counter() - started
  log = scratch / 'logs' / f'{label}.txt'
  log.parent.mkdir(parents=True, exist_ok=True)
  log.write_text(f'$ {" ".join(command)}\n\n{out}\n{err}')
  summary = {}
  for path in (scratch / 'experiments' / label).rglob('trial_summary.json'):
    summary = json.loads(path.read_text())
  steps = int(summary.get('global_step', 0) or 0)
  stop = summary.get('stop_reason', '')
  trained = code == 0 and steps >= args.steps
  if trained:
    cause = f'{steps} steps ({stop})'
  elif code == 0 and stop == 'diverged':
    cause = f'ran {steps} steps, then diverged: {summary.get("message", "")}'
  elif code == 0:
    cause = f'stopped at step {steps}: {stop} {summary.get("message", "")}'.strip()
  else:
    cause = _cause(err, out).split(' Logs: ')[0]
  return {'submission': label, 'trained': trained, 'steps': steps,
          'exit_code': code, 'cause': cause[:300],
          'search_space': str(space.relative_to(repo_root)) if space else None,
          'seconds': round(elapsed, 1)}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--algoperf_repo', type=Path, required=True,
                      help='clone of mlcommons/algorithmic-efficiency')
  parser.add_argument('--submissions_repo', type=Path, required=True,
                      help='clone of mlcommons/submissions_algorithms')
  parser.add_argument('--scratch', type=Path, required=True,
                      help='scratch folder for the copies and the logs '
                      '(outside this repository)')
  parser.add_argument('--workload', default='mnist1d')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--global_batch_size', type=int, default=128)
  parser.add_argument('--speed_factor', type=float, default=20.0)
  parser.add_argument('--timeout', type=float, default=900.0,
                      help='seconds per submission')
  parser.add_argument('--only', action='append', default=[],
                      help='run only submissions whose label contains this')
  args = parser.parse_args(argv)
  scratch = args.scratch.expanduser().resolve()
  if scratch == REPO or REPO in scratch.parents:
    parser.error(f'--scratch {scratch} is inside this repository; choose a '
                 'folder outside it (e.g. /tmp/external_runs).')
  rows = []
  for name, source in (('algorithmic-efficiency', args.algoperf_repo),
                       ('submissions_algorithms', args.submissions_repo)):
    source = source.expanduser().resolve()
    if not source.is_dir():
      parser.error(f'{source} is not a folder (a clone of {name}).')
    root = scratch / name
    if root.exists():
      shutil.rmtree(root)
    _copy_tree(source, FOLDERS[name], root)
    found = find_submissions(root)
    print(f'{name}: {len(found)} JAX submission(s)', flush=True)
    for path in found:
      label = f'{name}/{path.relative_to(root).with_suffix("")}'
      if args.only and not any(o in label for o in args.only):
        continue
      row = run_one(path, root, scratch, label.replace('/', '__'), args)
      row['submission'] = label
      rows.append(row)
      print(f'  {"trained" if row["trained"] else "FAILED "}  {label}: '
            f'{row["cause"]} ({row["seconds"]} s)', flush=True)
  (scratch / 'results.json').write_text(json.dumps(rows, indent=1))
  print()
  print('| submission | trained | cause |')
  print('|---|---|---|')
  for row in rows:
    cause = str(row['cause']).replace('|', '\\|')
    print(f'| {row["submission"]} | {"yes" if row["trained"] else "no"} | {cause} |')
  print(f'\n{sum(r["trained"] for r in rows)}/{len(rows)} trained; '
        f'rows in {scratch / "results.json"}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
