"""`algoperf check --memory`: the arithmetic by hand, then a real compile on mnist1d."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workloads
from algoperf import check, cli, memory
from algoperf.submission import load_submission

ROOT = Path(__file__).resolve().parents[1]
NADAMW = ROOT / 'submissions' / 'nadamw'
PMAP_SGD = ROOT / 'tests' / 'fixtures' / 'pmap_sgd'
KIB, MIB, GIB = 2**10, 2**20, 2**30


def _step(**overrides) -> memory.StepMemory:
  """A hand-made step: 1 MB of state, 1 kB and 100 kB of temporaries per example."""
  values = dict(
      workload='toy', global_batch_size=256, num_devices=1, platform='cpu',
      num_params=250_000, param_bytes=1_000_000, model_state_bytes=0,
      optimizer_state_bytes=0, batch_bytes=256_000,
      argument_bytes=1_256_000, output_bytes=1_000_000, alias_bytes=1_000_000,
      temp_bytes=25_600_000, generated_code_bytes=0,
      limit=memory.DeviceLimit(64_000_000, 'test'), donated=('params',))
  values.update(overrides)
  return memory.StepMemory(**values)


# --- arithmetic and report ----------------------------------------------------------


def test_total_counts_aliased_buffers_once():
  assert memory.total_step_bytes(1000, 600, 400, 5000, 100) == 6300
  assert memory.total_step_bytes(1000, 600, 0, 5000) == 6600
  assert _step().total_bytes == 1_256_000 + 1_000_000 - 1_000_000 + 25_600_000


@pytest.mark.parametrize('n, text', [
    (0, '0 B'), (512, '512 B'), (1536, '1.5 KiB'), (int(97.5 * MIB), '97.5 MiB'),
    (3 * GIB, '3.0 GiB'), (2 * 2**40, '2.0 TiB'), (None, 'unknown')])
def test_format_bytes(n, text):
  assert memory.format_bytes(n) == text


@pytest.mark.parametrize('text, n', [
    ('1000', 1000), ('512MiB', 512 * MIB), ('1.5 GiB', int(1.5 * GIB)),
    ('2G', 2 * GIB), ('2GB', 2 * 10**9), ('64kib', 64 * KIB), ('1e6', 10**6)])
def test_parse_bytes(text, n):
  assert memory.parse_bytes(text) == n


@pytest.mark.parametrize('text', ['lots', '0', '-1', '5 parsecs', ''])
def test_parse_bytes_refuses_nonsense(text):
  with pytest.raises(ValueError):
    memory.parse_bytes(text)


class _Device:

  def __init__(self, stats, platform='gpu'):
    self.stats, self.platform = stats, platform

  def memory_stats(self):
    return self.stats


def test_device_limit_gpu_cpu_and_override():
  gpus = [_Device({'bytes_limit': 80 * GIB}), _Device({'bytes_limit': 79 * GIB})]
  limit = memory.device_limit(gpus)
  assert limit.bytes == 79 * GIB and 'smallest bytes_limit of 2 GPU' in limit.source
  # CPU devices report nothing: they share the host's RAM.
  cpus = [_Device(None, 'cpu') for _ in range(4)]
  limit = memory.device_limit(cpus, host_bytes=32 * GIB)
  assert limit.bytes == 8 * GIB and 'shared by 4 CPU devices' in limit.source
  limit = memory.device_limit(cpus[:1], host_bytes=32 * GIB)
  assert limit.bytes == 32 * GIB and '1 CPU device' in limit.source
  limit = memory.device_limit(gpus, override=123)
  assert limit == memory.DeviceLimit(123, '--memory_limit_bytes')


def test_host_memory_reads_meminfo(tmp_path):
  meminfo = tmp_path / 'meminfo'
  meminfo.write_text('MemTotal:       1024 kB\nMemFree:  12 kB\n')
  assert memory.host_memory_bytes(meminfo) == 1024 * KIB
  # Without the file: os.sysconf.
  assert memory.host_memory_bytes(tmp_path / 'missing') > 0


def test_tree_size_counts_array_leaves_only():
  tree = {'w': jax.ShapeDtypeStruct((3, 4), jnp.float32),
          'b': np.zeros(5, np.float16), 'update': len}
  assert memory.tree_size(tree) == (17, 3 * 4 * 4 + 5 * 2)


def test_abstract_batch_takes_the_global_batch_size():
  example = {'inputs': np.zeros((2, 10, 1), np.float32),
             'targets': np.zeros((2,), np.int32), 'step': np.zeros((), np.int32)}
  sharded = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  batch = memory.abstract_batch(example, 512, sharded, sharded)
  assert batch['inputs'].shape == (512, 10, 1)
  assert batch['targets'].shape == (512,) and batch['targets'].dtype == np.int32
  assert batch['step'].shape == ()


def test_verdict_and_suggestion_by_hand():
  ok, line = memory.verdict(_step())
  assert ok and line == 'OK (fits: ~25.6 MiB of 61.0 MiB per device, 42%)'  # 26.856 / 64
  # Varying part: 25.6 MB temporaries + 0.256 MB batch for 256 examples;
  # fixed: 1 MB. 14 MB leaves 13 MB: 256 * 13 / 25.856 = 128.7 -> 128.
  small = _step(limit=memory.DeviceLimit(14_000_000, '--memory_limit_bytes'))
  assert memory.suggest_batch_size(small) == 128
  ok, line = memory.verdict(small)
  assert not ok and '\n' not in line
  assert line.startswith('FAIL: memory: one training step at global batch size '
                         '256 needs ~25.6 MiB per device')
  assert 'but the limit is 13.4 MiB (--memory_limit_bytes)' in line
  assert 'smaller --global_batch_size (roughly 128 might fit)' in line
  # Below the state itself: no batch size helps.
  tiny = _step(limit=memory.DeviceLimit(500_000, 'test'))
  assert memory.suggest_batch_size(tiny) is None
  assert 'use a device with more memory' in memory.verdict(tiny)[1]
  unknown = _step(limit=memory.DeviceLimit(None, 'unknown'))
  assert unknown.fits and 'not checked' in memory.verdict(unknown)[1]


def test_render_table_says_how_the_total_is_computed():
  text = '\n'.join(memory.render_table(_step(num_devices=2, batch_bytes=512_000)))
  assert 'one training step at global batch size 256 on 2 CPU devices' in text
  assert '250,000 parameters' in text
  assert 'total estimate' in text and memory.TOTAL_FORMULA in text
  assert 'per device' in text and 'replicated' in text
  assert 'donated params' in text


# --- a real compile -----------------------------------------------------------------


@pytest.fixture(scope='module')
def nadamw_mnist1d():
  submission = load_submission(NADAMW)
  try:
    yield memory.estimate_step_memory(submission, 'mnist1d')
  finally:
    submission.close()


def test_nadamw_mnist1d_estimate(nadamw_mnist1d):
  m = nadamw_mnist1d
  workload = workloads.get_workload('mnist1d', synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  real = jax.tree.leaves(params)
  assert m.num_params == sum(x.size for x in real) > 0
  assert m.param_bytes == sum(x.nbytes for x in real)
  assert m.model_state_bytes == sum(x.nbytes for x in jax.tree.leaves(model_state))
  assert m.global_batch_size == 128  # The baseline's own size.
  # NadamW keeps two moments per parameter (and a step count).
  assert 2 * m.param_bytes <= m.optimizer_state_bytes <= 2 * m.param_bytes + 64
  assert m.batch_bytes == 128 * (40 * 4 + 4 + 4)  # inputs, targets, weights
  assert m.argument_bytes >= m.param_bytes + m.optimizer_state_bytes + m.batch_bytes
  # The baseline's step donates params and optimizer state: XLA reuses them.
  assert 'params' in m.donated and m.alias_bytes >= m.param_bytes
  assert m.temp_bytes > 0 and m.fits
  assert m.limit.bytes and m.limit.bytes > m.total_bytes


def test_check_memory_passes_and_prints_the_table():
  report = check.check_submission(NADAMW, workloads=['mnist1d'], memory=True)
  assert report.ok, report.text
  text = report.text
  assert 'Memory check (instead of the dry run)' in text
  assert 'Dry run:' not in text
  for row in ('parameters', 'model state', 'optimizer state', 'arguments',
              'outputs', 'aliased', 'temporaries', 'generated code',
              'total estimate', 'limit per device'):
    assert f'    {row}' in text or f'      {row}' in text, row
  assert '52,874 parameters' in text
  assert report.dry_run[0].message.startswith('OK (fits: ~')
  assert text.rstrip().endswith('All checks passed.')


def test_cli_memory_too_small_limit_fails_with_one_line():
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  done = subprocess.run(
      [sys.executable, '-m', 'algoperf.cli', 'check', str(NADAMW), '--workload',
       'mnist1d', '--memory', '--memory_limit_bytes', '1MiB'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stdout + done.stderr
  (line,) = [l for l in done.stdout.splitlines() if 'FAIL: memory:' in l]
  assert line.startswith('  mnist1d: FAIL: memory: one training step at global '
                         'batch size 128 needs ~')
  assert 'but the limit is 1.0 MiB (--memory_limit_bytes)' in line
  assert '--global_batch_size' in line and 'device with more memory' in line
  assert 'total estimate' in done.stdout


def test_cli_memory_flags(capsys):
  assert cli.main(['check', 'nadamw', '--memory_limit_bytes', '1GiB']) == 2
  assert 'add --memory' in capsys.readouterr().err
  assert cli.main(['check', 'nadamw', '--memory', '--memory_limit_bytes',
                   'lots']) == 2
  assert 'expected a size in bytes' in capsys.readouterr().err


def test_pmap_submissions_are_refused_clearly():
  report = check.check_submission(PMAP_SGD, memory=True)
  assert not report.ok
  (result,) = report.dry_run
  assert result.hook == 'api'
  assert 'supports jit-style submissions only' in result.message
