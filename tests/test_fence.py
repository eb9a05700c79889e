"""The fenced workload: submissions get the public interface and nothing else."""

import copy
import dataclasses
import inspect
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import workloads
from algoperf import cli, fence, runner, spec
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'tests' / 'fixtures'
BROKEN = FIXTURES / 'broken'


@pytest.fixture(scope='module')
def mnist1d():
  return workloads.get_workload('mnist1d', synthetic=True)


def _config(space_path, batch_size=64, steps=3):
  space = load_search_space(space_path)
  return runner.TrialConfig(
      global_batch_size=batch_size, hyperparameters=generate_points(space, 1)[0],
      rng_seed=0, budget_sec=1e9, max_global_steps=steps)


# --- the view itself --------------------------------------------------------------


def test_forwards_the_public_interface(mnist1d):
  fenced = fence.FencedWorkload(mnist1d)
  mnist1d.init_model_fn(jax.random.PRNGKey(0))
  assert isinstance(fenced, spec.Workload)
  for name in ('target_metric_name', 'validation_target_value', 'loss_type',
               'num_train_examples', 'eval_batch_size', 'train_mean',
               'train_stddev', 'max_allowed_runtime_sec', 'eval_period_time_sec',
               'step_hint', 'param_shapes', 'model_params_types',
               'metrics_logger'):
    assert getattr(fenced, name) == getattr(mnist1d, name), name
  # Bound methods are the workload's own (jit caches keyed on them still hit).
  assert fenced.model_fn == mnist1d.model_fn
  assert fenced.loss_fn == mnist1d.loss_fn
  assert fenced.is_output_params('output')
  assert fenced.has_reached_validation_target(
      {'validation/accuracy': 1.0, 'test/accuracy': 1.0})
  assert fence.unwrap(fenced) is mnist1d
  assert fence.fence(fenced) is fenced
  assert 'model_fn' in dir(fenced) and 'eval_model' not in dir(fenced)
  assert not any(n.startswith('_') for n in dir(fenced) if not n.startswith('__'))


@pytest.mark.parametrize('name, rule', [
    ('_build_input_queue', 'may not build input pipelines'),
    ('eval_model', 'may not run evaluations'),
    ('_eval_model_on_split', 'may not run evaluations'),
    ('_splits', "may not read the workload's data"),
    ('_data_dir', "may not read the workload's data"),
    ('data_dir', "may not read the workload's data"),
    ('attach_metrics_logger', 'the runner attaches the metrics logger'),
    ('_model', 'only the workload\'s public interface'),
    ('_param_shapes', 'only the workload\'s public interface'),
    ('_fenced_workload', 'only the workload\'s public interface'),
])
def test_refuses_what_the_rules_forbid(mnist1d, name, rule):
  fenced = fence.FencedWorkload(mnist1d)
  with pytest.raises(fence.FenceError, match='AlgoPerf rules') as info:
    getattr(fenced, name)
  assert rule in str(info.value) and f'`{name}`' in str(info.value)
  assert isinstance(info.value, RuntimeError)


def test_read_only_and_identity(mnist1d):
  fenced = fence.FencedWorkload(mnist1d)
  other = fence.FencedWorkload(mnist1d)
  with pytest.raises(fence.FenceError, match='read-only'):
    fenced.metrics_logger = object()
  with pytest.raises(fence.FenceError, match='read-only'):
    del fenced.step_hint
  assert fenced == fenced and fenced != other and fenced != mnist1d
  assert hash(fenced) != hash(other)
  assert {fenced: 1}[fenced] == 1
  assert copy.copy(fenced) is fenced and copy.deepcopy(fenced) is fenced
  # Python's protocols see an ordinary object.
  assert not hasattr(fenced, '__nonexistent_dunder__')
  assert 'FencedWorkload' in repr(fenced)


def test_a_static_jit_argument_compiles_once(mnist1d):
  fenced = fence.FencedWorkload(mnist1d)
  traces = []

  def step(workload, x):
    traces.append(workload)
    return x * workload.step_hint

  jitted = jax.jit(step, static_argnums=0)
  for i in range(4):
    jitted(fenced, jnp.float32(i)).block_until_ready()
  assert traces == [fenced]
  # Another view is another key: one view per trial, never one per step.
  jitted(fence.FencedWorkload(mnist1d), jnp.float32(0))
  assert len(traces) == 2


# --- through the runner and the CLI -------------------------------------------------


class _Logger:

  def __init__(self):
    self.rows = []

  def append_scalar_metrics(self, metrics, global_step, preemption_count=0,
                            is_eval=False):
    self.rows.append((dict(metrics), global_step, is_eval))

  def flush(self):
    pass

  def finish(self):
    pass


def _recording(submission, seen):
  """The submission with each hook noting the workload object it received."""

  def wrap(hook, fn):
    def wrapper(*args, **kwargs):
      seen.append((hook, kwargs['workload'] if 'workload' in kwargs else args[0]))
      return fn(*args, **kwargs)
    wrapper.__signature__ = inspect.signature(fn)
    return wrapper

  return dataclasses.replace(
      submission,
      init_optimizer_state=wrap('init_optimizer_state', submission.init_optimizer_state),
      data_selection=wrap('data_selection', submission.data_selection),
      update_params=wrap('update_params', submission.update_params),
      prepare_for_eval=(wrap('prepare_for_eval', submission.prepare_for_eval)
                        if submission.prepare_for_eval else None))


@pytest.mark.parametrize('path, batch_size', [
    (ROOT / 'submissions' / 'nadamw', 128),
    (FIXTURES / 'reference_style', 64),
])
def test_bundled_and_reference_style_submissions_run_fenced(path, batch_size):
  workload = workloads.get_workload('mnist1d', synthetic=True)
  seen = []
  submission = _recording(load_submission(path), seen)
  logger = _Logger()
  result = runner.train_once(
      workload, submission,
      _config(path / 'tuning_search_space.json', batch_size=batch_size, steps=3),
      logger=logger)
  assert result.global_step == 3
  hooks = {h for h, _ in seen}
  assert {'init_optimizer_state', 'data_selection', 'update_params'} <= hooks
  views = {id(w) for _, w in seen}
  assert len(views) == 1  # One view for the whole trial.
  assert isinstance(seen[0][1], fence.FencedWorkload)
  assert fence.unwrap(seen[0][1]) is workload
  # The submission's own logging (step 0) reached the logger through the view.
  assert any('loss' in m and not is_eval for m, _, is_eval in logger.rows)


@pytest.mark.parametrize('case, rule', [
    ('calls_input_pipeline', 'may not build input pipelines (`_build_input_queue`)'),
    ('calls_eval_model', 'may not run evaluations (`eval_model`)'),
])
def test_rule_breaking_submission_stops_in_train_once(case, rule):
  path = BROKEN / case
  workload = workloads.get_workload('mnist1d', synthetic=True)
  with pytest.raises(Exception) as info:
    runner.train_once(workload, load_submission(path),
                      _config(path / 'tuning_search_space.json'))
  # The FenceError itself, or the cause of the runner's report of the hook.
  error = info.value
  fence_error = error if isinstance(error, fence.FenceError) else error.__cause__
  assert isinstance(fence_error, fence.FenceError), repr(error)
  assert rule in str(fence_error)


@pytest.mark.parametrize('case, rule', [
    ('calls_input_pipeline', 'may not build input pipelines (`_build_input_queue`)'),
    ('calls_eval_model', 'may not run evaluations (`eval_model`)'),
])
def test_rule_breaking_submission_fails_the_cli_run(case, rule, tmp_path, capsys):
  path = BROKEN / case
  rc = cli.main(['run', '--workload=mnist1d', f'--submission_path={path}',
                 '--synthetic_data', '--max_global_steps=2', '--rng_seed=0',
                 f'--experiment_dir={tmp_path}', '--experiment_name=exp',
                 '--noprogress'])
  assert rc != 0
  err = capsys.readouterr().err
  assert 'AlgoPerf rules (docs/RULES.md, Submission hooks)' in err and rule in err
  # It says where: the submission's line.
  assert re.search(f'{case}/submission.py(:|", line )[0-9]+,? in update_params', err), err
