"""`algoperf check`: passes working submissions, names the problem in broken ones."""

import textwrap
from pathlib import Path

import pytest

from algoperf import check, cli

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = ROOT / 'submissions'
FIXTURES = ROOT / 'tests' / 'fixtures'
BROKEN = FIXTURES / 'broken'
STEPS = 3


@pytest.mark.parametrize('path, options', [
    (SUBMISSIONS / 'nadamw', {}),
    (SUBMISSIONS / 'nadamw_self_tuning', {}),
    (SUBMISSIONS / 'template', {}),
    (FIXTURES / 'reference_style', {'global_batch_size': 64}),
    (FIXTURES / 'guarded_hyperparameters', {}),
])
def test_working_submissions_pass(path, options):
  report = check.check_submission(path, steps=STEPS, **options)
  assert report.ok, report.text
  assert [r.workload for r in report.dry_run] == ['mnist1d']
  assert report.dry_run[0].message.startswith('OK (3 step(s)')
  assert report.text.rstrip().endswith('All checks passed.')


def test_cli_check_exit_codes(capsys):
  assert cli.main(['check', 'template', f'--steps={STEPS}']) == 0
  out = capsys.readouterr().out
  assert 'mnist1d: OK' in out and 'All checks passed.' in out
  assert cli.main(['check', str(BROKEN / 'missing_hook')]) == 2
  out = capsys.readouterr().out
  assert 'FAIL  hooks: missing `data_selection`' in out
  assert 'Dry run skipped' in out


def test_cli_check_rejects_an_unknown_workload(capsys):
  assert cli.main(['check', 'template', '--workload', 'mnist1d,nope']) == 2
  assert 'Unknown workload(s) nope' in capsys.readouterr().err


def test_unknown_workload_for_submission_suggests_global_batch_size():
  report = check.check_submission(FIXTURES / 'reference_style', steps=STEPS)
  assert not report.ok
  (result,) = report.dry_run
  assert result.hook == 'get_batch_size'
  assert result.message.startswith("FAIL: get_batch_size: it does not know 'mnist1d'")
  assert '--global_batch_size' in result.message


# case -> (strings the failure lines must contain, whether the dry run ran)
BROKEN_CASES = {
    'missing_hook': (['hooks: missing `data_selection`',
                      'def data_selection(workload, input_queue'], False),
    'wrong_signature': (['signatures: the runner calls update_params by keyword',
                         'Missing: `current_param_container`',
                         'Never passed by the runner: `params`'], False),
    'bad_search_space': (['search space:', "key 'learning_rate'",
                          '"log" scaling needs "min" > 0'], False),
    'update_params_raises': (['mnist1d: FAIL: update_params: ValueError: '
                              'update_params is broken on purpose',
                              'update_params_raises/submission.py:'], True),
    'nan_loss': (['mnist1d: FAIL: update_params: the training loss on a fixed '
                  'batch is nan'], True),
    'calls_input_pipeline': (['rules: ', 'uses `._build_input_queue`',
                              'may not build input pipelines',
                              'mnist1d: FAIL: update_params: FenceError: AlgoPerf '
                              'rules'], True),
    'calls_eval_model': (['uses `.eval_model`', 'may not run evaluations',
                          'mnist1d: FAIL: update_params: FenceError'], True),
    'imports_workloads': (['imports from `workloads.mnist1d`',
                           'may not import workload code'], False),
    'misspelled_hyperparameter': (
        ['hyperparameters: the submission reads hyperparameters.learnig_rate '
         '(submission.py:19; did you mean learning_rate?), which '
         'tuning_search_space.json does not define',
         'AttributeError', 'Add it to tuning_search_space.json, or guard the read',
         "getattr(hyperparameters, 'learnig_rate', default)"], False),
}


@pytest.mark.parametrize('case', sorted(BROKEN_CASES))
def test_broken_submissions_fail_naming_the_problem(case):
  expected, needs_dry_run = BROKEN_CASES[case]
  # Static problems need no dry run; keep those cases quick.
  report = check.check_submission(BROKEN / case,
                                  steps=STEPS if needs_dry_run else 0)
  assert not report.ok
  failures = '\n'.join(report.failures)
  for text in expected:
    assert text in failures, (text, report.text)
  assert 'problem(s) found' in report.text


def test_a_missing_search_space_and_the_self_tuning_ruleset(tmp_path):
  folder = tmp_path / 'my_submission'
  folder.mkdir()
  (folder / 'submission.py').write_text(
      (SUBMISSIONS / 'nadamw_self_tuning' / 'submission.py').read_text())
  report = check.check_submission(folder, steps=0)
  assert not report.ok
  assert 'no tuning_search_space.json beside the submission' in report.failures[0]
  assert '--tuning_ruleset' in report.failures[0]
  assert check.check_submission(folder, steps=0, tuning_ruleset='self').ok
  space = SUBMISSIONS / 'nadamw' / 'tuning_search_space.json'
  report = check.check_submission(folder, steps=0, tuning_ruleset='self',
                                  tuning_search_space=space)
  assert 'self-tuning submissions take no search space' in report.failures[0]


def test_import_error_is_reported(tmp_path):
  (tmp_path / 'submission.py').write_text('import no_such_package_xyz\n')
  report = check.check_submission(tmp_path, steps=0)
  assert not report.ok
  assert "import: importing the submission raised ModuleNotFoundError" in report.failures[0]
  (tmp_path / 'submission.py').write_text('def get_batch_size(:\n')
  report = check.check_submission(tmp_path, steps=0)
  assert report.failures[0].startswith('syntax: ')


def test_scan_source_flags_internals_and_spares_lookalikes():
  source = textwrap.dedent('''
      import importlib
      import workloads.mnist1d.workload
      from algoperf import runner

      class Helper:
        def __init__(self):
          self._data = []          # the submission's own: fine
          self._splits = 3         # not a workload: fine

      def f(workload, rng):
        getattr(workload, '_build_input_queue')(rng, 'train', None, 8)
        importlib.import_module('workloads.fashion_mnist')
        return workload._splits, workload.param_shapes
      ''')
  problems, warnings = check.scan_source(source, 'sub.py')
  text = '\n'.join(problems)
  assert 'sub.py:3 imports `workloads.mnist1d.workload`' in text
  assert 'sub.py:12 uses `._build_input_queue`' in text
  assert 'sub.py:13 imports `workloads.fashion_mnist`' in text
  assert 'sub.py:14 uses `._splits`' in text
  assert len(problems) == 4
  assert len(warnings) == 1 and 'algoperf.runner' in warnings[0]


def test_check_signature_positional_and_keyword_rules():
  def swapped(workload, model_params, hyperparameters, model_state, rng):
    pass

  def renamed_but_fine(w, params, state, hp, key):
    pass

  def too_few(workload, model_params, model_state, hyperparameters):
    pass

  def by_kwargs(**kwargs):
    pass

  def prepare_wrong(workload, current_param_container, current_params_types,
                    model_state, hyperparameters, loss_type, optimizer_state,
                    eval_results, step, rng):
    pass

  problems = check.check_signature('init_optimizer_state', swapped)
  assert len(problems) == 2 and 'parameter 3 of init_optimizer_state' in problems[0]
  assert check.check_signature('init_optimizer_state', renamed_but_fine) == []
  assert 'cannot take the 5 positional arguments' in check.check_signature(
      'init_optimizer_state', too_few)[0]
  assert check.check_signature('update_params', by_kwargs) == []
  (problem,) = check.check_signature('prepare_for_eval', prepare_wrong)
  assert 'Missing: `global_step`' in problem and '`step`' in problem


def test_a_bad_return_value_is_blamed_on_its_hook(tmp_path):
  template = SUBMISSIONS / 'template'
  source = (template / 'submission.py').read_text()
  returned = 'return (opt_state, opt_update_fn), params, model_state'
  assert returned in source
  (tmp_path / 'submission.py').write_text(
      source.replace(returned, 'return (opt_state, opt_update_fn), params'))
  (tmp_path / 'tuning_search_space.json').write_text(
      (template / 'tuning_search_space.json').read_text())
  report = check.check_submission(tmp_path, steps=STEPS)
  (result,) = report.dry_run
  assert result.hook == 'update_params'
  assert ('FAIL: update_params: BadReturnValue: returned a tuple of length 2; it '
          'must return the triple (optimizer_state, params, model_state)'
          in result.message)


# --- hyperparameter reads the search space lacks --------------------------------


def _submission_with(tmp_path, extra_source, name='my_submission'):
  """The template, plus ``extra_source`` (module-level code), in a new folder."""
  folder = tmp_path / name
  folder.mkdir()
  template = SUBMISSIONS / 'template'
  (folder / 'submission.py').write_text(
      (template / 'submission.py').read_text() + '\n\n'
      + textwrap.dedent(extra_source))
  (folder / 'tuning_search_space.json').write_text(
      (template / 'tuning_search_space.json').read_text())
  return folder


def _hyperparameter_findings(report):
  return [f for f in report.findings if f.topic == 'hyperparameters']


def test_cli_check_fails_a_misspelled_hyperparameter(capsys):
  assert cli.main(['check', str(BROKEN / 'misspelled_hyperparameter'),
                   '--steps', '0']) == 2
  out = capsys.readouterr().out
  (line,) = [l for l in out.splitlines() if l.startswith('  FAIL')]
  assert line.startswith('  FAIL  hyperparameters: the submission reads '
                         'hyperparameters.learnig_rate (submission.py:19')


def test_every_unguarded_missing_name_is_listed_with_its_lines(tmp_path):
  folder = _submission_with(tmp_path, """
      def _schedule(hyperparameters, step):
        if step < hyperparameters.warmup_stepz:
          return hyperparameters.lr_peak * step
        return hyperparameters.lr_peak + getattr(hyperparameters, 'decay')
      """)
  lines = (folder / 'submission.py').read_text().splitlines()
  first = lines.index('  if step < hyperparameters.warmup_stepz:') + 1
  (failure,) = check.check_submission(folder, steps=0).failures
  assert failure.startswith(
      'hyperparameters: the submission reads hyperparameters.warmup_stepz '
      f'(submission.py:{first}), hyperparameters.lr_peak (submission.py:'
      f'{first + 1}, submission.py:{first + 2}), hyperparameters.decay '
      f'(submission.py:{first + 2}), which tuning_search_space.json does not '
      'define')
  assert 'Add them to tuning_search_space.json' in failure


# Each form guards its read of `extra` (not in the template's space).
GUARDS = {
    'if hasattr': """
        def f(hyperparameters):
          if hasattr(hyperparameters, 'extra'):
            return hyperparameters.extra
          return 0
        """,
    'if hasattr and': """
        def f(hyperparameters, step):
          if step > 0 and hasattr(hyperparameters, 'extra'):
            return hyperparameters.extra
        """,
    'elif hasattr': """
        def f(hyperparameters, step):
          if step:
            return 0
          elif hasattr(hyperparameters, 'extra'):
            return hyperparameters.extra
        """,
    'else of if not hasattr': """
        def f(hyperparameters):
          if not hasattr(hyperparameters, 'extra'):
            return 0
          else:
            return hyperparameters.extra
        """,
    'and chain': """
        def f(hyperparameters):
          return hasattr(hyperparameters, 'extra') and hyperparameters.extra > 1
        """,
    'or chain': """
        def f(hyperparameters):
          return not hasattr(hyperparameters, 'extra') or hyperparameters.extra
        """,
    'conditional expression': """
        def f(hyperparameters):
          return hyperparameters.extra if hasattr(hyperparameters, 'extra') else 1
        """,
    'early return': """
        def f(hyperparameters):
          if not hasattr(hyperparameters, 'extra'):
            return 1.0
          scale = 2 * hyperparameters.extra
          return scale
        """,
    'getattr with a default': """
        def f(hyperparameters):
          return getattr(hyperparameters, 'extra', 0.5)
        """,
    'try AttributeError': """
        def f(hyperparameters):
          try:
            return hyperparameters.extra
          except AttributeError:
            return 0
        """,
    'try (KeyError, AttributeError)': """
        def f(hyperparameters):
          try:
            return hyperparameters.extra
          except (KeyError, AttributeError):
            return 0
        """,
    'try Exception': """
        def f(hyperparameters):
          try:
            return hyperparameters.extra
          except Exception:
            return 0
        """,
    'bare except': """
        def f(hyperparameters):
          try:
            return hyperparameters.extra
          except:  # noqa: E722
            return 0
        """,
    'namedtuple methods': """
        def f(hyperparameters):
          values = hyperparameters._asdict()
          return (hyperparameters._replace(learning_rate=1.0), values,
                  hyperparameters.count(1), hyperparameters.index(1),
                  hyperparameters._fields)
        """,
    'a defined name': """
        def f(hyperparameters):
          return 2 * hyperparameters.learning_rate
        """,
}


@pytest.mark.parametrize('form', sorted(GUARDS))
def test_a_guarded_read_gives_no_finding(tmp_path, form):
  reads = [r for r in check.hyperparameter_reads(textwrap.dedent(GUARDS[form]))
           if r.name == 'extra']
  assert all(r.guarded for r in reads), reads
  report = check.check_submission(_submission_with(tmp_path, GUARDS[form]), steps=0)
  assert report.ok, report.text
  assert _hyperparameter_findings(report) == []
  assert 'WARN' not in report.text


@pytest.mark.parametrize('source', [
    # The guard tests another field, or the handler does not catch AttributeError.
    """
    def f(hyperparameters):
      if hasattr(hyperparameters, 'other'):
        return hyperparameters.extra
    """,
    """
    def f(hyperparameters):
      try:
        return hyperparameters.extra
      except KeyError:
        return 0
    """,
    """
    def f(hyperparameters):
      if hasattr(hyperparameters, 'extra') or True:
        return hyperparameters.extra
    """,
    """
    def f(hyperparameters):
      if hasattr(hyperparameters, 'extra'):
        pass
      return hyperparameters.extra
    """,
])
def test_a_guard_that_does_not_protect_the_read_is_no_guard(source):
  (read,) = check.hyperparameter_reads(textwrap.dedent(source))
  assert (read.name, read.guarded) == ('extra', False)


def test_other_objects_and_self_tuning_are_not_checked(tmp_path):
  # A local variable of the same name is not the namedtuple.
  source = """
      def f(hyperparameters):
        hparams = hyperparameters._asdict()
        return hparams.get('extra'), hparams.items()
      """
  assert check.hyperparameter_reads(textwrap.dedent(source)) == []
  # Self-tuning: hyperparameters is None, there is no search space to compare.
  folder = _submission_with(tmp_path, """
      def f(hyperparameters):
        return hyperparameters.whatever
      """, name='my_self_tuning')
  (folder / 'tuning_search_space.json').unlink()
  report = check.check_submission(folder, steps=0)
  assert _hyperparameter_findings(report) == []
