"""The scoring rules (docs/RULES.md, Scoring rules) on small hand-made tables.

Every expected number is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import math
import types
from typing import Dict, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algoperf import benchmarks
from scoring import time_to_target
from scoring.rules import (DEFAULT_TAUS, MISS, TrialHit, apply_rules,
                           benchmark_score, first_hit, performance_profile,
                           score_table, study_time, workload_time)
from scoring.speedup import percent_faster, speedups

INF = math.inf
NAN = math.nan


def fake_version(base: Sequence[str], held_out: Dict[str, str]):
  """A version-like object: base workloads and held-out -> its base workload."""
  return types.SimpleNamespace(
      base_workloads=tuple(base),
      held_out_workloads=tuple(held_out),
      workloads={h: types.SimpleNamespace(base_workload=b)
                 for h, b in held_out.items()},
  )


# Two base workloads; 'a' has a held-out variant 'a_v', 'b' has none.
V5 = fake_version(['a', 'b'], {'a_v': 'a'})
# Like v0.6: no held-out workloads.
V6 = fake_version(['a', 'b'], {})


def same(x: float, y: float) -> bool:
  """Equality that also holds for NaN == NaN."""
  return (math.isnan(x) and math.isnan(y)) or x == y


# --- Per trial --------------------------------------------------------------


def test_first_hit_by_direction_and_equality():
  times = [10.0, 20.0, 30.0, 40.0]
  # Accuracy: the first value >= 0.7 is row 2.
  assert first_hit([0.1, 0.5, 0.7, 0.9], times, 0.7, True) == TrialHit(30.0, 2.0)
  # Loss: the first value <= 0.3 is row 2.
  assert first_hit([0.9, 0.5, 0.3, 0.1], times, 0.3, False) == TrialHit(30.0, 2.0)
  # Exactly equal counts in both directions; a later dip does not undo it.
  assert first_hit([0.7, 0.1, 0.1, 0.1], times, 0.7, True) == TrialHit(10.0, 0.0)
  assert first_hit([0.3, 0.9, 0.9, 0.9], times, 0.3, False) == TrialHit(10.0, 0.0)
  # Never reached.
  assert first_hit([0.1, 0.2], [1.0, 2.0], 0.7, True) == MISS
  assert first_hit([], [], 0.7, True) == MISS
  assert MISS.time == INF and MISS.eval_index == INF


def test_first_hit_nan_never_reaches():
  # A NaN loss is not "<= target" (nor, for accuracy, ">= target").
  assert first_hit([NAN, 0.2], [1.0, 2.0], 0.3, False) == TrialHit(2.0, 1.0)
  assert first_hit([NAN, NAN], [1.0, 2.0], 0.3, False) == MISS
  assert first_hit([NAN, NAN], [1.0, 2.0], 0.3, True) == MISS


def test_first_hit_past_budget_is_a_miss():
  values, times = [0.1, 0.8, 0.9], [50.0, 100.0, 150.0]
  # Hit at row 1, t=100: inside a budget of 100 (not strictly greater).
  assert first_hit(values, times, 0.8, True, budget=100.0) == TrialHit(100.0, 1.0)
  # The same hit with a budget of 99.9 is past it: a miss.
  assert first_hit(values, times, 0.8, True, budget=99.9) == MISS
  # Self-tuning: the caller passes budget x 3, here 3 x 40 = 120 >= 100.
  assert first_hit(values, times, 0.8, True, budget=3 * 40.0) == TrialHit(100.0, 1.0)
  with pytest.raises(ValueError):
    first_hit([1.0], [], 0.5, True)


@given(st.lists(st.tuples(st.one_of(st.floats(-10, 10), st.just(NAN)),
                          st.floats(0, 1e6)), max_size=12),
       st.floats(-10, 10), st.booleans())
def test_first_hit_agrees_with_time_to_target(rows, target, higher):
  values = [v for v, _ in rows]
  times = [t for _, t in rows]
  assert first_hit(values, times, target, higher).time == time_to_target(
      values, times, target, higher)


# --- Per study --------------------------------------------------------------


def test_the_two_trial_rules_differ_on_one_study():
  # Trial 1 reached the target at eval 5 after 100 s; trial 2 at eval 6 after
  # 90 s (a faster step time). v0.5 takes the earliest eval: trial 1, 100 s;
  # v0.6 the smallest time: trial 2, 90 s. Trial 3 missed.
  hits = [TrialHit(100.0, 5.0), TrialHit(90.0, 6.0), MISS]
  assert study_time(hits, 'smallest_eval_index') == 100.0
  assert study_time(hits, 'smallest_time') == 90.0


def test_eval_index_ties_go_to_the_first_trial():
  # Both reached at eval 5; the first in the given (trial-number) order wins,
  # though the second was faster.
  hits = [TrialHit(100.0, 5.0), TrialHit(95.0, 5.0)]
  assert study_time(hits, 'smallest_eval_index') == 100.0
  assert study_time(list(reversed(hits)), 'smallest_eval_index') == 95.0
  assert study_time(hits, 'smallest_time') == 95.0


def test_study_without_hits_and_bad_input():
  assert study_time([MISS, MISS], 'smallest_eval_index') == INF
  assert study_time([MISS], 'smallest_time') == INF
  with pytest.raises(ValueError, match='smallest_eval_index'):
    study_time([MISS], 'fastest')
  with pytest.raises(ValueError):
    study_time([], 'smallest_time')  # A study with no logs is missing, not scored.


@given(st.lists(st.tuples(st.floats(0, 1e5), st.integers(0, 50), st.booleans()),
                min_size=1, max_size=6),
       st.randoms(use_true_random=False))
def test_study_time_does_not_depend_on_trial_order(trials, rnd):
  hits = [TrialHit(t, float(i)) if reached else MISS for t, i, reached in trials]
  shuffled = list(hits)
  rnd.shuffle(shuffled)
  assert study_time(shuffled, 'smallest_time') == study_time(hits, 'smallest_time')
  reached_indices = [h.eval_index for h in hits if h != MISS]
  if len(set(reached_indices)) == len(reached_indices):  # Distinct: no tie to break.
    assert (study_time(shuffled, 'smallest_eval_index')
            == study_time(hits, 'smallest_eval_index'))


# --- Per workload -----------------------------------------------------------


def test_workload_time_is_numpy_median_with_inf():
  assert workload_time([3.0, 1.0, 2.0]) == 2.0
  # Even count: the mean of the two middle values, (3 + 5) / 2 = 4.
  assert workload_time([1.0, 3.0, 5.0, INF]) == 4.0
  # [1, inf]: (1 + inf) / 2 = inf; [1, 2, inf]: the middle one, 2.
  assert workload_time([1.0, INF]) == INF
  assert workload_time([1.0, 2.0, INF]) == 2.0
  # 3 of 5 studies missed: the median is a miss.
  assert workload_time([1.0, 2.0, INF, INF, INF]) == INF
  # No study has logs: missing.
  assert math.isnan(workload_time([]))


# --- Table rules ------------------------------------------------------------


def test_held_out_miss_takes_away_the_base():
  table = {
      # S1 was fastest on 'a' but missed its held-out: (3) makes 'a' inf.
      'S1': {'a': 10.0, 'b': 10.0, 'a_v': INF},
      # S2 reached both; 20 <= 4 x 10 survives the cut.
      'S2': {'a': 20.0, 'b': 20.0, 'a_v': 5.0},
      # S3 never ran the held-out (missing): the same as a miss.
      'S3': {'a': 20.0, 'b': 20.0},
  }
  assert apply_rules(table, V5) == {
      'S1': {'a': INF, 'b': 10.0},
      'S2': {'a': 20.0, 'b': 20.0},
      'S3': {'a': INF, 'b': 20.0},
  }
  # S1 now lacks 'a', so S2 is the best on both columns: r = [1, 2], and
  # S1 r = [-, 1], S3 r = [-, 2]. With taus [1, 2, 3]:
  #   S1 rho = [1/2, 1/2, 1/2] -> area 1/2 + 1/2 = 1, / 2 = 0.5
  #   S2 rho = [1/2, 1, 1]     -> area 3/4 + 1 = 1.75, / 2 = 0.875
  #   S3 rho = [0, 1/2, 1/2]   -> area 1/4 + 1/2 = 0.75, / 2 = 0.375
  scores = score_table(table, V5, taus=[1.0, 2.0, 3.0])
  assert scores == pytest.approx({'S1': 0.5, 'S2': 0.875, 'S3': 0.375})


def test_held_out_is_inf_when_its_base_is():
  # (1) S1 missed 'a', so its fast held-out (1 s) is set to inf *before* the
  # 4x cut; the held-out column minimum is then S2's 5 s, not 1 s, and S2's 5 s
  # survives. (Had S1's 1 s counted, 5 > 4 x 1 would cut S2's held-out and (3)
  # would then take S2's 'a' too.)
  table = {'S1': {'a': INF, 'b': 10.0, 'a_v': 1.0},
           'S2': {'a': 10.0, 'b': 10.0, 'a_v': 5.0}}
  assert apply_rules(table, V5) == {'S1': {'a': INF, 'b': 10.0},
                                    'S2': {'a': 10.0, 'b': 10.0}}
  # A missing base (absent key) counts like a miss: S1's held-out becomes inf in
  # (1) and so, in (3), its base comes out inf, not NaN.
  table = {'S1': {'b': 10.0, 'a_v': 1.0}, 'S2': {'a': 10.0, 'b': 10.0, 'a_v': 5.0}}
  assert apply_rules(table, V5)['S1'] == {'a': INF, 'b': 10.0}


def test_four_times_cut():
  table = {'S1': {'a': 10.0, 'b': 7.0},
           'S2': {'a': 40.0, 'b': 1.0},   # a: exactly 4 x 10 survives.
           'S3': {'a': 40.1, 'b': 4.0},   # a: 40.1 > 40 is cut; b: 4 = 4 x 1 stays.
           'S4': {'a': NAN, 'b': 4.5}}    # a: missing stays missing; b: 4.5 > 4 cut.
  out = apply_rules(table, V6)
  assert out['S1'] == {'a': 10.0, 'b': INF}  # b: 7 > 4 x 1.
  assert out['S2'] == {'a': 40.0, 'b': 1.0}
  assert out['S3'] == {'a': INF, 'b': 4.0}
  assert math.isnan(out['S4']['a']) and out['S4']['b'] == INF


def test_cut_comes_before_the_base_loses_credit():
  # (2) before (3): S1's 'a' (10 s) sets the column minimum for the 4x cut, so
  # S2's 45 s is cut, and only afterwards does S1 lose 'a' to its held-out miss.
  # Nobody keeps 'a'.
  table = {'S1': {'a': 10.0, 'b': 1.0, 'a_v': INF},
           'S2': {'a': 45.0, 'b': 1.0, 'a_v': 1.0}}
  out = apply_rules(table, V5)
  assert out == {'S1': {'a': INF, 'b': 1.0}, 'S2': {'a': INF, 'b': 1.0}}


def test_all_missing_workload_and_extra_columns():
  # Nobody ran 'b': it stays missing and gives no one credit. 'zzz' is neither
  # base nor held-out and is dropped.
  table = {'S1': {'a': 10.0, 'a_v': 2.0, 'zzz': 1.0}, 'S2': {'a': 20.0, 'a_v': 3.0}}
  out = apply_rules(table, V5)
  assert out['S1']['a'] == 10.0 and out['S2']['a'] == 20.0
  assert math.isnan(out['S1']['b']) and math.isnan(out['S2']['b'])
  assert set(out['S1']) == {'a', 'b'}
  # S1: r_a = 1, rho = 1/2 everywhere (b unsolved, still / 2) -> 0.5.
  # S2: r_a = 2, rho = [0, 1/2, 1/2] on taus [1, 2, 3] -> (1/4 + 1/2) / 2.
  scores = score_table(table, V5, taus=[1.0, 2.0, 3.0])
  assert scores == pytest.approx({'S1': 0.5, 'S2': 0.375})
  # An all-inf column stays all inf.
  out = apply_rules({'S1': {'a': INF, 'b': 1.0}, 'S2': {'a': INF, 'b': 2.0}}, V6)
  assert out['S1']['a'] == INF and out['S2']['a'] == INF


def test_held_out_base_must_be_a_base_workload():
  bad = fake_version(['a', 'b'], {'c_v': 'c'})
  with pytest.raises(ValueError, match='c_v'):
    apply_rules({'S': {'a': 1.0}}, bad)


def test_real_versions():
  v05, v06 = benchmarks.load('v0.5'), benchmarks.load('v0.6')
  assert len(v05.base_workloads) == 8 and len(v05.held_out_workloads) == 6
  assert v06.held_out_workloads == ()
  everything = {w: 100.0 for w in v05.base_workloads + v05.held_out_workloads}
  # One held-out missing (wmt_glu_tanh): only its base, wmt, loses credit.
  fast = dict(everything, wmt_glu_tanh=INF)
  slow = {w: 200.0 for w in everything}
  out = apply_rules({'fast': fast, 'slow': slow}, v05)
  assert set(out['fast']) == set(v05.base_workloads)
  assert out['fast'] == dict({w: 100.0 for w in v05.base_workloads}, wmt=INF)
  # fast: 7 of 8 with r = 1 -> 7/8. slow: r = 2 on 7 workloads and r = 1 on
  # wmt -> rho = 1/8 for tau_k < 2 (k <= 32) and 1 from tau_33 = 2 on; as in
  # test_profile_and_score_by_hand: (32/8 + (1/8 + 1)/2 + 66) / 99.
  scores = score_table({'fast': fast, 'slow': slow}, v05)
  assert scores['fast'] == pytest.approx(7 / 8)
  assert scores['slow'] == pytest.approx((4 + 0.5625 + 66) / 99)
  # v0.6: held-out columns are ignored; all 8 bases count.
  assert score_table({'fast': fast, 'slow': slow}, v06)['fast'] == pytest.approx(1.0)


# --- Profile and score -------------------------------------------------------


def test_profile_and_score_by_hand():
  # A = [10, 20], B = [20, 10]: the column minima are [10, 10], so each has
  # r = [1, 2] in some order, and rho(tau) = 1/2 for 1 <= tau < 2, 1 for tau >= 2.
  table = {'A': {'a': 10.0, 'b': 20.0}, 'B': {'a': 20.0, 'b': 10.0}}
  taus = [1.0, 2.0, 3.0]
  rho = performance_profile(table, ['a', 'b'], taus)
  np.testing.assert_array_equal(rho['A'], [0.5, 1.0, 1.0])
  np.testing.assert_array_equal(rho['B'], [0.5, 1.0, 1.0])
  # Trapezoids: (0.5 + 1) / 2 x 1 + (1 + 1) / 2 x 1 = 1.75; over a range of 2.
  assert benchmark_score(rho['A'], taus) == pytest.approx(0.875)
  # Default grid: tau_k = 1 + k h, h = 3/99, and tau_33 is exactly 2.0, so
  # rho = 1/2 for k <= 32 and 1 for k >= 33. Trapezoids: 32 intervals of 1/2,
  # one of (1/2 + 1)/2 = 3/4 and 66 of 1: (16 + 0.75 + 66) h / 3 = 82.75 / 99
  # = 0.8359, a little above the exact area under the step, 2.5 / 3 = 0.8333.
  assert DEFAULT_TAUS[33] == 2.0
  default = score_table(table, V6)
  assert default['A'] == pytest.approx(82.75 / 99)
  assert default['A'] == default['B']


def test_profile_always_divides_by_the_number_of_base_workloads():
  # C ran only 'a' (fastest there): 1 of 2 workloads, so rho = 1/2 for every tau.
  table = {'C': {'a': 5.0}, 'D': {'a': 10.0, 'b': 10.0}}
  taus = [1.0, 2.0, 4.0]
  rho = performance_profile(table, ['a', 'b'], taus)
  np.testing.assert_array_equal(rho['C'], [0.5, 0.5, 0.5])
  # D: r = [2, 1] -> rho = [1/2, 1, 1].
  np.testing.assert_array_equal(rho['D'], [0.5, 1.0, 1.0])
  # Column 'b' with nobody finite: no credit, no warnings, no NaN in rho.
  rho = performance_profile({'E': {'a': 1.0, 'b': INF}, 'F': {'a': 2.0}},
                            ['a', 'b'], taus)
  np.testing.assert_array_equal(rho['E'], [0.5, 0.5, 0.5])
  np.testing.assert_array_equal(rho['F'], [0.0, 0.5, 0.5])


def test_benchmark_score_matches_numpy_trapezoid_and_default_taus():
  assert len(DEFAULT_TAUS) == 100
  assert DEFAULT_TAUS[0] == 1.0 and DEFAULT_TAUS[-1] == 4.0
  rng = np.random.default_rng(0)
  rho = np.sort(rng.integers(0, 9, size=100)) / 8
  trapezoid = getattr(np, 'trapezoid', None) or np.trapz
  assert benchmark_score(rho, DEFAULT_TAUS) == trapezoid(rho, x=DEFAULT_TAUS) / 3
  # Full marks and none.
  assert benchmark_score(np.ones(100), DEFAULT_TAUS) == pytest.approx(1.0)
  assert benchmark_score(np.zeros(100), DEFAULT_TAUS) == 0.0
  with pytest.raises(ValueError):
    benchmark_score([1.0, 1.0], [1.0, 2.0, 3.0])


# --- Speedup ----------------------------------------------------------------


def test_speedups_by_hand():
  budgets = {'a': 1000.0, 'b': 200.0}
  table = {
      'base': {'a': 100.0, 'b': INF},   # b missed: counts as 200 + 1 = 201.
      'X': {'a': 50.0, 'b': NAN},       # b missing: also 201. Ratios 0.5, 1.
      'Y': {'a': 200.0, 'b': 100.5},    # Ratios 2, 0.5.
      'Z': {'a': 25.0},                 # b absent: 201. Ratios 0.25, 1.
  }
  out = speedups(table, 'base', budgets, ['a', 'b'])
  assert out['base'] == pytest.approx(1.0)
  assert out['X'] == pytest.approx(math.sqrt(0.5))      # 0.7071: 29.3% faster.
  assert out['Y'] == pytest.approx(1.0)                 # sqrt(2 x 0.5).
  assert out['Z'] == pytest.approx(0.5)                 # sqrt(0.25 x 1).
  assert percent_faster(out['X']) == pytest.approx(29.289, abs=1e-3)
  assert percent_faster(0.72) == pytest.approx(28.0)
  assert percent_faster(1.25) == pytest.approx(-25.0)
  # Only the given workloads count: on 'a' alone X is 0.5.
  assert speedups(table, 'base', budgets, ['a'])['X'] == pytest.approx(0.5)


def test_speedups_errors():
  table = {'base': {'a': 1.0}, 'X': {'a': INF}}
  with pytest.raises(ValueError, match="known submissions: X, base"):
    speedups(table, 'baselin', {'a': 1.0}, ['a'])
  with pytest.raises(ValueError, match='budget'):
    speedups(table, 'base', {}, ['a'])  # X's miss needs a's budget.


# --- Properties ---------------------------------------------------------------

TIMES = st.one_of(st.floats(1.0, 1000.0), st.just(INF), st.just(NAN))
COLUMNS = ['a', 'b', 'a_v']


@st.composite
def tables(draw, min_size=1):
  names = draw(st.lists(st.sampled_from('PQRSTU'), min_size=min_size,
                        max_size=5, unique=True))
  table = {}
  for name in names:
    row = {}
    for w in COLUMNS:
      if draw(st.booleans()) or w != 'a_v':  # Sometimes no held-out key at all.
        row[w] = draw(TIMES)
    table[name] = row
  return table


@settings(max_examples=200, deadline=None)
@given(tables(), st.sampled_from([V5, V6]))
def test_scores_lie_in_unit_interval(table, version):
  for score in score_table(table, version).values():
    assert 0.0 <= score <= 1.0


@settings(max_examples=200, deadline=None)
@given(tables(), st.sampled_from([V5, V6]))
def test_fastest_everywhere_scores_one(table, version):
  # 'W' beats everyone on every column (base and held-out) by a factor of 2.
  finite = [t for row in table.values() for t in row.values() if math.isfinite(t)]
  best = min(finite, default=1.0) / 2
  table = dict(table, W={w: best for w in COLUMNS})
  assert score_table(table, version)['W'] == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from([V5, V6]), st.data())
def test_faster_times_never_lower_the_score(table, version, data):
  who = data.draw(st.sampled_from(sorted(table)))
  before = score_table(table, version)[who]
  faster = {}
  for w in COLUMNS:
    old = table[who].get(w, NAN)
    if math.isfinite(old):
      faster[w] = old * data.draw(st.floats(0.01, 1.0))
    elif data.draw(st.booleans()):
      faster[w] = data.draw(st.floats(1.0, 1000.0))  # A miss becomes a hit.
    elif w in table[who]:
      faster[w] = old
  after = score_table(dict(table, **{who: faster}), version)[who]
  assert after >= before - 1e-12


@settings(max_examples=200, deadline=None)
@given(tables(), st.sampled_from([V5, V6]), st.randoms(use_true_random=False))
def test_score_does_not_depend_on_submission_order(table, version, rnd):
  names = list(table)
  rnd.shuffle(names)
  shuffled = {n: table[n] for n in names}
  assert score_table(shuffled, version) == score_table(table, version)
  ruled, ruled_shuffled = apply_rules(table, version), apply_rules(shuffled, version)
  for n in names:
    for w, t in ruled[n].items():
      assert same(t, ruled_shuffled[n][w])
