"""Paired significance tests between two runs' per-query metric values.

Example::

    >>> r = paired_test({"a": 0.1, "b": 0.5, "c": 0.3}, {"a": 0.2, "b": 0.7, "c": 0.6})
    >>> round(r.delta, 3)
    0.2
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from heron.errors import HeronError


@dataclass
class PairedTest:
    """Result of comparing system B against system A on the same queries."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired_test(a: dict[str, float], b: dict[str, float]) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test (two-sided) over the queries both runs scored."""
    from scipy import stats  # imported here: scipy.stats takes about a second to import, most commands need none

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise HeronError(f"a paired test needs at least 2 common queries, got {len(common)}")
    xs = [a[q] for q in common]
    ys = [b[q] for q in common]
    diffs = [y - x for x, y in zip(xs, ys)]
    mean_a, mean_b = sum(xs) / len(xs), sum(ys) / len(ys)
    if all(d == 0 for d in diffs):
        t_stat, t_p, w_stat, w_p = 0.0, 1.0, 0.0, 1.0
    else:
        t = stats.ttest_rel(ys, xs)
        t_stat, t_p = float(t.statistic), float(t.pvalue)
        if math.isnan(t_p):  # constant non-zero differences: infinitely significant
            t_stat, t_p = math.copysign(math.inf, mean_b - mean_a), 0.0
        w = stats.wilcoxon(ys, xs, zero_method="wilcox")
        w_stat, w_p = float(w.statistic), float(w.pvalue)
    return PairedTest(
        n=len(common), mean_a=mean_a, mean_b=mean_b, delta=mean_b - mean_a,
        t_statistic=t_stat, t_pvalue=t_p, wilcoxon_statistic=w_stat, wilcoxon_pvalue=w_p,
    )
