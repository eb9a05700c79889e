"""After their first call, training steps and evals never compile again.

Compiles are counted with JAX's monitoring event for each backend compile,
which names the compiled function: a recompile on the clock would inflate a
submission's time, one per eval split would slow every eval.
"""

import collections

import jax
import jax.numpy as jnp
import pytest

import workloads
from algoperf import runner
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space

_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


class _CompileCounter(runner.Listener):
  """Counts compiles (in total and per function name); snapshots at steps and evals."""

  def __init__(self):
    self.compiles = 0
    self.by_name = collections.Counter()
    self.at_step = {}
    self.at_eval = {}

  def _on_event(self, event, duration, **kwargs):
    if event == _COMPILE_EVENT:
      self.compiles += 1
      self.by_name[kwargs.get('fun_name', '?')] += 1

  def of(self, name):
    """Compiles of functions called ``name`` (JAX reports e.g. ``jit(name)``)."""
    return sum(n for fun, n in self.by_name.items()
               if fun == name or fun.endswith(f'({name})'))

  def on_step(self, global_step, train_state):
    self.at_step[global_step] = self.compiles

  def on_eval(self, global_step, result, train_state):
    self.at_eval[global_step] = self.compiles


@pytest.fixture
def counter():
  counting = _CompileCounter()
  jax.monitoring.register_event_duration_secs_listener(counting._on_event)  # pylint: disable=protected-access
  yield counting
  jax.monitoring.unregister_event_duration_listener(counting._on_event)  # pylint: disable=protected-access


def _submission(name):
  root = __import__('submissions').__path__[0]
  sub = load_submission(f'{root}/{name}')
  space = load_search_space(f'{root}/{name}/tuning_search_space.json')
  return sub, generate_points(space, 1)[0]


def test_the_counter_sees_a_recompile(counter):
  fn = jax.jit(lambda x: x * 2)
  fn(jnp.ones(2))
  fn(jnp.ones(2))
  assert counter.of('<lambda>') == 1
  fn(jnp.ones(3))  # A new shape compiles again.
  assert counter.of('<lambda>') == 2


@pytest.mark.parametrize('submission', ['nadamw', 'template'])
def test_steps_after_the_first_do_not_compile(submission, counter):
  sub, hyperparameters = _submission(submission)
  workload = workloads.get_workload('mnist1d', synthetic=True)
  config = runner.TrialConfig(
      global_batch_size=128, hyperparameters=hyperparameters,
      rng_seed=0, budget_sec=1e9, max_global_steps=8)
  runner.train_once(workload, sub, config, listener=counter)
  # Step 1 compiles the train step and the first eval the eval step; from
  # then on (steps 2..7 and the final eval) nothing compiles.
  assert counter.at_step[1] > 0
  assert counter.at_eval[1] >= counter.at_step[1]
  assert counter.at_step[7] == counter.at_eval[1]
  assert counter.at_eval[8] == counter.at_eval[1]


def test_eval_compiles_once_for_every_split(counter):
  """eval_train, validation and test share one compiled eval step.

  With an eval batch of 384, each 1000-example split ends in a partial batch
  (232 examples): it must be padded to the same shape, not compiled anew.
  """
  workload = workloads.get_workload('mnist1d', synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(1)
  # New parameter values for the second eval (same shapes and placement).
  other_params = jax.tree.map(lambda x: x * 0.5, params)
  counter.by_name.clear()

  def evaluate(p):
    return workload.eval_model(384, p, model_state, rng, None, None, 0)

  first = evaluate(params)
  assert {'train/accuracy', 'validation/accuracy', 'test/accuracy'} <= set(first)
  assert counter.of('_eval_step') == 1, dict(counter.by_name)
  before = counter.compiles
  evaluate(other_params)
  assert counter.compiles == before, dict(counter.by_name)
