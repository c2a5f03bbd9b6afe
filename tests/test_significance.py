import pytest
from scipy import stats

from heron.errors import HeronError
from heron.eval.significance import paired_test


def test_matches_scipy_on_common_queries():
    a = {"q1": 0.1, "q2": 0.4, "q3": 0.35, "q4": 0.8, "q5": 0.2, "only_a": 1.0}
    b = {"q1": 0.3, "q2": 0.5, "q3": 0.30, "q4": 0.9, "q5": 0.6, "only_b": 0.0}
    r = paired_test(a, b)
    xs, ys = [a[q] for q in sorted(set(a) & set(b))], [b[q] for q in sorted(set(a) & set(b))]
    assert r.n == 5
    assert r.delta == pytest.approx(sum(ys) / 5 - sum(xs) / 5)
    assert r.t_pvalue == pytest.approx(stats.ttest_rel(ys, xs).pvalue)
    assert r.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(ys, xs).pvalue)
    assert 0 < r.t_pvalue < 1


def test_identical_runs_give_p_one():
    a = {"q1": 0.5, "q2": 0.1}
    r = paired_test(a, dict(a))
    assert (r.delta, r.t_pvalue, r.wilcoxon_pvalue) == (0.0, 1.0, 1.0)


def test_too_few_queries():
    with pytest.raises(HeronError, match="at least 2"):
        paired_test({"q": 1.0}, {"q": 0.0})
