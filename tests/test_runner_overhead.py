"""The harness-overhead benchmark runs end to end (a few steps; no speed asserted)."""

import workloads
from algoperf import tuning
from algoperf.submission import load_submission
from benchmarks import runner_overhead as bench


def test_both_loops_run_and_the_profile_splits_the_runner_step():
  workload = workloads.get_workload('mnist1d', synthetic=True)
  submission = load_submission(bench._SUBMISSION)  # pylint: disable=protected-access
  space = tuning.load_search_space(bench._SUBMISSION / 'tuning_search_space.json')  # pylint: disable=protected-access
  args = (workload, submission, tuning.generate_points(space, 1)[0], 128, 3)
  bare = bench.run_bare(*args, seed=0)
  rate, split = bench.run_runner(*args, seed=0, profile=True)
  assert bare > 0 and rate > 0
  assert set(split) == set(bench.PHASES)
  # The clock waits for the device only at evals and every second: maybe
  # never within three steps.
  assert split['clock sync'] >= 0 and split['update'] > 0 and split['data'] > 0
  # The split accounts for the whole step (other = the remainder, >= 0 up to
  # clock resolution).
  assert abs(sum(split.values()) - 1 / rate) < 1e-6
  table = bench.format_table({
      'workload': 'mnist1d', 'synthetic_data': True, 'steps': 3, 'repeats': 1,
      'batch_size': 128, 'devices': ['cpu:0'], 'bare_steps_per_sec': [bare],
      'runner_steps_per_sec': [rate], 'bare_median': bare,
      'runner_median': rate, 'ratio': rate / bare,
      'paired_ratio_median': rate / bare,
      'profiled_runner_steps_per_sec': rate, 'runner_split_sec_per_step': split})
  assert 'ratio runner / bare' in table and 'clock sync' in table
