"""Paired comparisons of two settings over seeds, for the results tables: is a difference more than the
spread between seeds? Pure Python, so that the table scripts need nothing beyond memtool."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import mean, stdev

EXACT_SEEDS = 16  # up to 2^16 sign patterns are enumerated; with more seeds they are sampled
SAMPLED_PATTERNS = 2**16


@dataclass(frozen=True)
class Paired:
    """``first − second`` per seed, summarised."""

    seeds: int
    mean_difference: float
    higher: int  # seeds where the first setting's value is higher
    lower: int
    t: float  # paired t statistic (NaN with fewer than two seeds, or differences all alike)
    p_t: float  # two-sided, Student's t with seeds − 1 degrees of freedom
    # two-sided: every seed's difference equally likely either sign; never below 2^(1 − seeds), so three
    # seeds cannot reach 0.05 however large the difference (five: 0.0625, six: 0.031)
    p_sign_flip: float


def paired(first: list[float], second: list[float]) -> Paired:
    """``first[i] − second[i]``, where i is a seed both settings were trained with."""
    differences = [a - b for a, b in zip(first, second, strict=True)]
    n = len(differences)
    average = mean(differences) if differences else math.nan
    spread = stdev(differences) if n > 1 else math.nan
    # differences alike up to rounding (0.9 − 0.8 and 0.3 − 0.2) have no spread to measure against
    alike = n > 1 and spread <= 1e-9 * max(abs(d) for d in differences)
    t = average / (spread / math.sqrt(n)) if n > 1 and not alike else math.nan
    return Paired(
        seeds=n,
        mean_difference=average,
        higher=sum(d > 0 for d in differences),
        lower=sum(d < 0 for d in differences),
        t=t,
        p_t=student_t_two_sided(t, n - 1) if not math.isnan(t) else math.nan,
        p_sign_flip=sign_flip_p(differences),
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p values tested together (the family-wise error stays under the
    level without assuming the tests independent): the i-th smallest is multiplied by (m − i), then each
    is raised to the largest adjusted value before it and capped at 1. NaN stays NaN and counts for
    nothing."""
    tested = sorted((p, index) for index, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted


def sign_flip_p(differences: list[float]) -> float:
    """The share of sign patterns whose mean is at least as far from 0 as the observed one: no
    assumption about the differences' distribution; exact up to ``EXACT_SEEDS`` seeds, sampled beyond."""
    if not differences:
        return math.nan
    observed = abs(sum(differences)) - 1e-12 * sum(abs(d) for d in differences)  # ties count as hits
    n = len(differences)
    if n <= EXACT_SEEDS:
        total = 2**n
        signs = ([1 if pattern >> i & 1 else -1 for i in range(n)] for pattern in range(total))
    else:
        draws = random.Random(0)
        total = SAMPLED_PATTERNS
        patterns = (draws.getrandbits(n) for _ in range(total))
        signs = ([1 if pattern >> i & 1 else -1 for i in range(n)] for pattern in patterns)
    hits = sum(abs(sum(s * d for s, d in zip(sign, differences, strict=True))) >= observed for sign in signs)
    return hits / total if n <= EXACT_SEEDS else (hits + 1) / (total + 1)  # sampled: never claim 0


def student_t_two_sided(t: float, degrees: int) -> float:
    """P(|T| ≥ |t|) for Student's t with ``degrees`` degrees of freedom: I_x(ν/2, 1/2), x = ν/(ν+t²)."""
    return regularized_beta(degrees / (degrees + t * t), degrees / 2, 0.5)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), on the side where it converges fast: in a few
    dozen terms for the degrees of freedom a results table has (the 300-term cap is never reached)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - regularized_beta(1.0 - x, b, a)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * result / a
