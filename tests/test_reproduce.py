"""`algoperf reproduce v0.5`: the shipped extract and the full logs give the published scores."""

import json
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from algoperf import benchmarks, cli
from scoring import extract, leaderboard, loading, published, reproduce

REPO = Path(__file__).resolve().parents[1]
COMPETITION = REPO.parent / 'shared' / 'competition'
SHIPPED = reproduce.EXTRACTS['v0.5']
PUBLISHED = published.load('v0.5')
needs_logs = pytest.mark.skipif(
    not (COMPETITION / 'external_tuning').is_dir(),
    reason=f'the full competition logs are not at {COMPETITION} (shared/ beside '
    'the checkout; a fresh clone has only the shipped extract)')

# A row of the printed comparison: rank, submission, published, recomputed, match.
_ROW = re.compile(r'^\d+\s+(\S+)\s+(\d\.\d{4}|missing)\s+(\d\.\d{4}|missing)\s+(yes|NO)$',
                  re.MULTILINE)


def _number(cell):
  return None if cell == 'missing' else float(cell)


def _printed_scores(text):
  """submission -> (published, recomputed) per ruleset section of the printout."""
  sections = {}
  for ruleset, title in reproduce.RULESET_TITLES.items():
    start = text.find(f'{title} ruleset:')
    if start < 0:
      continue
    end = text.find('Time to target', start)
    sections[ruleset] = {m.group(1): (_number(m.group(2)), _number(m.group(3)))
                         for m in _ROW.finditer(text[start:end])}
  return sections


def _assert_all_published(text):
  sections = _printed_scores(text)
  assert set(sections) == {'external', 'self'}
  assert sum(len(rows) for rows in sections.values()) == 17
  for ruleset, rows in sections.items():
    assert {s: p for s, (p, _) in rows.items()} == PUBLISHED.scores[ruleset]
    assert {s: r for s, (_, r) in rows.items()} == PUBLISHED.scores[ruleset]
  assert 'Reproduced: all 17 recomputed scores equal' in text


def test_fresh_clone_reproduces_from_the_shipped_extract_without_jax(tmp_path):
  # A copy of the packages that scoring needs, with no shared/ folder anywhere
  # near it: the command must need nothing but the extract in the package.
  clone = tmp_path / 'clone'
  for package in ('algoperf', 'scoring'):
    shutil.copytree(REPO / package, clone / package,
                    ignore=shutil.ignore_patterns('__pycache__'))
  assert not (clone.parent / 'shared').exists()
  code = ('import sys; from algoperf import cli; rc = cli.main(["reproduce", "v0.5"]); '
          'assert "jax" not in sys.modules, "reproduce imported JAX"; sys.exit(rc)')
  env = {**os.environ, 'PYTHONPATH': str(clone)}
  proc = subprocess.run([sys.executable, '-c', code], cwd=clone, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert str(clone / 'scoring' / 'data') in proc.stdout  # the copy's extract
  _assert_all_published(proc.stdout)
  assert 'warning' not in proc.stderr


@needs_logs
def test_full_logs_reproduce_and_write_reports(tmp_path, capsys):
  out = tmp_path / 'report'
  rc = cli.main(['reproduce', 'v0.5', '--logs', str(COMPETITION),
                 '--output_dir', str(out)])
  printed = capsys.readouterr()
  assert rc == 0, printed.err
  _assert_all_published(printed.out)
  doc = json.loads((out / 'reproduce.json').read_text())
  assert doc['reproduced'] is True
  assert [r['submission'] for r in doc['rulesets']['self']['submissions']] == list(
      PUBLISHED.scores['self'])
  for ruleset in ('external_tuning', 'self_tuning'):
    for name in ('report.md', 'performance_profiles.png', 'time_to_target.csv'):
      assert (out / ruleset / name).stat().st_size > 0
  assert 'Reproduced' in (out / 'reproduce.md').read_text()


@needs_logs
def test_shipped_extract_equals_a_rebuild_from_the_full_logs():
  proc = subprocess.run(
      [sys.executable, str(REPO / 'scripts' / 'build_competition_extract.py'),
       '--logs', str(COMPETITION), '--output', str(SHIPPED), '--check'],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'up to date (4053 trial logs)' in proc.stdout


@needs_logs
@pytest.mark.parametrize('ruleset', ['external', 'self'])
def test_extract_and_folder_load_the_same_trials(ruleset):
  version = benchmarks.load('v0.5')
  folder = f'{ruleset}_tuning'
  a = loading.load_logs(COMPETITION / folder, version)
  b = loading.load_logs(SHIPPED / folder, version)

  def key(result):
    # repr: NaN metric cells compare equal as text, not as floats.
    return [(t.submission, t.study, t.workload, t.framework, t.trial,
             repr(t.times), repr(t.values)) for t in result.trials]

  assert key(a) == key(b)
  assert a.submissions == b.submissions and a.warnings == b.warnings == []


def _write_fast(path, files, meta):
  """An extract compressed at preset 0: the same format, in milliseconds."""
  path.write_bytes(lzma.compress(extract.payload(files, meta), preset=0))


def test_a_corrupt_shipped_extract_exits_1(tmp_path, monkeypatch, capsys):
  broken = tmp_path / 'competition_v0.5.json.xz'
  broken.write_bytes(SHIPPED.read_bytes()[:100_000])  # cut short
  monkeypatch.setitem(reproduce.EXTRACTS, 'v0.5', broken)
  assert cli.main(['reproduce', 'v0.5']) == 1
  printed = capsys.readouterr()
  assert 'not a readable log extract' in printed.err and str(broken) in printed.err
  assert 'NOT reproduced' in printed.out


def test_an_altered_extract_exits_1_naming_the_mismatches(tmp_path, capsys):
  doc = json.loads(extract.read_payload(SHIPPED))
  # Self-tuning only; without adamg, and without schedule_free_adamw's ogbg
  # runs in 3 of its 5 studies (it was fastest there, so others' ratios move).
  dropped = ('self_tuning/adamg/',) + tuple(
      f'self_tuning/schedule_free_adamw/study_{s}/ogbg_' for s in range(3))
  files = {k: v for k, v in doc['files'].items()
           if k.startswith('self_tuning/') and not k.startswith(dropped)}
  altered = tmp_path / 'altered.json.xz'
  _write_fast(altered, files, doc['meta'])
  rc = cli.main(['reproduce', 'v0.5', '--logs', str(altered), '--ruleset', 'self'])
  out = capsys.readouterr().out
  assert rc == 1
  verdict = out.strip().splitlines()[-1]
  assert verdict.startswith('NOT reproduced: ')
  assert 'self/adamg: published 0.0000, no logs' in verdict
  rows = _printed_scores(out)['self']
  assert rows['adamg'] == (0.0, None)
  differ = sorted(s for s, (p, r) in rows.items() if r is not None and p != r)
  assert differ  # removing the fastest ogbg runs changes some scores
  named = sorted(re.findall(r'self/(\w+): published [0-9.]+, recomputed', verdict))
  assert named == differ
  assert f'{len(differ) + 1} of 6 scores differ' in verdict


def test_missing_logs_folder_is_a_user_error(tmp_path, capsys):
  assert cli.main(['reproduce', 'v0.5', '--logs', str(tmp_path / 'nope')]) == 2
  assert 'no such folder' in capsys.readouterr().err
  (tmp_path / 'self_tuning').mkdir()
  assert cli.main(['reproduce', 'v0.5', '--logs', str(tmp_path)]) == 2
  assert 'has no external_tuning/ folder' in capsys.readouterr().err


_HEADER = 'accumulated_submission_time,global_step,score,validation/accuracy,validation/loss'


def test_extract_reads_like_the_folder_it_came_from(tmp_path):
  # Good, cut-off, header-only and quoted files: the extract (reduced where a
  # file is plainly well-formed, whole otherwise) must give the loader the
  # same trials and the same warnings as the folder.
  root = tmp_path / 'logs'
  texts = {
      'good': f'{_HEADER}\n1.5,10,1.5,0.5,2.0\n3.0,20,3.0,,1.0\n',
      'cut': f'{_HEADER}\n1.5,10,1.5,0.5,2.0\n3.0,20,3.0,0.9',
      'empty': f'{_HEADER}\n',
      'quoted': f'{_HEADER}\n"1.5",10,1.5,0.95,2.0\n',
  }
  files = {}
  for i, (name, text) in enumerate(texts.items()):
    rel = f'sub_{name}/study_0/mnist1d_jax/trial_{i + 1}/eval_measurements.csv'
    (root / rel).parent.mkdir(parents=True)
    (root / rel).write_text(text)
    reduced = extract.reduce_csv(text, 'validation/accuracy')
    files[rel] = text if reduced is None else reduced
  good = next(k for k in files if 'sub_good' in k)
  assert files[good] == 'global_step,score,validation/accuracy\n10,1.5,0.5\n20,3.0,\n'
  xz = tmp_path / 'small.json.xz'
  extract.write(xz, files, {'note': 'test'})
  version = benchmarks.load('small')
  on_disk = loading.load_logs(root, version, workloads=['mnist1d'])
  inside = loading.load_logs(xz, version, workloads=['mnist1d'])
  assert [(t.submission, t.times, repr(t.values)) for t in on_disk.trials] == [
      (t.submission, t.times, repr(t.values)) for t in inside.trials]
  assert len(on_disk.warnings) == 2  # the cut-off row and the header-only file
  assert [w.replace(str(root), 'ROOT') for w in on_disk.warnings] == [
      w.replace(str(xz), 'ROOT') for w in inside.warnings]
  assert math.isnan(inside.trials[[t.submission for t in inside.trials].index(
      'sub_good')].values[1])


def test_score_command_reads_a_folder_inside_the_shipped_extract(capsys):
  rc = cli.main(['score', str(SHIPPED / 'self_tuning'), '--benchmark', 'v0.5',
                 '--ruleset', 'self'])
  assert rc == 0
  assert '0.8542' in capsys.readouterr().out
  with pytest.raises(FileNotFoundError, match='No such folder of logs'):
    leaderboard.score_logs(SHIPPED / 'no_such_ruleset', 'v0.5', 'self')
