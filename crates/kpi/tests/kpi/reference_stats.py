"""Independent reference for clarion-kpi's statistics: statsmodels and scipy compute the same
figures from the same generated cases. Reads the cases as JSON on stdin, writes the answers as
JSON on stdout. Runs under Debian's /usr/bin/python3 (python3-statsmodels, python3-scipy)."""
import json
import sys

from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

cases = json.load(sys.stdin)
alpha = 1.0 - cases["level"]
out = {"wilson": [], "proportions": [], "means": [], "summaries": []}

for x, n in cases["wilson"]:
    low, high = proportion_confint(x, n, alpha=alpha, method="wilson")
    out["wilson"].append([low, high])

for xc, nc, xt, nt in cases["proportions"]:
    # statsmodels compares group 1 minus group 2: the treatment first.
    res = test_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    low, high = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff", alpha=alpha)
    out["proportions"].append({"statistic": res.statistic, "p_value": res.pvalue, "low": low, "high": high})

for control, treatment in cases["means"]:
    t, p, df = ttest_ind(treatment, control, usevar="unequal")
    low, high = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).tconfint_diff(
        alpha=alpha, usevar="unequal"
    )
    out["means"].append({"statistic": t, "p_value": p, "df": df, "low": low, "high": high})

for mc, sc, nc, mt, st, nt in cases["summaries"]:
    t, p = stats.ttest_ind_from_stats(mt, st, nt, mc, sc, nc, equal_var=False)
    out["summaries"].append({"statistic": t, "p_value": p})

json.dump(out, sys.stdout)
