"""Start-up: the persistent compilation cache and the first-step report."""

import json

import jax

from algoperf import cli, startup

_HIT = '/jax/compilation_cache/cache_hits'


def _run(experiment_dir, name, *flags):
  return cli.main(['run', '--workload', 'mnist1d', '--synthetic_data',
                   '--max_global_steps', '1', '--rng_seed', '0', '--noprogress',
                   '--speed_factor', '1',
                   '--experiment_dir', str(experiment_dir),
                   '--experiment_name', name, *flags])


def test_a_cache_asked_for_makes_the_second_run_load_compiled_steps(tmp_path, capsys):
  cache = tmp_path / 'cache'
  experiments = tmp_path / 'experiments'
  assert _run(experiments, 'first', f'--compilation_cache_dir={cache}') == 0
  entries = [p.name for p in cache.iterdir()]
  assert any('train_step' in e for e in entries), entries
  assert any('eval_step' in e for e in entries), entries
  # The JAX settings are restored once the run is over.
  assert not jax.config.jax_compilation_cache_dir
  out = capsys.readouterr().out
  assert 'first step done' in out
  summary = json.loads(next(experiments.glob(
      'first/mnist1d_jax/trial_1/trial_summary.json')).read_text())
  assert summary['first_step_sec'] > 0

  hits = []

  def on_event(event, **kwargs):
    if event == _HIT:
      hits.append(event)

  jax.clear_caches()  # As in a new process: nothing compiled in memory.
  jax.monitoring.register_event_listener(on_event)
  try:
    assert _run(experiments, 'second', f'--compilation_cache_dir={cache}') == 0
  finally:
    jax.monitoring.unregister_event_listener(on_event)
  assert hits  # The train and eval steps came from the disk cache.


def test_without_a_request_nothing_is_cached(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  hits = []

  def on_event(event, **kwargs):
    if event == _HIT:
      hits.append(event)

  jax.monitoring.register_event_listener(on_event)
  try:
    assert _run(tmp_path / 'e', 'a') == 0
    jax.clear_caches()
    assert _run(tmp_path / 'e', 'b') == 0
  finally:
    jax.monitoring.unregister_event_listener(on_event)
  assert not hits
  assert not (tmp_path / 'xdg').exists()
  assert sorted(p.name for p in (tmp_path / 'e').iterdir()) == ['a', 'b']


def test_resolve_cache_dir_rules(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert startup.resolve_cache_dir(None) is None
  assert startup.resolve_cache_dir(False, str(tmp_path / 'x')) is None
  assert startup.resolve_cache_dir(None, str(tmp_path / 'x')) == tmp_path / 'x'
  assert startup.resolve_cache_dir(True) == tmp_path / 'algoperf' / 'jax_cache'
  # What JAX_COMPILATION_CACHE_DIR sets when JAX starts.
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'env'))
  try:
    assert startup.resolve_cache_dir(None) == tmp_path / 'env'
    assert startup.resolve_cache_dir(False) is None
  finally:
    jax.config.update('jax_compilation_cache_dir', None)


def test_seconds_since_process_start_is_plausible():
  seconds = startup.seconds_since_process_start()
  # This process imported JAX and ran tests before getting here.
  assert 0 < seconds < 24 * 3600
