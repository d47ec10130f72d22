"""Independent reference for clarion-kpi's BG/NBD and Gamma-Gamma predictions: the published
formulas evaluated directly with scipy's special functions (hyp2f1 for the conditional
expectation). Reads the fitted parameters and customers as JSON on stdin, writes one
prediction per customer as JSON on stdout. Runs under Debian's /usr/bin/python3
(python3-scipy)."""
import json
import math
import sys

from scipy.special import hyp2f1

cases = json.load(sys.stdin)
r, alpha, a, b = cases["bg"]
p, q, gamma = cases["gg"]
unit = cases["unit_days"]
horizon, step, rate = cases["horizon_days"], cases["step_days"], cases["discount_rate"]


def p_alive(x, t_x, T):
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + (a / (b + x - 1.0)) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def expected(t, x, t_x, T):
    """Fader, Hardie & Lee (2005), equation (10)."""
    if t <= 0:
        return 0.0
    hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t))
    first = (a + b + x - 1.0) / (a - 1.0) * (1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    if x == 0:
        return first
    return first / (1.0 + (a / (b + x - 1.0)) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def order_value(x, m):
    if m <= 0:
        x = 0
    return (p * (gamma + m * x)) / (p * x + q - 1.0)


out = []
for x, t_x, T, m in cases["customers"]:
    value = order_value(x, m)
    steps = max(1, math.ceil(horizon / step))
    clv, previous = 0.0, 0.0
    for k in range(1, steps + 1):
        now = expected(min(k * step, horizon) / unit, x, t_x, T)
        clv += value * (now - previous) / (1.0 + rate) ** k
        previous = now
    out.append(
        {
            "p_alive": p_alive(x, t_x, T),
            "expected_purchases": expected(horizon / unit, x, t_x, T),
            "expected_order_value": value,
            "clv": clv,
        }
    )
json.dump({"predictions": out}, sys.stdout)
