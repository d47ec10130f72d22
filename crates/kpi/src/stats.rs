//! The statistics behind every reported rate and comparison.
//!
//! All intervals are two-sided at a [`ConfidenceLevel`] (95% unless configured); `z` below is
//! the standard normal quantile `Φ⁻¹(1 − α/2)` and `t(df)` the Student t quantile
//! `T⁻¹_df(1 − α/2)`, with `α = 1 − level`. Distributions come from `statrs`.
//!
//! # Rates
//! [`rate`] is `numerator / denominator`, and `None` when the denominator is 0: a rate of an
//! empty group is unknown, never 0 or NaN.
//!
//! # Wilson interval of a proportion
//! For `x` successes in `n` trials, `p̂ = x / n` ([`wilson`]):
//!
//! ```text
//! centre = (p̂ + z²/(2n)) / (1 + z²/n)
//! half   = z / (1 + z²/n) · √( p̂(1 − p̂)/n + z²/(4n²) )
//! [centre − half, centre + half]   (clamped to [0, 1]; None when n = 0)
//! ```
//!
//! Unlike the Wald interval it stays inside [0, 1] and keeps its coverage for rates near 0
//! (Wilson 1927; Newcombe 1998).
//!
//! # Comparing two groups
//! Both comparisons take a control (the holdout, or the first segment) and a treatment and
//! answer a [`Comparison`]: `Δ = m_t − m_c`, its standard error `se`, the interval
//! `Δ ± crit · se`, the two-sided p-value of `Δ / se`, and `significant = p < α`, which holds
//! exactly when the interval excludes 0. Below [`ComparisonSettings::min_sample`] in either
//! group, or when neither group varies (`se = 0`), there is no verdict: `None`, shown as
//! "not enough data".
//!
//! **Two proportions** ([`compare_proportions`]; conversion rates, large-sample Wald z-test,
//! unpooled so that the test and the interval agree):
//!
//! ```text
//! se = √( p_t(1 − p_t)/n_t + p_c(1 − p_c)/n_c ),   crit = z,   p = 2·(1 − Φ(|Δ/se|))
//! ```
//!
//! **Two means** ([`compare_means`]; revenue per contact, Welch's t-test from the groups'
//! mean, sample standard deviation `s` and size `n`), with `v = s²/n` per group:
//!
//! ```text
//! se = √(v_t + v_c)
//! df = (v_t + v_c)² / ( v_t²/(n_t − 1) + v_c²/(n_c − 1) )      (Welch-Satterthwaite)
//! crit = t(df),   p = 2·(1 − T_df(|Δ/se|))
//! ```
//!
//! **Relative lift** (both comparisons; `None` when the control's value is 0): `L = m_t/m_c − 1`,
//! with the delta-method variance of the ratio of two independent means
//!
//! ```text
//! Var(L) ≈ v_t / m_c² + m_t² · v_c / m_c⁴,   interval L ± crit · √Var(L)
//! ```
//!
//! where for proportions `v = p(1 − p)/n`. This is the frequentist engine GrowthBook
//! documents; its published case (control 0.41 / sd 3.9 / n 3407, treatment 0.70 / 6.2 / 3461)
//! is in this crate's tests.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use utoipa::ToSchema;

use crate::KpiError;

/// The confidence level of two-sided intervals, strictly between 0 and 1; a difference is
/// significant when its p-value is below `1 − level`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct ConfidenceLevel(f64);

impl ConfidenceLevel {
    /// 95%, the default everywhere.
    pub const NINETY_FIVE: ConfidenceLevel = ConfidenceLevel(0.95);

    /// A level such as 0.95; refused unless `0 < level < 1`.
    pub fn new(level: f64) -> Result<Self, KpiError> {
        if level.is_finite() && level > 0.0 && level < 1.0 {
            Ok(ConfidenceLevel(level))
        } else {
            Err(KpiError::invalid(
                "confidence_level",
                format!("must be strictly between 0 and 1 (such as 0.95), not {level}"),
            ))
        }
    }

    /// The level as a number, e.g. 0.95.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The significance threshold `α = 1 − level`.
    pub fn alpha(self) -> f64 {
        1.0 - self.0
    }

    /// The two-sided standard normal critical value `Φ⁻¹(1 − α/2)` (1.95996... at 95%).
    pub fn z(self) -> f64 {
        standard_normal().inverse_cdf(1.0 - self.alpha() / 2.0)
    }

    /// The two-sided Student t critical value `T⁻¹_df(1 − α/2)`; `df` must be positive.
    fn t(self, df: f64) -> Option<f64> {
        let t = StudentsT::new(0.0, 1.0, df).ok()?;
        Some(t.inverse_cdf(1.0 - self.alpha() / 2.0))
    }
}

impl Default for ConfidenceLevel {
    fn default() -> Self {
        ConfidenceLevel::NINETY_FIVE
    }
}

impl TryFrom<f64> for ConfidenceLevel {
    type Error = KpiError;

    fn try_from(level: f64) -> Result<Self, KpiError> {
        ConfidenceLevel::new(level)
    }
}

impl From<ConfidenceLevel> for f64 {
    fn from(level: ConfidenceLevel) -> f64 {
        level.0
    }
}

/// `numerator / denominator`, or `None` when the denominator is 0.
pub fn rate(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// A two-sided confidence interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// `estimate ± half_width`.
    fn around(estimate: f64, half_width: f64) -> Self {
        Interval {
            low: estimate - half_width,
            high: estimate + half_width,
        }
    }

    /// Whether `value` lies inside the interval, ends included.
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// The Wilson score interval of `successes` out of `trials` at `level` (formula in the
/// module docs); `None` when `trials` is 0 or `successes` exceeds `trials`.
pub fn wilson(successes: u64, trials: u64, level: ConfidenceLevel) -> Option<Interval> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z = level.z();
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// A rate with its Wilson interval, as reports show every proportion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateEstimate {
    pub numerator: u64,
    pub denominator: u64,
    /// `numerator / denominator`.
    pub rate: f64,
    /// The Wilson interval of the rate at the report's confidence level.
    pub interval: Interval,
}

impl RateEstimate {
    /// `numerator / denominator` with its Wilson interval; `None` when the denominator is 0
    /// or smaller than the numerator.
    pub fn new(numerator: u64, denominator: u64, level: ConfidenceLevel) -> Option<Self> {
        let interval = wilson(numerator, denominator, level)?;
        Some(RateEstimate {
            numerator,
            denominator,
            rate: numerator as f64 / denominator as f64,
            interval,
        })
    }
}

/// A group's count of successes (converters) out of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

impl Proportion {
    pub fn new(successes: u64, trials: u64) -> Self {
        Proportion { successes, trials }
    }
}

/// A group's mean, sample standard deviation (divisor `n − 1`) and size, which is all
/// Welch's test needs, so reports can compare from roll-ups of `n`, `Σx` and `Σx²`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub mean: f64,
    pub sd: f64,
    pub n: u64,
}

impl Summary {
    pub fn new(mean: f64, sd: f64, n: u64) -> Self {
        Summary { mean, sd, n }
    }

    /// From the count, sum and sum of squares of the values: `mean = Σx/n`,
    /// `sd = √((Σx² − (Σx)²/n) / (n − 1))` (0 for a single value). `None` when `n` is 0.
    pub fn from_sums(n: u64, sum: f64, sum_of_squares: f64) -> Option<Self> {
        if n == 0 {
            return None;
        }
        let count = n as f64;
        let mean = sum / count;
        let sd = if n > 1 {
            // Rounding can leave a tiny negative sum of squared deviations for constant values.
            ((sum_of_squares - sum * mean) / (count - 1.0))
                .max(0.0)
                .sqrt()
        } else {
            0.0
        };
        Some(Summary { mean, sd, n })
    }

    /// From the values themselves (two passes, so exact to rounding). `None` when empty.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        let sd = if values.len() > 1 {
            (values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (count - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Summary {
            mean,
            sd,
            n: values.len() as u64,
        })
    }
}

/// How comparisons decide: the confidence level and the smallest group that gets a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComparisonSettings {
    pub level: ConfidenceLevel,
    /// Each group needs at least this many members (at least 2) for a verdict.
    pub min_sample: u64,
}

impl ComparisonSettings {
    /// Settings at `level` with `min_sample`; a minimum below 2 is refused (a sample standard
    /// deviation needs two values).
    pub fn new(level: ConfidenceLevel, min_sample: u64) -> Result<Self, KpiError> {
        if min_sample < 2 {
            return Err(KpiError::invalid(
                "min_sample",
                format!("must be at least 2, not {min_sample}"),
            ));
        }
        Ok(ComparisonSettings { level, min_sample })
    }
}

impl Default for ComparisonSettings {
    /// 95% and at least 100 per group.
    fn default() -> Self {
        ComparisonSettings {
            level: ConfidenceLevel::NINETY_FIVE,
            min_sample: 100,
        }
    }
}

/// The test a [`Comparison`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two proportions, unpooled Wald z-test.
    TwoProportionZ,
    /// Two means, Welch's t-test with Welch-Satterthwaite degrees of freedom.
    WelchT,
}

/// The relative lift `m_t / m_c − 1` with its delta-method interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RelativeLift {
    pub lift: f64,
    pub interval: Interval,
}

/// The verdict of a two-group comparison (formulas in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    pub method: Method,
    /// The control's rate or mean.
    pub control: f64,
    /// The treatment's rate or mean.
    pub treatment: f64,
    /// `treatment − control`.
    pub difference: f64,
    /// The interval of the difference at `level`.
    pub difference_interval: Interval,
    /// The standard error of the difference.
    pub standard_error: f64,
    /// The test statistic `difference / standard_error` (z or t).
    pub statistic: f64,
    /// Welch-Satterthwaite degrees of freedom; absent for the z-test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degrees_of_freedom: Option<f64>,
    /// The two-sided p-value of the difference.
    pub p_value: f64,
    /// `treatment / control − 1` with its interval; absent when the control is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_lift: Option<RelativeLift>,
    /// The confidence level of the intervals.
    pub level: f64,
    /// `p_value < 1 − level`: the interval of the difference excludes 0.
    pub significant: bool,
}

/// Compares the treatment's proportion with the control's (two-proportion z-test); `None`
/// when either group is below the minimum sample, a count exceeds its group, or neither
/// group varies.
pub fn compare_proportions(
    control: Proportion,
    treatment: Proportion,
    settings: &ComparisonSettings,
) -> Option<Comparison> {
    if control.trials < settings.min_sample
        || treatment.trials < settings.min_sample
        || control.successes > control.trials
        || treatment.successes > treatment.trials
    {
        return None;
    }
    let group = |p: Proportion| {
        let rate = p.successes as f64 / p.trials as f64;
        (rate, rate * (1.0 - rate) / p.trials as f64)
    };
    let (m_c, v_c) = group(control);
    let (m_t, v_t) = group(treatment);
    let z = settings.level.z();
    compare(
        Method::TwoProportionZ,
        (m_c, v_c),
        (m_t, v_t),
        z,
        None,
        settings.level,
        |stat| 2.0 * standard_normal().sf(stat.abs()),
    )
}

/// Compares the treatment's mean with the control's (Welch's t-test); `None` when either
/// group is below the minimum sample, a figure is not finite, or neither group varies.
pub fn compare_means(
    control: Summary,
    treatment: Summary,
    settings: &ComparisonSettings,
) -> Option<Comparison> {
    let min = settings.min_sample.max(2);
    if control.n < min || treatment.n < min {
        return None;
    }
    if ![control.mean, control.sd, treatment.mean, treatment.sd]
        .iter()
        .all(|x| x.is_finite())
    {
        return None;
    }
    let v_c = control.sd * control.sd / control.n as f64;
    let v_t = treatment.sd * treatment.sd / treatment.n as f64;
    let df = (v_c + v_t).powi(2)
        / (v_c * v_c / (control.n - 1) as f64 + v_t * v_t / (treatment.n - 1) as f64);
    if !(df.is_finite() && df > 0.0) {
        return None;
    }
    let crit = settings.level.t(df)?;
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    compare(
        Method::WelchT,
        (control.mean, v_c),
        (treatment.mean, v_t),
        crit,
        Some(df),
        settings.level,
        |stat| 2.0 * t.sf(stat.abs()),
    )
}

/// The shared part of both tests, from each group's `(mean, variance of the mean)`.
fn compare(
    method: Method,
    (m_c, v_c): (f64, f64),
    (m_t, v_t): (f64, f64),
    crit: f64,
    degrees_of_freedom: Option<f64>,
    level: ConfidenceLevel,
    two_sided_p: impl Fn(f64) -> f64,
) -> Option<Comparison> {
    let standard_error = (v_c + v_t).sqrt();
    if !(standard_error.is_finite() && standard_error > 0.0) {
        return None;
    }
    let difference = m_t - m_c;
    let statistic = difference / standard_error;
    let p_value = two_sided_p(statistic).clamp(0.0, 1.0);
    let relative_lift = (m_c != 0.0).then(|| {
        let lift = m_t / m_c - 1.0;
        let variance = v_t / (m_c * m_c) + m_t * m_t * v_c / m_c.powi(4);
        RelativeLift {
            lift,
            interval: Interval::around(lift, crit * variance.sqrt()),
        }
    });
    Some(Comparison {
        method,
        control: m_c,
        treatment: m_t,
        difference,
        difference_interval: Interval::around(difference, crit * standard_error),
        standard_error,
        statistic,
        degrees_of_freedom,
        p_value,
        relative_lift,
        level: level.get(),
        significant: p_value < level.alpha(),
    })
}

fn standard_normal() -> Normal {
    Normal::standard()
}
