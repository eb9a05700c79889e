"""scripts/run_external_submissions.py: which files it runs, with which search space."""

import importlib.util
import json
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'run_external_submissions.py'
_spec = importlib.util.spec_from_file_location('run_external_submissions', _SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

_HOOKS = ''.join(f'def {h}(*args, **kwargs):\n  pass\n' for h in script.HOOKS)


def _write(root, relative, text):
  path = root / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def test_finds_jax_submissions_and_skips_pytorch_and_helpers(tmp_path):
  jax_sub = _write(tmp_path, 'algorithms/a/jax/submission.py', 'import jax\n' + _HOOKS)
  _write(tmp_path, 'algorithms/a/pytorch/submission.py', 'import torch\n' + _HOOKS)
  _write(tmp_path, 'algorithms/b/submission.py', 'import torch.nn\n' + _HOOKS)
  _write(tmp_path, 'algorithms/b/helper.py', 'import jax\ndef update_params(): pass\n')
  # Hooks imported from sibling modules count (the target-setting layout).
  imported = _write(tmp_path, 'algorithms/t/jax_sgd.py',
                    'from .base import update_params, data_selection\n'
                    'from .sizes import get_batch_size\n'
                    'def init_optimizer_state(*a):\n  pass\n')
  _write(tmp_path, 'algorithms/a/logs/submission.py', _HOOKS)
  assert script.find_submissions(tmp_path) == sorted([jax_sub, imported])


def test_search_space_nearest_above_else_the_best_covering_one(tmp_path):
  near = _write(tmp_path, 'algorithms/a/tuning_search_space.json',
                json.dumps({'learning_rate': {'feasible_points': [0.1]}}))
  sub = _write(tmp_path, 'algorithms/a/jax/submission.py', 'import jax\n' + _HOOKS)
  assert script.search_space_for(sub, tmp_path) == near
  _write(tmp_path, 'algorithms/t/w1/tuning_search_space.json',
         json.dumps({'learning_rate': {'feasible_points': [1]}, 'beta2': {'feasible_points': [0.9]}}))
  best = _write(tmp_path, 'algorithms/t/w2/tuning_search_space.json',
                json.dumps([{'learning_rate': 1, 'one_minus_beta1': 0.1}]))
  lone = _write(tmp_path, 'algorithms/t/jax_momentum.py',
                'import jax\n' + _HOOKS + 'def f(hyperparameters):\n'
                '  return hyperparameters.learning_rate, hyperparameters.one_minus_beta1\n')
  # No space above it: the one covering both names it reads, with no extras.
  (tmp_path / 'algorithms/a/tuning_search_space.json').unlink()
  assert script.search_space_for(lone, tmp_path) == best


def test_scratch_inside_the_repository_is_refused(tmp_path):
  with pytest.raises(SystemExit) as info:
    script.main(['--algoperf_repo', str(tmp_path), '--submissions_repo', str(tmp_path),
                 '--scratch', str(script.REPO / 'scratch')])
  assert info.value.code == 2
