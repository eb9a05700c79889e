"""`algoperf sweep`: plan, seeds, status from logs, restarts, executors."""

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from algoperf import sweep, tuning
from algoperf.errors import ConfigError
import workloads
from algoperf.submission import SubmissionError

REPO = Path(__file__).resolve().parent.parent
NADAMW = REPO / 'submissions' / 'nadamw' / 'submission.py'
# The smallest real runs: synthetic data of the real shapes, a step or two.
TINY_RUN = ('--max_global_steps=2', '--synthetic_data', '--speed_factor=1')


def _options(tmp_path, **kw):
  base = dict(submission_path=str(NADAMW), workloads=['mnist1d', 'fashion_mnist'],
              experiment_dir=str(tmp_path), num_studies=2, num_tuning_trials=3,
              benchmark='small', progress=False)
  base.update(kw)
  return sweep.SweepOptions(**base)


def _dict_space(tmp_path):
  path = tmp_path / 'space.json'
  path.write_text(json.dumps({
      'learning_rate': {'min': 1e-4, 'max': 1e-2, 'scaling': 'log'},
      'beta2': {'feasible_points': [0.99, 0.999]}}))
  return str(path)


def _flag(argv, name):
  values = [a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}=')]
  assert len(values) == 1, (name, argv)
  return values[0]


# --- plan and seeds ------------------------------------------------------------


def test_plan_expands_studies_workloads_trials_into_one_command_each(tmp_path):
  options = _options(tmp_path, run_args=['--max_global_steps=5'])
  runs = sweep.make_plan(sweep.settings(options), options.experiment_dir)
  assert [(r.study, r.workload, r.trial) for r in runs] == [
      (s, w, t) for s in range(2) for w in ('mnist1d', 'fashion_mnist')
      for t in (1, 2, 3)]
  run = runs[4]  # study 0, fashion_mnist, trial 2
  assert run.trial_dir == tmp_path / 'nadamw' / 'study_0' / 'fashion_mnist_jax' / 'trial_2'
  argv = run.argv
  assert argv[1:4] == ['-m', 'algoperf.cli', 'run']
  assert _flag(argv, 'experiment_name') == 'nadamw/study_0'
  assert (_flag(argv, 'hparam_start_index'), _flag(argv, 'hparam_end_index')) == ('1', '2')
  assert _flag(argv, 'num_tuning_trials') == '3'
  assert _flag(argv, 'rng_seed') == str(run.rng_seed)
  assert _flag(argv, 'resume_last_run') == 'true'
  assert argv[-1] == '--max_global_steps=5'
  # Every run has its own seed, in the range every runner accepts.
  seeds = [r.rng_seed for r in runs]
  assert len(set(seeds)) == len(seeds)
  assert all(0 <= s < 2**31 for s in seeds)


def test_same_command_same_plan_and_seed_changes_only_rng_seeds(tmp_path):
  space = _dict_space(tmp_path)
  first = sweep.make_plan(sweep.settings(_options(tmp_path, tuning_search_space=space)),
                          str(tmp_path))
  again = sweep.make_plan(sweep.settings(_options(tmp_path, tuning_search_space=space)),
                          str(tmp_path))
  reseeded = sweep.make_plan(
      sweep.settings(_options(tmp_path, tuning_search_space=space, seed=1)), str(tmp_path))
  assert first == again
  assert [r.hyperparameters for r in reseeded] == [r.hyperparameters for r in first]
  assert not {r.rng_seed for r in reseeded} & {r.rng_seed for r in first}


def test_studies_draw_different_points_study_0_as_a_plain_run(tmp_path):
  space_path = _dict_space(tmp_path)
  runs = sweep.make_plan(sweep.settings(_options(
      tmp_path, tuning_search_space=space_path, workloads=['mnist1d'], tuning_seed=7)),
      str(tmp_path))
  by_study = {s: [r.hyperparameters for r in runs if r.study == s] for s in (0, 1)}
  assert not [p for p in by_study[0] if p in by_study[1]]
  # Study 0 holds the points `algoperf run --tuning_seed 7` would train.
  plain = tuning.generate_points(tuning.load_search_space(space_path), 3, seed=7)
  assert by_study[0] == [tuning.hparams_to_dict(p) for p in plain]
  assert [_flag(r.argv, 'tuning_seed') for r in runs] == ['7'] * 3 + ['8'] * 3


def test_seeds_do_not_depend_on_the_process():
  # Python's str hash is salted per process; the sweep's seeds must not be.
  code = ('from algoperf import sweep; '
          'print(sweep.run_seed(0, "mnist1d", 1, 2), sweep.run_seed(3, "wmt", 0, 1))')
  outputs = set()
  for salt in ('1', '2'):
    env = dict(os.environ, PYTHONHASHSEED=salt, PYTHONPATH=str(REPO))
    outputs.add(subprocess.run([sys.executable, '-c', code], env=env, check=True,
                               capture_output=True, text=True).stdout)
  assert outputs == {f'{sweep.run_seed(0, "mnist1d", 1, 2)} {sweep.run_seed(3, "wmt", 0, 1)}\n'}


def test_counts_default_to_the_benchmark_and_self_tuning_runs_one_trial(tmp_path):
  config = sweep.settings(_options(tmp_path, num_studies=None, num_tuning_trials=None))
  assert (config['num_studies'], config['num_tuning_trials']) == (3, 5)  # small.json
  self_tuning = REPO / 'submissions' / 'nadamw_self_tuning'
  config = sweep.settings(_options(tmp_path, submission_path=str(self_tuning),
                                   tuning_ruleset='self', num_tuning_trials=None))
  runs = sweep.make_plan(config, str(tmp_path))
  assert len(runs) == 2 * 2 and {r.trial for r in runs} == {1}
  assert not any(a.startswith(('--hparam', '--tuning_search_space')) for a in runs[0].argv)
  assert config['submission'] == 'nadamw_self_tuning'


@pytest.mark.parametrize('bad, message', [
    ({'run_args': ['--rng_seed=3']}, '--rng_seed after "--"'),
    ({'run_args': ['--noresume_last_run']}, '--resume_last_run after "--"'),
    ({'workloads': ['', ' ']}, '--workloads is empty'),
    ({'submission_path': '/nonexistent/sub.py'}, 'does not exist'),
    ({'tuning_ruleset': 'self', 'num_tuning_trials': 2}, 'one trial per study'),
    ({'num_studies': 0}, '--num_studies must be at least 1, got 0.'),
    ({'num_tuning_trials': -1}, '--num_tuning_trials must be at least 1, got -1.'),
    ({'workloads': ['mnist_1d']},
     '--workloads: unknown workload(s) mnist_1d (did you mean mnist1d?). No run '
     'was started. Workloads `algoperf run` can train: criteo1tb, criteo1tb_embed_init, '),
])
def test_bad_settings_are_user_errors(tmp_path, bad, message):
  with pytest.raises(ConfigError, match=re.escape(message)):
    sweep.settings(_options(tmp_path, **bad))


def test_unknown_workloads_are_refused_before_any_run_starts(tmp_path, monkeypatch):
  backend = _FakeBackend()
  # Every benchmark workload is implemented; pretend wmt is not.
  from workloads import registry  # pylint: disable=import-outside-toplevel
  monkeypatch.delitem(registry.WORKLOADS, 'wmt')
  with pytest.raises(ConfigError) as info:
    _sweep(tmp_path, monkeypatch, backend,
           workloads=['mnist1d', 'fashion_mnistt', 'wmt', 'nope'])
  assert str(info.value) == (
      '--workloads: unknown workload(s) fashion_mnistt (did you mean '
      'fashion_mnist?), nope; wmt (benchmark workload(s) with no implementation '
      'in this installation). No run was started. Workloads `algoperf run` can '
      f'train: {", ".join(workloads.list_workloads())} (see `algoperf list`).')
  assert backend.started == []
  assert list(tmp_path.iterdir()) == []  # no status file, no log folder


def test_a_submission_with_a_syntax_error_is_refused_before_any_run(tmp_path,
                                                                    monkeypatch):
  broken = tmp_path / 'broken_sub'
  broken.mkdir()
  (broken / 'submission.py').write_text('def get_batch_size(name):\n  return (\n')
  (broken / 'tuning_search_space.json').write_text(
      (NADAMW.parent / 'tuning_search_space.json').read_text())
  backend = _FakeBackend()
  with pytest.raises(SubmissionError, match=re.escape(
      f'Submission {broken / "submission.py"} has a syntax error at line 2: ')):
    _sweep(tmp_path / 'exp', monkeypatch, backend, submission_path=str(broken))
  assert backend.started == [] and not (tmp_path / 'exp').exists()


def test_cli_sweep_unknown_workload_exits_2_without_importing_jax(tmp_path):
  code = ('import sys; from algoperf import cli; '
          f'rc = cli.main(["sweep", "--experiment_dir={tmp_path}", '
          '"--workloads=mnist1d,nope"]); '
          'print(rc, sorted(m for m in ("jax", "flax", "optax") if m in sys.modules))')
  proc = subprocess.run([sys.executable, '-c', code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                        capture_output=True, text=True, check=True)
  assert proc.stdout.split() == ['2', '[]']
  assert proc.stderr.startswith('algoperf sweep: error: --workloads: unknown '
                                'workload(s) nope. No run was started.')
  assert list(tmp_path.iterdir()) == []


def test_cli_sweep_error_exits_2_without_importing_jax(tmp_path):
  code = ('import sys; from algoperf import cli; '
          f'rc = cli.main(["sweep", "--experiment_dir={tmp_path}", "--", "--rng_seed=1"]); '
          'print(rc, "jax" in sys.modules)')
  proc = subprocess.run([sys.executable, '-c', code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                        capture_output=True, text=True, check=True)
  assert proc.stdout.split() == ['2', 'False']
  assert 'algoperf sweep: error: --rng_seed after "--" is set by the sweep' in proc.stderr


# --- status from logs ------------------------------------------------------------


def test_status_from_the_trial_folder(tmp_path):
  trial = tmp_path / 'trial_1'
  assert sweep.run_status(trial) == sweep.NEW  # no folder
  trial.mkdir()
  (trial / sweep.RUN_LOG_FILE).write_text('started\n')
  assert sweep.run_status(trial) == sweep.NEW  # died before the run wrote a file
  (trial / 'meta_data_0.json').write_text('{}')
  assert sweep.run_status(trial) == sweep.RESUME
  (trial / 'trial_summary.json').write_text('{}')
  assert sweep.run_status(trial) == sweep.FINISHED


def test_table_reads_the_last_eval_row(tmp_path):
  csv_path = tmp_path / 'eval_measurements.csv'
  assert sweep.last_eval(tmp_path) is None
  csv_path.write_text('score,global_step\n')
  assert sweep.last_eval(tmp_path) is None
  rows = ''.join(f'{0.5 * i},{i}\n' for i in range(1, 3000))
  csv_path.write_text('score,global_step\n' + rows)
  assert sweep.last_eval(tmp_path) == {'score': '1499.5', 'global_step': '2999'}


# --- scheduling, with a backend that "runs" a trial by writing its files ----------


class _FakeBackend:
  """Finishes each run on its second poll; runs named in ``fail`` exit 3."""

  def __init__(self, fail=()):
    self.fail = set(fail)
    self.started = []
    self.max_in_flight = 0
    self._in_flight = set()

  def start(self, run):
    self.started.append(run.label)
    self._in_flight.add(run.label)
    self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
    run.trial_dir.mkdir(parents=True, exist_ok=True)
    (run.trial_dir / 'meta_data_0.json').write_text('{}')
    return {'run': run, 'polls': 0}

  def job_id(self, handle):
    return handle['run'].label

  def poll(self, handle):
    handle['polls'] += 1
    if handle['polls'] < 2:
      return None
    run = handle['run']
    self._in_flight.discard(run.label)
    if run.label in self.fail:
      return 3
    (run.trial_dir / 'trial_summary.json').write_text('{}')
    return 0

  def cancel(self, handles):
    del handles

  def reattach(self, job_id):
    del job_id


def _sweep(tmp_path, monkeypatch, backend, **kw):
  monkeypatch.setattr(sweep, 'make_backend', lambda options, folder: backend)
  out = io.StringIO()
  result = sweep.run_sweep(_options(tmp_path, **kw), out=out, poll_interval=0)
  return result, out.getvalue()


def test_failed_run_is_reported_with_its_log_and_rerun_on_restart(tmp_path, monkeypatch):
  bad = 'fashion_mnist study_1 trial_2'
  backend = _FakeBackend(fail={bad})
  result, text = _sweep(tmp_path, monkeypatch, backend, max_parallel=3)
  assert backend.max_in_flight == 3
  assert [r.label for r in result.failed] == [bad]
  assert (result.total, result.done) == (12, 11)
  assert f'FAILED {bad}: see {result.failed[0].log_path}' in text
  status = json.loads(result.status_file.read_text())
  assert [r['state'] for r in status['runs']].count('done') == 11
  assert [r['exit_code'] for r in status['runs'] if r['state'] == 'failed'] == [3]

  again = _FakeBackend()
  result, text = _sweep(tmp_path, monkeypatch, again)
  assert again.started == [bad] and again.max_in_flight == 1
  assert (result.skipped, result.resumed, result.new, result.failed) == (11, 1, 0, [])
  status = json.loads(result.status_file.read_text())
  assert [(i['skipped_finished'], i['done'], i['failed']) for i in status['invocations']] == [
      (0, 11, 1), (11, 1, 0)]


def test_restart_with_other_settings_is_refused_unless_overwrite(tmp_path, monkeypatch):
  _sweep(tmp_path, monkeypatch, _FakeBackend(), num_studies=1)
  with pytest.raises(ConfigError, match=r'num_studies: was 1, now 2.*--overwrite'):
    _sweep(tmp_path, monkeypatch, _FakeBackend(), num_studies=2)
  # Settings that do not change results (executor, parallelism) may change.
  result, _ = _sweep(tmp_path, monkeypatch, _FakeBackend(), num_studies=1, max_parallel=4)
  assert result.skipped == 6
  backend = _FakeBackend()
  result, _ = _sweep(tmp_path, monkeypatch, backend, num_studies=2, overwrite=True)
  assert (result.skipped, len(backend.started)) == (0, 12)


def test_slurm_executor_without_submitit_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'submitit', None)  # import fails
  with pytest.raises(ConfigError, match='pip install submitit'):
    sweep.make_backend(_options(tmp_path, executor='slurm'), tmp_path)


def test_slurm_options_are_parameters_submitit_accepts(tmp_path, monkeypatch):
  submitit = pytest.importorskip('submitit')
  real = submitit.AutoExecutor
  made = []

  def without_cluster(folder, cluster=None):
    assert cluster == 'slurm'
    # submitit checks slurm_* names against its SLURM executor on any cluster.
    made.append(real(folder=folder, cluster='local'))
    return made[-1]

  monkeypatch.setattr(submitit, 'AutoExecutor', without_cluster)
  sweep.make_backend(_options(
      tmp_path, executor='slurm', slurm_partition='gpu', gpus_per_job=8,
      cpus_per_job=16, mem_gb=64, timeout_min=90,
      slurm_setup=['source .venv/bin/activate']), tmp_path)
  params = made[0]._executor.parameters
  assert (params['gpus_per_node'], params['cpus_per_task'], params['mem_gb'],
          params['timeout_min']) == (8, 16, 64, 90)


# --- real runs --------------------------------------------------------------------


def _finished(root):
  return {p.parent for p in Path(root).glob('nadamw/study_*/*_jax/trial_*/trial_summary.json')}


def test_submitit_local_executor_runs_a_trial(tmp_path, monkeypatch):
  pytest.importorskip('submitit')
  # submitit's job process unpickles algoperf.sweep.RunCommand.
  monkeypatch.setenv('PYTHONPATH', str(REPO))
  out = io.StringIO()
  result = sweep.run_sweep(
      _options(tmp_path, workloads=['mnist1d'], num_studies=1, num_tuning_trials=1,
               executor='submitit_local', run_args=list(TINY_RUN)), out=out)
  assert (result.done, result.failed) == (1, []), out.getvalue()
  trial = tmp_path / 'nadamw' / 'study_0' / 'mnist1d_jax' / 'trial_1'
  assert _finished(tmp_path) == {trial}
  flags = json.loads((trial / 'flags_0.json').read_text())
  assert flags['rng_seed'] == sweep.run_seed(0, 'mnist1d', 0, 1)
  status = json.loads(result.status_file.read_text())
  assert status['runs'][0]['job_id']  # submitit's job id, kept for restarts
  assert list((result.status_file.parent / 'submitit').glob('*_log.out'))


def _done_line(line):
  return re.match(r'\[\s*\d+/\d+\] done ', line) is not None


@pytest.mark.slow
def test_killed_local_sweep_restarts_only_unfinished_runs_then_scores(tmp_path):
  # 2 workloads x 1 study x 2 trials: every dimension a restart must get right
  # (studies are covered by the plan tests) at half the CPU of 2 x 2 x 2.
  total = 4
  command = [sys.executable, '-m', 'algoperf.cli', 'sweep', '--submission_path=nadamw',
             '--workloads=fashion_mnist,mnist1d', '--num_studies=1',
             '--num_tuning_trials=2', f'--experiment_dir={tmp_path}', '--benchmark=small',
             '--max_parallel=2', '--noprogress', '--', *TINY_RUN]
  env = dict(os.environ, PYTHONPATH=str(REPO))
  # Its own process group, so that killing it takes its runs along, like a
  # preempted machine or a closed terminal.
  first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
  done = 0
  for line in first.stdout:
    done += _done_line(line)
    if done == total // 2:
      break
  os.killpg(first.pid, signal.SIGKILL)
  first.wait()
  first.stdout.close()

  trials = sorted(tmp_path.glob('nadamw/study_*/*_jax/trial_*'))
  finished_before = _finished(tmp_path)
  assert total // 2 <= len(finished_before) < total
  cut_off = {t for t in trials if t not in finished_before
             and sweep.run_status(t) == sweep.RESUME}
  mtimes = {t: (t / 'trial_summary.json').stat().st_mtime_ns for t in finished_before}

  second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
  assert second.returncode == 0, second.stdout + second.stderr
  unfinished = total - len(finished_before)
  assert (f'{total} runs; {len(finished_before)} already finished (skipped), '
          f'{len(cut_off)} to resume') in second.stdout
  assert sum(map(_done_line, second.stdout.splitlines())) == unfinished
  status = json.loads((tmp_path / 'nadamw' / '.sweep' / 'sweep.json').read_text())
  last = status['invocations'][-1]
  assert (last['skipped_finished'], last['done'], last['failed']) == (
      len(finished_before), unfinished, 0)
  assert len(_finished(tmp_path)) == total
  # The finished runs were not run again.
  assert mtimes == {t: (t / 'trial_summary.json').stat().st_mtime_ns
                    for t in finished_before}
  for trial in cut_off:
    assert (trial / 'meta_data_1.json').is_file()  # resumed: second attempt

  score = subprocess.run([sys.executable, '-m', 'algoperf.cli', 'score', str(tmp_path),
                          '--benchmark=small'], env=env, capture_output=True, text=True,
                         check=False)
  assert score.returncode == 0, score.stderr
  assert 'nadamw' in score.stdout
