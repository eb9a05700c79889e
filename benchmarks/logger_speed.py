"""How fast MetricsLogger writes a long run's measurements.csv.

Logs ``--rows`` training rows of a few scalars (loss, learning rate, gradient
norm, plus global_step and preemption_count) and, every ``--flush_every``
rows, one eval row (``is_eval=True``, which flushes both CSV files), as a long
run with frequent evals does. Prints rows/s, the total seconds, and the mean
flush time of the first and last ten flushes (equal if a flush costs the new
rows only; growing if it rewrites the whole file).

``--recorder PATH`` times the ``MetricsLogger`` of another copy of
``algoperf/recorder.py`` (it imports only the standard library), e.g. the last
commit's::

  git show HEAD:algoperf/recorder.py > /tmp/recorder_old.py
  python benchmarks/logger_speed.py --recorder /tmp/recorder_old.py

Usage:
  python benchmarks/logger_speed.py [--rows 100000] [--flush_every 100]
      [--dir FOLDER] [--recorder PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _logger_class(recorder_path):
  if recorder_path is None:
    sys.path.insert(0, str(_REPO))
    from algoperf import recorder  # pylint: disable=import-outside-toplevel
    return recorder.MetricsLogger, recorder.__file__
  spec = importlib.util.spec_from_file_location('_timed_recorder', recorder_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.MetricsLogger, recorder_path


def run(logger_class, folder: Path, rows: int, flush_every: int):
  """Returns (total seconds, per-flush seconds, bytes of measurements.csv)."""
  logger = logger_class(folder)
  flushes = []
  start = time.perf_counter()
  for step in range(1, rows + 1):
    logger.append_scalar_metrics(
        {'loss': 1.0 / step, 'learning_rate': 0.1 * 0.999 ** (step % 1000),
         'grad_norm': 1.0 + 1.0 / step}, step)
    if step % flush_every == 0:
      begin = time.perf_counter()
      logger.append_scalar_metrics(
          {'validation/loss': 1.0 / step, 'score': step * 0.01}, step,
          is_eval=True)
      flushes.append(time.perf_counter() - begin)
  logger.finish()
  total = time.perf_counter() - start
  return total, flushes, (folder / 'measurements.csv').stat().st_size


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rows', type=int, default=100_000)
  parser.add_argument('--flush_every', type=int, default=100)
  parser.add_argument('--dir', default=None,
                      help='folder to write in (default: a temporary one)')
  parser.add_argument('--recorder', default=None,
                      help='path of another recorder.py whose MetricsLogger to time')
  args = parser.parse_args()
  logger_class, source = _logger_class(args.recorder)
  with tempfile.TemporaryDirectory(dir=args.dir) as folder:
    total, flushes, size = run(logger_class, Path(folder), args.rows,
                               args.flush_every)
  rows = args.rows + len(flushes)
  print(f'MetricsLogger of {source}')
  print(f'{args.rows} rows + {len(flushes)} eval rows (one flush every '
        f'{args.flush_every} rows), measurements.csv {size / 1e6:.1f} MB')
  print(f'total {total:.2f} s, {rows / total:,.0f} rows/s')
  if flushes:
    first = statistics.mean(flushes[:10]) * 1e3
    last = statistics.mean(flushes[-10:]) * 1e3
    print(f'flush: first ten {first:.2f} ms each, last ten {last:.2f} ms each')


if __name__ == '__main__':
  main()
