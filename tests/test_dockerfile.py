"""scripts/check_dockerfile.py: the real Dockerfile passes, broken ones fail, each for its reason."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'scripts' / 'check_dockerfile.py'
BROKEN = REPO / 'tests' / 'fixtures' / 'docker' / 'broken' / 'Dockerfile'


def _load_checker():
  spec = importlib.util.spec_from_file_location('check_dockerfile', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


checker = _load_checker()


def _run(*args):
  return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                        capture_output=True, text=True, timeout=60, check=False)


def test_the_real_dockerfile_passes():
  proc = _run(REPO / 'Dockerfile')
  assert proc.returncode == 0, proc.stderr
  assert 'installs with scripts/install.sh' in proc.stdout
  assert "console script 'algoperf'" in proc.stdout


def test_the_broken_fixture_fails_naming_each_problem():
  proc = _run(BROKEN, '--context', REPO)
  assert proc.returncode == 1
  problems = [line for line in proc.stderr.splitlines() if ': ' in line
              and not line.endswith('problem(s).')]
  assert len(problems) == 3, proc.stderr
  assert "Dockerfile:11: unknown instruction 'INSTAL'" in proc.stderr
  assert 'Dockerfile:9: COPY scripts/setup_gpu.sh: no such file' in proc.stderr
  assert ('Dockerfile:13: ENTRYPOINT /opt/algoperf/.venv/bin/algoperf-run: '
          'no such program') in proc.stderr


REAL = (REPO / 'Dockerfile').read_text()

# One change to the real Dockerfile each, and the problem it must cause.
MUTATIONS = {
    'shell_form_entrypoint': (
        'ENTRYPOINT ["/opt/algoperf/.venv/bin/algoperf"]',
        'ENTRYPOINT /opt/algoperf/.venv/bin/algoperf', 'ENTRYPOINT in shell form'),
    'shell_form_cmd': ('CMD ["--help"]', 'CMD --help', 'CMD in shell form'),
    'another_install_script': (
        'bash scripts/install.sh', 'bash scripts/run.sh',
        'no RUN runs scripts/install.sh'),
    'missing_script': (
        'bash scripts/install.sh', 'bash scripts/install_gpu.sh',
        'which is not in the build context'),
    'script_before_copy': (
        'COPY . /opt/algoperf\n', '',
        'RUN runs scripts/install.sh, which no COPY/ADD puts in the image'),
    'undeclared_base': ('ARG BASE=nvidia/cuda', 'ARG BASE_IMAGE=nvidia/cuda',
                        'FROM uses ${BASE}'),
    'venv_elsewhere': ('ENTRYPOINT ["/opt/algoperf/.venv/bin/algoperf"]',
                       'ENTRYPOINT ["/usr/local/bin/algoperf"]',
                       'ENTRYPOINT /usr/local/bin/algoperf: no such program'),
    'no_entrypoint': ('ENTRYPOINT ["/opt/algoperf/.venv/bin/algoperf"]\n', '',
                      'no ENTRYPOINT'),
}


@pytest.mark.parametrize('name', sorted(MUTATIONS))
def test_each_broken_variant_fails(tmp_path, name):
  old, new, expected = MUTATIONS[name]
  assert old in REAL
  path = tmp_path / 'Dockerfile'
  path.write_text(REAL.replace(old, new, 1))
  report = checker.check(path, REPO)
  assert not report.ok
  assert any(expected in p for p in report.problems), report.problems


def test_entrypoint_on_path_resolves_through_env(tmp_path):
  # A bare program name is looked up on the image's PATH, which ENV sets.
  path = tmp_path / 'Dockerfile'
  path.write_text(REAL.replace('ENTRYPOINT ["/opt/algoperf/.venv/bin/algoperf"]',
                               'ENTRYPOINT ["algoperf"]'))
  report = checker.check(path, REPO)
  assert report.ok, report.problems
  assert any("ENTRYPOINT algoperf: console script 'algoperf'" in f
             for f in report.facts)


def _small_context(tmp_path):
  """The files the check reads, in a context we may change."""
  ctx = tmp_path / 'ctx'
  for rel in ('Dockerfile', '.dockerignore', '.ci/run', 'scripts/install.sh',
              'scripts/test.sh', 'pyproject.toml'):
    (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / rel, ctx / rel)
  assert checker.check(ctx / 'Dockerfile').ok
  return ctx


def test_dockerignore_must_not_drop_what_the_image_needs(tmp_path):
  ctx = _small_context(tmp_path)
  with open(ctx / '.dockerignore', 'a') as f:
    f.write('scripts/*.sh\n')
  report = checker.check(ctx / 'Dockerfile')
  assert any('.dockerignore excludes' in p for p in report.problems), report.problems


def test_ci_must_run_the_same_install_script(tmp_path):
  ctx = _small_context(tmp_path)
  (ctx / '.ci' / 'run').write_text('#!/usr/bin/env bash\npytest -q\n')
  report = checker.check(ctx / 'Dockerfile')
  assert any('CI (.ci/run) never runs scripts/install.sh' in p
             for p in report.problems), report.problems


@pytest.mark.parametrize('rules, path, ignored', [
    ('.git', '.git/HEAD', True),
    ('**/__pycache__', 'scoring/__pycache__/x.pyc', True),
    ('**/__pycache__', 'scoring/x.py', False),
    ('*.egg-info', 'algoperf_jax.egg-info/PKG-INFO', True),
    ('experiments', 'scoring/experiments', False),  # anchored at the root
    ('scripts\n!scripts/install.sh', 'scripts/install.sh', False),
    ('scripts\n!scripts/install.sh', 'scripts/run.sh', True),
])
def test_dockerignore_patterns(tmp_path, rules, path, ignored):
  (tmp_path / '.dockerignore').write_text(rules + '\n')
  assert checker.is_ignored(path, checker.read_dockerignore(tmp_path)) is ignored


def test_ci_scripts_follows_the_chain_from_ci_run():
  scripts = checker.ci_scripts(REPO)
  assert {'.ci/run', 'scripts/test.sh', 'scripts/install.sh'} <= scripts
