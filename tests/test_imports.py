"""Commands that need no device never import JAX or TensorFlow (they start fast)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_HEAVY = ('jax', 'jaxlib', 'tensorflow', 'flax', 'optax', 'orbax')

# Runs the CLI in a fresh interpreter, then prints the heavy top-level
# packages that ended up imported (a fresh process: this one imported JAX).
_PROBE = '''
import json, sys
from algoperf import cli
try:
  code = cli.main(sys.argv[1:])
except SystemExit as e:
  code = e.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print('\\n' + json.dumps({'code': code, 'heavy': heavy}))
''' % (_HEAVY,)


def _run_cli(*args):
  done = subprocess.run([sys.executable, '-c', _PROBE, *args], cwd=_REPO,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  return json.loads(done.stdout.strip().splitlines()[-1])


def _tiny_logs(root: Path) -> Path:
  trial = root / 'sub' / 'study_0' / 'mnist1d_jax' / 'trial_1'
  trial.mkdir(parents=True)
  (trial / 'eval_measurements.csv').write_text(
      'global_step,score,validation/accuracy,test/accuracy\n'
      '1,0.5,0.50,0.50\n'
      '100,3.0,0.98,0.98\n')
  return root


@pytest.mark.parametrize('argv', [['--help'], ['score', '--help'],
                                  ['run', '--help'], ['sweep', '--help']])
def test_help_imports_no_jax(argv):
  out = _run_cli(*argv)
  assert out['code'] in (0, None)
  assert out['heavy'] == []


def test_score_imports_no_jax(tmp_path):
  out = _run_cli('score', str(_tiny_logs(tmp_path)), '--benchmark', 'small')
  assert out['code'] == 0
  assert out['heavy'] == []


def test_probe_sees_jax_when_a_command_needs_it():
  # The probe itself works: `describe` builds a workload, which imports JAX.
  out = _run_cli('describe', 'mnist1d', '--json')
  assert out['code'] == 0
  assert 'jax' in out['heavy']
