"""memtool.stats: the paired comparison the results tables use, against values from statistical tables."""

import math

import pytest

from memtool.stats import holm, paired, regularized_beta, sign_flip_p, student_t_two_sided


@pytest.mark.parametrize(
    ("t", "degrees", "p"),
    [
        (2.228, 10, 0.05),
        (12.706, 1, 0.05),
        (2.0, 1, 0.2952),
        (3.707, 6, 0.01),
        (1.96, 100_000, 0.05),
        (0.0, 5, 1.0),
    ],
)
def test_student_t_matches_the_tables(t: float, degrees: int, p: float) -> None:
    assert student_t_two_sided(t, degrees) == pytest.approx(p, abs=2e-4)
    assert student_t_two_sided(-t, degrees) == student_t_two_sided(t, degrees)


def test_regularized_beta_at_its_closed_forms() -> None:
    assert regularized_beta(0.3, 1, 1) == pytest.approx(0.3)  # uniform
    assert regularized_beta(0.3, 2, 1) == pytest.approx(0.09)  # x^a when b = 1
    assert regularized_beta(0.3, 1, 3) == pytest.approx(1 - 0.7**3)  # 1 - (1 - x)^b when a = 1


def test_the_sign_flip_test_counts_every_pattern() -> None:
    assert sign_flip_p([1.0] * 5) == pytest.approx(2 / 32)  # all positive or all negative
    assert sign_flip_p([1.0, -1.0]) == 1.0  # a mean of 0: every pattern is as far
    assert sign_flip_p([3.0, 1.0]) == pytest.approx(0.5)  # ±(3+1) of the four; ±(3−1) not
    assert 0 < sign_flip_p([0.5] * 20) < 1e-3  # sampled beyond 16 seeds


def test_a_paired_comparison_of_two_settings() -> None:
    found = paired([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 3.5, 2.0])  # differences 0.5, 1, -0.5, 2
    assert found.seeds == 4 and (found.higher, found.lower) == (3, 1)
    assert found.mean_difference == pytest.approx(0.75)
    assert found.t == pytest.approx(0.75 / (math.sqrt(1.0833333) / 2), rel=1e-5)
    assert found.p_sign_flip == pytest.approx(6 / 16)  # |±0.5 ± 1 ± 0.5 ± 2| ≥ 3 in 3 patterns a side
    assert math.isnan(paired([1.0], [0.0]).t)
    alike = paired([0.9, 0.8, 0.7, 0.3], [0.8, 0.7, 0.6, 0.2])  # 0.1 each, up to rounding: no spread
    assert math.isnan(alike.t) and math.isnan(alike.p_t) and alike.p_sign_flip == pytest.approx(2 / 16)


def test_holm_multiplies_the_ith_smallest_by_the_tests_left_and_keeps_the_order() -> None:
    # sorted 0.01, 0.02, 0.03, 0.5: × 4, 3, 2, 1 = 0.04, 0.06, 0.06, 0.5 (the third raised to the second's)
    adjusted = holm([0.03, 0.5, 0.01, 0.02])
    assert adjusted == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.4, 0.9]) == pytest.approx([0.8, 0.9])  # capped at 1, never below an earlier one
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    nan_kept = holm([0.01, math.nan, 0.04])  # an untestable metric is no test: two tests, not three
    assert (
        nan_kept[0] == pytest.approx(0.02) and math.isnan(nan_kept[1]) and nan_kept[2] == pytest.approx(0.04)
    )
