"""Start-up: the persistent compilation cache and the first-step report."""

import json

import jax

from algoperf import cli, startup

_HIT = '/jax/compilation_cache/cache_hits'


def _run(experiment_dir, name, *flags):
  return cli.main(['run', '--workload', 'mnist1d', '--synthetic_data',
                   '--max_global_steps', '1', '--rng_seed', '0', '--noprogress',
                   '--experiment_dir', str(experiment_dir),
                   '--experiment_name', name, *flags])


def test_second_run_loads_compiled_steps_from_the_experiment_cache(tmp_path, capsys):
  assert _run(tmp_path, 'first') == 0
  cache = tmp_path / startup.CACHE_DIR_NAME
  entries = [p.name for p in cache.iterdir()]
  assert any('train_step' in e for e in entries), entries
  assert any('eval_step' in e for e in entries), entries
  # The JAX settings are restored once the run is over.
  assert not jax.config.jax_compilation_cache_dir
  out = capsys.readouterr().out
  assert 'first step done' in out
  summary = json.loads(next(tmp_path.glob(
      'first/mnist1d_jax/trial_1/trial_summary.json')).read_text())
  assert summary['first_step_sec'] > 0

  hits = []

  def on_event(event, **kwargs):
    if event == _HIT:
      hits.append(event)

  jax.clear_caches()  # As in a new process: nothing compiled in memory.
  jax.monitoring.register_event_listener(on_event)
  try:
    assert _run(tmp_path, 'second') == 0
  finally:
    jax.monitoring.unregister_event_listener(on_event)
  assert hits  # The train and eval steps came from the disk cache.


def test_nocompilation_cache_leaves_jax_alone(tmp_path):
  assert _run(tmp_path, 'off', '--nocompilation_cache') == 0
  assert not (tmp_path / startup.CACHE_DIR_NAME).exists()
  assert not jax.config.jax_compilation_cache_dir


def test_seconds_since_process_start_is_plausible():
  seconds = startup.seconds_since_process_start()
  # This process imported JAX and ran tests before getting here.
  assert 0 < seconds < 24 * 3600
