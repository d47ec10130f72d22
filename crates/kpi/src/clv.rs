//! Customer lifetime value: historic (what a customer has brought) and predicted (what it
//! will bring), with the BG/NBD model of purchase frequency (Fader, Hardie & Lee 2005,
//! "Counting Your Customers the Easy Way") and the Gamma-Gamma model of order value (Fader &
//! Hardie 2013, "The Gamma-Gamma Model of Monetary Value").
//!
//! # A customer's summary
//! From a customer's purchases up to `now` ([`summarize`]), with times measured in a
//! [`TimeUnit`] (days or weeks) and purchases grouped by UTC calendar day, so that several
//! orders on one day are one purchase occasion:
//!
//! - **frequency** `x`: repeat purchase days, the number of distinct purchase days minus 1;
//! - **recency** `t_x`: from the first purchase day to the last one;
//! - **age** `T`: from the first purchase day to `now`;
//! - **monetary** `m_x`: the mean amount of the repeat purchase days (each day's amounts
//!   summed; the first day left out, as the model requires), 0 when `x = 0`.
//!
//! # Historic CLV
//! A contact's historic CLV is its net revenue to date (purchases minus refunds; the `clv`
//! trait of clarion-segment). [`HistoricClv::of`] summarises it over a group: count, total,
//! mean and median.
//!
//! # BG/NBD
//! While alive a customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase it drops
//! out with probability p ~ Beta(a, b). With `B` the Beta function and `δ = 1` when `x > 0`,
//! the likelihood of one customer is
//!
//! ```text
//! L(r, α, a, b | x, t_x, T) = B(a, b + x)/B(a, b) · Γ(r + x) αʳ / (Γ(r) (α + T)^(r+x))
//!                           + δ · B(a + 1, b + x − 1)/B(a, b) · Γ(r + x) αʳ / (Γ(r) (α + t_x)^(r+x))
//! ```
//!
//! [`fit_bgnbd`] maximises `Σ ln L` over the customers by L-BFGS (argmin) on the logarithms
//! of the four parameters, with the analytic gradient. Per customer:
//!
//! ```text
//! P(alive | x, t_x, T) = 1 / (1 + δ · a/(b + x − 1) · ((α + T)/(α + t_x))^(r+x))
//!
//! E[Y(h) | x, t_x, T] = (a + b + x − 1)/(a − 1)
//!     · [1 − ((α + T)/(α + T + h))^(r+x) · ₂F₁(r + x, b + x; a + b + x − 1; h/(α + T + h))]
//!     / (1 + δ · a/(b + x − 1) · ((α + T)/(α + t_x))^(r+x))
//! ```
//!
//! the expected purchases in the next `h` units (₂F₁ the Gaussian hypergeometric function,
//! summed as its power series).
//!
//! # Gamma-Gamma
//! A customer's order values are Gamma(p, ν) with ν ~ Gamma(q, γ), independent of the
//! purchase process. Fitted ([`fit_gamma_gamma`]) on the customers with `x > 0` and
//! `m_x > 0`, with the per-customer log-likelihood
//!
//! ```text
//! ln Γ(px + q) − ln Γ(px) − ln Γ(q) + q ln γ + (px − 1) ln m_x + px ln x − (px + q) ln(γ + m_x x)
//! ```
//!
//! and the expected order value `E[M | x, m_x] = p (γ + m_x x) / (p x + q − 1)` (for `x = 0`
//! the population mean `p γ / (q − 1)`; both need `q > 1`).
//!
//! # Predicted CLV
//! Over a horizon of `H` days cut into steps of `s` days (the last one shorter when `s` does
//! not divide `H`), with a discount rate `d` per step ([`ClvSettings`]):
//!
//! ```text
//! CLV = Σ_{k=1..K} E[M] · (E[Y(t_k)] − E[Y(t_{k−1})]) / (1 + d)^k,   t_k = min(k s, H),  K = ⌈H/s⌉
//! ```
//!
//! with the horizon converted to the fit's time unit.

use std::collections::BTreeMap;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};
use utoipa::ToSchema;

use crate::KpiError;

const DAY_MILLIS: i64 = 86_400_000;

/// The unit in which recency, age and horizons are measured for the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    #[default]
    Days,
    Weeks,
}

impl TimeUnit {
    /// Days in one unit.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }
}

/// What the models know about one customer (see the module docs); times in one [`TimeUnit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerSummary {
    /// Repeat purchase days `x`.
    pub frequency: u32,
    /// From the first to the last purchase day, `t_x`.
    pub recency: f64,
    /// From the first purchase day to the end of the observation, `T`.
    pub age: f64,
    /// The mean amount of the repeat purchase days; 0 without one.
    pub monetary: f64,
}

/// A customer's summary at `now` from its purchases as `(occurred_at in Unix milliseconds,
/// amount)`; purchases after `now` are left out, and a customer without a purchase by then
/// has none.
pub fn summarize(
    purchases: &[(i64, f64)],
    now_millis: i64,
    unit: TimeUnit,
) -> Option<CustomerSummary> {
    let mut days: BTreeMap<i64, f64> = BTreeMap::new();
    for &(at, amount) in purchases.iter().filter(|(at, _)| *at <= now_millis) {
        *days.entry(at.div_euclid(DAY_MILLIS)).or_insert(0.0) += amount;
    }
    let days: Vec<(i64, f64)> = days.into_iter().collect();
    summarize_days(&days, now_millis, unit)
}

/// A customer's summary at `now` from its purchase days as `(day number since 1970-01-01
/// UTC, that day's total amount)`, in increasing day order; `None` without a day.
pub fn summarize_days(
    days: &[(i64, f64)],
    now_millis: i64,
    unit: TimeUnit,
) -> Option<CustomerSummary> {
    let (first, _) = *days.first()?;
    let (last, _) = *days.last()?;
    let frequency = u32::try_from(days.len() - 1).unwrap_or(u32::MAX);
    let repeat_total: f64 = days.iter().skip(1).map(|(_, amount)| amount).sum();
    let unit_millis = unit.days() * DAY_MILLIS as f64;
    Some(CustomerSummary {
        frequency,
        recency: (last - first) as f64 * DAY_MILLIS as f64 / unit_millis,
        age: (now_millis - first * DAY_MILLIS) as f64 / unit_millis,
        monetary: if frequency > 0 {
            repeat_total / f64::from(frequency)
        } else {
            0.0
        },
    })
}

/// Historic CLV over a group of contacts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoricClv {
    pub contacts: u64,
    pub total: f64,
    pub mean: f64,
    /// The middle value, or the mean of the two middle values.
    pub median: f64,
}

impl HistoricClv {
    /// Count, total, mean and median of the contacts' net revenues; `None` for no contacts.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let total: f64 = sorted.iter().sum();
        Some(HistoricClv {
            contacts: n as u64,
            total,
            mean: total / n as f64,
            median,
        })
    }
}

/// How a fit went: the log-likelihood at the optimum and the optimizer's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FitQuality {
    /// `Σ ln L` over the customers the model was fitted on.
    pub log_likelihood: f64,
    /// How many customers that was.
    pub customers: u64,
    pub iterations: u64,
}

/// Fitted BG/NBD parameters, in the fit's time unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Fitted Gamma-Gamma parameters (`gamma` is the scale, called `v` by some tools).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// `ln(eᵘ + eᵛ)` without overflow.
fn ln_add_exp(u: f64, v: f64) -> f64 {
    let (high, low) = if u >= v { (u, v) } else { (v, u) };
    high + (low - high).exp().ln_1p()
}

/// `Σ_{k<x} ln(s + k)` and `Σ_{k<x} 1/(s + k)` for x = 0..=max: `ln Γ(s + x) − ln Γ(s)` and
/// `ψ(s + x) − ψ(s)` for whole `x`.
fn rising(s: f64, max: usize) -> (Vec<f64>, Vec<f64>) {
    let mut ln = Vec::with_capacity(max + 1);
    let mut inv = Vec::with_capacity(max + 1);
    let (mut l, mut d) = (0.0, 0.0);
    for k in 0..=max {
        ln.push(l);
        inv.push(d);
        let term = s + k as f64;
        l += term.ln();
        d += 1.0 / term;
    }
    (ln, inv)
}

impl BgNbd {
    /// `ln(δ · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))`: the log-odds of having dropped out.
    fn dropout_log_odds(&self, c: &CustomerSummary) -> Option<f64> {
        (c.frequency > 0).then(|| {
            let x = f64::from(c.frequency);
            self.a.ln() - (self.b + x - 1.0).ln()
                + (self.r + x) * ((self.alpha + c.age).ln() - (self.alpha + c.recency).ln())
        })
    }

    /// The log-likelihood of one customer (formula in the module docs).
    pub fn customer_log_likelihood(&self, c: &CustomerSummary) -> f64 {
        let x = f64::from(c.frequency);
        let lg = |v: f64| ln_gamma(v);
        let a1 = lg(self.r + x) - lg(self.r) + self.r * self.alpha.ln();
        let a2 = lg(self.a + self.b) + lg(self.b + x) - lg(self.b) - lg(self.a + self.b + x);
        let a3 = -(self.r + x) * (self.alpha + c.age).ln();
        match self.dropout_log_odds(c) {
            Some(odds) => a1 + a2 + ln_add_exp(a3, a3 + odds),
            None => a1 + a2 + a3,
        }
    }

    /// `Σ ln L` over the customers.
    pub fn log_likelihood(&self, customers: &[CustomerSummary]) -> f64 {
        customers
            .iter()
            .map(|c| self.customer_log_likelihood(c))
            .sum()
    }

    /// The probability that the customer is still alive at the end of its observation.
    pub fn p_alive(&self, c: &CustomerSummary) -> f64 {
        match self.dropout_log_odds(c) {
            // 1 / (1 + e^odds), written to stay exact for large odds of either sign.
            Some(odds) if odds > 0.0 => (-odds).exp() / (1.0 + (-odds).exp()),
            Some(odds) => 1.0 / (1.0 + odds.exp()),
            None => 1.0,
        }
    }

    /// The expected number of purchases in the next `h` units (module docs).
    pub fn expected_purchases(&self, c: &CustomerSummary, h: f64) -> f64 {
        if h <= 0.0 {
            return 0.0;
        }
        let x = f64::from(c.frequency);
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let z = h / (alpha + c.age + h);
        let power = ((r + x) * ((alpha + c.age).ln() - (alpha + c.age + h).ln())).exp();
        let bracket = 1.0 - power * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let numerator = (a + b + x - 1.0) / (a - 1.0) * bracket;
        match self.dropout_log_odds(c) {
            Some(odds) => numerator / (1.0 + odds.exp()),
            None => numerator,
        }
    }
}

/// The Gaussian hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1 by its power series.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..1_000_000 {
        let k = f64::from(k);
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-16 * sum.abs() {
            break;
        }
    }
    sum
}

impl GammaGamma {
    /// The log-likelihood of one repeat customer (module docs); customers without a repeat
    /// purchase or with no positive amount add nothing.
    pub fn customer_log_likelihood(&self, c: &CustomerSummary) -> f64 {
        if c.frequency == 0 || c.monetary <= 0.0 {
            return 0.0;
        }
        let (p, q, g) = (self.p, self.q, self.gamma);
        let x = f64::from(c.frequency);
        let m = c.monetary;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * g.ln()
            + (p * x - 1.0) * m.ln()
            + p * x * x.ln()
            - (p * x + q) * (g + m * x).ln()
    }

    /// `Σ ln L` over the repeat customers.
    pub fn log_likelihood(&self, customers: &[CustomerSummary]) -> f64 {
        customers
            .iter()
            .map(|c| self.customer_log_likelihood(c))
            .sum()
    }

    /// The expected value of the customer's future orders; `None` when `q ≤ 1` (the model
    /// then has no finite mean).
    pub fn expected_order_value(&self, c: &CustomerSummary) -> Option<f64> {
        if self.q <= 1.0 {
            return None;
        }
        let x = if c.monetary > 0.0 {
            f64::from(c.frequency)
        } else {
            0.0
        };
        Some(self.p * (self.gamma + c.monetary * x) / (self.p * x + self.q - 1.0))
    }
}

/// The BG/NBD parameters that maximise the likelihood of `customers`, with the fit's quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BgNbdFit {
    pub params: BgNbd,
    pub quality: FitQuality,
}

/// The Gamma-Gamma parameters that maximise the likelihood of the repeat customers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GammaGammaFit {
    pub params: GammaGamma,
    pub quality: FitQuality,
}

/// The negative mean BG/NBD log-likelihood over log-parameters, with its gradient; the
/// rising factorials of every whole `x` are computed once per evaluation.
struct BgNbdProblem<'a> {
    customers: &'a [CustomerSummary],
    max_x: usize,
}

impl BgNbdProblem<'_> {
    fn evaluate(&self, theta: &[f64], want_gradient: bool) -> (f64, [f64; 4]) {
        let [r, alpha, a, b] = [
            theta[0].exp(),
            theta[1].exp(),
            theta[2].exp(),
            theta[3].exp(),
        ];
        let (g_r, d_r) = rising(r, self.max_x);
        let (g_b, d_b) = rising(b, self.max_x);
        let (g_ab, d_ab) = rising(a + b, self.max_x);
        let ln_alpha = alpha.ln();
        let (ln_a, mut ll) = (a.ln(), 0.0);
        let mut grad = [0.0; 4];
        for c in self.customers {
            let xi = c.frequency as usize;
            let x = f64::from(c.frequency);
            let ln_at = (alpha + c.age).ln();
            let a3 = -(r + x) * ln_at;
            let base = g_r[xi] + r * ln_alpha + g_b[xi] - g_ab[xi];
            let (li, w, ln_atx) = if c.frequency > 0 {
                let ln_atx = (alpha + c.recency).ln();
                let a4 = ln_a - (b + x - 1.0).ln() - (r + x) * ln_atx;
                let total = ln_add_exp(a3, a4);
                (base + total, (a4 - total).exp(), ln_atx)
            } else {
                (base + a3, 0.0, 0.0)
            };
            ll += li;
            if want_gradient {
                let stay = 1.0 - w;
                grad[0] += d_r[xi] + ln_alpha - stay * ln_at - w * ln_atx;
                grad[1] += r / alpha
                    - stay * (r + x) / (alpha + c.age)
                    - w * (r + x) / (alpha + c.recency);
                grad[2] += -d_ab[xi] + w / a;
                grad[3] += d_b[xi]
                    - d_ab[xi]
                    - if c.frequency > 0 {
                        w / (b + x - 1.0)
                    } else {
                        0.0
                    };
            }
        }
        let n = self.customers.len() as f64;
        // Chain rule to log-parameters; minimise the negative mean.
        let params = [r, alpha, a, b];
        let mut out = [0.0; 4];
        for i in 0..4 {
            out[i] = -grad[i] * params[i] / n;
        }
        (-ll / n, out)
    }
}

impl CostFunction for BgNbdProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(theta, false).0)
    }
}

impl Gradient for BgNbdProblem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(theta, true).1.to_vec())
    }
}

/// The negative mean Gamma-Gamma log-likelihood over log-parameters, with its gradient.
struct GammaGammaProblem {
    /// `(x, m_x)` of the repeat customers.
    customers: Vec<(f64, f64)>,
}

impl GammaGammaProblem {
    fn evaluate(&self, theta: &[f64], want_gradient: bool) -> (f64, [f64; 3]) {
        let [p, q, g] = [theta[0].exp(), theta[1].exp(), theta[2].exp()];
        let (mut ll, mut grad) = (0.0, [0.0; 3]);
        let (lg_q, ln_g) = (ln_gamma(q), g.ln());
        let psi_q = if want_gradient { digamma(q) } else { 0.0 };
        for &(x, m) in &self.customers {
            let px = p * x;
            let ln_gmx = (g + m * x).ln();
            ll += ln_gamma(px + q) - ln_gamma(px) - lg_q
                + q * ln_g
                + (px - 1.0) * m.ln()
                + px * x.ln()
                - (px + q) * ln_gmx;
            if want_gradient {
                let psi_pxq = digamma(px + q);
                grad[0] += x * (psi_pxq - digamma(px) + m.ln() + x.ln() - ln_gmx);
                grad[1] += psi_pxq - psi_q + ln_g - ln_gmx;
                grad[2] += q / g - (px + q) / (g + m * x);
            }
        }
        let n = self.customers.len() as f64;
        let params = [p, q, g];
        let mut out = [0.0; 3];
        for i in 0..3 {
            out[i] = -grad[i] * params[i] / n;
        }
        (-ll / n, out)
    }
}

impl CostFunction for GammaGammaProblem {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(theta, false).0)
    }
}

impl Gradient for GammaGammaProblem {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(theta, true).1.to_vec())
    }
}

/// Minimises `problem` from `start` by L-BFGS; the optimum's log-parameters and iterations.
fn minimise<P>(problem: P, start: Vec<f64>, what: &str) -> Result<(Vec<f64>, u64), KpiError>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let failed = |message: String| KpiError::Model {
        model: what.to_owned(),
        message,
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .and_then(|s| s.with_tolerance_cost(1e-14))
        .map_err(|e| failed(e.to_string()))?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(start).max_iters(500))
        .run()
        .map_err(|e| failed(format!("the optimizer failed: {e}")))?;
    let iterations = result.state.get_iter();
    let best = result
        .state
        .get_best_param()
        .cloned()
        .ok_or_else(|| failed("the optimizer found no parameters".to_owned()))?;
    if best.iter().any(|v| !v.is_finite()) {
        return Err(failed(
            "the likelihood has no finite maximum for these customers".to_owned(),
        ));
    }
    Ok((best, iterations))
}

/// Fits BG/NBD to `customers` by maximum likelihood (module docs). Refused without any
/// customer, or when nobody made a repeat purchase (the dropout process is then unknowable).
pub fn fit_bgnbd(customers: &[CustomerSummary]) -> Result<BgNbdFit, KpiError> {
    let what = "bg_nbd";
    if customers.iter().all(|c| c.frequency == 0) {
        return Err(KpiError::Model {
            model: what.to_owned(),
            message: "needs customers with at least one repeat purchase".to_owned(),
        });
    }
    if let Some(c) = customers.iter().find(|c| {
        !(c.recency.is_finite() && c.age.is_finite() && c.recency >= 0.0 && c.age >= c.recency)
    }) {
        return Err(KpiError::invalid(
            "customers",
            format!(
                "recency and age must satisfy 0 <= recency <= age, not {} and {}",
                c.recency, c.age
            ),
        ));
    }
    let max_x = customers
        .iter()
        .map(|c| c.frequency as usize)
        .max()
        .unwrap_or(0);
    let mean_age = customers.iter().map(|c| c.age).sum::<f64>() / customers.len() as f64;
    // r = a = b = 1 and α at the customers' time scale: the likelihood is then well
    // conditioned whatever the unit.
    let start = vec![0.0, mean_age.max(1e-3).ln(), 0.0, 0.0];
    let (theta, iterations) = minimise(BgNbdProblem { customers, max_x }, start, what)?;
    let params = BgNbd {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    };
    Ok(BgNbdFit {
        params,
        quality: FitQuality {
            log_likelihood: params.log_likelihood(customers),
            customers: customers.len() as u64,
            iterations,
        },
    })
}

/// Fits Gamma-Gamma on the customers with a repeat purchase of positive value (module docs).
pub fn fit_gamma_gamma(customers: &[CustomerSummary]) -> Result<GammaGammaFit, KpiError> {
    let what = "gamma_gamma";
    let repeat: Vec<(f64, f64)> = customers
        .iter()
        .filter(|c| c.frequency > 0 && c.monetary > 0.0 && c.monetary.is_finite())
        .map(|c| (f64::from(c.frequency), c.monetary))
        .collect();
    if repeat.len() < 2 {
        return Err(KpiError::Model {
            model: what.to_owned(),
            message: format!(
                "needs at least 2 customers with a repeat purchase of positive value, not {}",
                repeat.len()
            ),
        });
    }
    let mean_m = repeat.iter().map(|(_, m)| m).sum::<f64>() / repeat.len() as f64;
    let start = vec![0.0, 0.0, mean_m.ln()];
    let count = repeat.len() as u64;
    let (theta, iterations) = minimise(GammaGammaProblem { customers: repeat }, start, what)?;
    let params = GammaGamma {
        p: theta[0].exp(),
        q: theta[1].exp(),
        gamma: theta[2].exp(),
    };
    Ok(GammaGammaFit {
        params,
        quality: FitQuality {
            log_likelihood: params.log_likelihood(customers),
            customers: count,
            iterations,
        },
    })
}

/// The horizon and discounting of predicted CLV, and the unit the models were fitted in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClvSettings {
    /// Days over which value is predicted.
    pub horizon_days: f64,
    /// Length of one discounting step, in days.
    pub step_days: f64,
    /// The discount rate per step (0.01 = 1% per 30 days by default).
    pub discount_rate: f64,
    /// The unit of recency, age and the fitted parameters.
    pub unit: TimeUnit,
}

impl Default for ClvSettings {
    fn default() -> Self {
        ClvSettings {
            horizon_days: 365.0,
            step_days: 30.0,
            discount_rate: 0.01,
            unit: TimeUnit::Days,
        }
    }
}

impl ClvSettings {
    /// Checks the horizon, step and rate; the error names the setting.
    pub fn check(&self) -> Result<(), KpiError> {
        if !(self.horizon_days.is_finite()
            && self.horizon_days > 0.0
            && self.horizon_days <= 36_500.0)
        {
            return Err(KpiError::invalid(
                "horizon_days",
                format!(
                    "must be more than 0 and at most 36500, not {}",
                    self.horizon_days
                ),
            ));
        }
        if !(self.step_days.is_finite() && self.step_days > 0.0) {
            return Err(KpiError::invalid(
                "step_days",
                format!("must be more than 0, not {}", self.step_days),
            ));
        }
        if !(self.discount_rate.is_finite()
            && self.discount_rate >= 0.0
            && self.discount_rate < 1.0)
        {
            return Err(KpiError::invalid(
                "discount_rate",
                format!("must be at least 0 and below 1, not {}", self.discount_rate),
            ));
        }
        Ok(())
    }
}

/// The predictions for one customer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    pub p_alive: f64,
    /// Expected purchases over the horizon.
    pub expected_purchases: f64,
    /// Expected value of one future order; `None` when the Gamma-Gamma fit has `q ≤ 1`.
    pub expected_order_value: Option<f64>,
    /// Discounted expected value over the horizon; `None` with the order value.
    pub predicted_clv: Option<f64>,
}

/// The predictions for `customer` from the two fitted models (module docs).
pub fn predict(
    bg: &BgNbd,
    gg: &GammaGamma,
    customer: &CustomerSummary,
    settings: &ClvSettings,
) -> Prediction {
    let unit = settings.unit.days();
    let horizon = settings.horizon_days / unit;
    let expected_order_value = gg.expected_order_value(customer);
    let predicted_clv = expected_order_value.map(|value| {
        let steps = (settings.horizon_days / settings.step_days).ceil().max(1.0) as u32;
        let mut previous = 0.0;
        let mut clv = 0.0;
        for k in 1..=steps {
            let t = (f64::from(k) * settings.step_days).min(settings.horizon_days) / unit;
            let purchases = bg.expected_purchases(customer, t);
            clv += value * (purchases - previous) / (1.0 + settings.discount_rate).powi(k as i32);
            previous = purchases;
        }
        clv
    });
    Prediction {
        p_alive: bg.p_alive(customer),
        expected_purchases: bg.expected_purchases(customer, horizon),
        expected_order_value,
        predicted_clv,
    }
}
