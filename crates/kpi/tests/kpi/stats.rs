//! Rates, Wilson intervals and the two comparisons against GrowthBook's published case,
//! textbook values, and statsmodels / scipy computing the same figures from the same
//! generated data.

use clarion_kpi::stats::{
    ComparisonSettings, ConfidenceLevel, Method, Proportion, RateEstimate, Summary, compare_means,
    compare_proportions, rate, wilson,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

/// Relative closeness for figures of any size (p-values deep in the tail).
fn close_rel(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    assert!(
        (actual - expected).abs() <= tolerance * scale || (actual - expected).abs() < 1e-15,
        "{what}: {actual} is not within {tolerance} (relative) of {expected}"
    );
}

/// GrowthBook's published frequentist test case: the absolute and the relative difference,
/// their 95% intervals and the p-value, to 4 decimals.
#[test]
fn welch_reproduces_growthbooks_published_case() {
    let control = Summary::new(0.41, 3.9, 3407);
    let treatment = Summary::new(0.70, 6.2, 3461);
    let c = compare_means(control, treatment, &ComparisonSettings::default()).unwrap();
    assert_eq!(c.method, Method::WelchT);
    close(c.difference, 0.29, 5e-5, "absolute difference");
    close(
        c.difference_interval.low,
        0.04538,
        5e-5,
        "difference CI low",
    );
    close(
        c.difference_interval.high,
        0.53462,
        5e-5,
        "difference CI high",
    );
    close(c.p_value, 0.02016, 5e-5, "p-value");
    let lift = c.relative_lift.unwrap();
    close(lift.lift, 0.70732, 5e-5, "relative lift");
    close(lift.interval.low, -0.03526, 5e-5, "relative CI low");
    close(lift.interval.high, 1.44989, 5e-5, "relative CI high");
    assert!(c.significant, "p = 0.02 is significant at 95%");
    // The same case at 99% is not: p > 0.01 and the interval then spans 0.
    let strict = ComparisonSettings::new(ConfidenceLevel::new(0.99).unwrap(), 100).unwrap();
    let c99 = compare_means(control, treatment, &strict).unwrap();
    assert!(!c99.significant);
    assert!(c99.difference_interval.contains(0.0));
    close(
        c99.p_value,
        c.p_value,
        1e-12,
        "the p-value does not depend on the level",
    );
}

/// Newcombe (1998), table I: Wilson score intervals of four textbook proportions.
#[test]
fn wilson_matches_newcombes_textbook_values() {
    let level = ConfidenceLevel::NINETY_FIVE;
    for (x, n, low, high) in [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ] {
        let i = wilson(x, n, level).unwrap();
        close(i.low, low, 5e-5, &format!("{x}/{n} low"));
        close(i.high, high, 5e-5, &format!("{x}/{n} high"));
    }
}

#[test]
fn empty_denominators_and_small_samples_give_no_figure() {
    assert_eq!(rate(0, 0), None);
    assert_eq!(rate(3, 4), Some(0.75));
    assert_eq!(wilson(0, 0, ConfidenceLevel::NINETY_FIVE), None);
    assert_eq!(wilson(5, 4, ConfidenceLevel::NINETY_FIVE), None);
    assert_eq!(RateEstimate::new(1, 0, ConfidenceLevel::NINETY_FIVE), None);
    let estimate = RateEstimate::new(50, 200, ConfidenceLevel::NINETY_FIVE).unwrap();
    assert_eq!(estimate.rate, 0.25);
    assert!(estimate.interval.contains(0.25));

    let settings = ComparisonSettings::new(ConfidenceLevel::NINETY_FIVE, 100).unwrap();
    // A holdout of zero, or one below the minimum: not enough data.
    assert_eq!(
        compare_proportions(Proportion::new(0, 0), Proportion::new(40, 1000), &settings),
        None
    );
    assert_eq!(
        compare_proportions(Proportion::new(5, 99), Proportion::new(40, 1000), &settings),
        None
    );
    assert!(
        compare_proportions(
            Proportion::new(5, 100),
            Proportion::new(40, 1000),
            &settings
        )
        .is_some()
    );
    assert_eq!(
        compare_means(
            Summary::new(1.0, 2.0, 99),
            Summary::new(1.5, 2.0, 1000),
            &settings
        ),
        None
    );
    // Nobody converted in either group: nothing varies, so there is nothing to test.
    assert_eq!(
        compare_proportions(Proportion::new(0, 500), Proportion::new(0, 500), &settings),
        None
    );
    // A control rate of 0 has no relative lift, but the difference is still tested.
    let c =
        compare_proportions(Proportion::new(0, 500), Proportion::new(10, 500), &settings).unwrap();
    assert_eq!(c.relative_lift, None);
    assert!(c.significant);

    assert!(ConfidenceLevel::new(1.0).is_err());
    assert!(ConfidenceLevel::new(0.0).is_err());
    assert!(ConfidenceLevel::new(f64::NAN).is_err());
    assert!(ComparisonSettings::new(ConfidenceLevel::NINETY_FIVE, 1).is_err());
    let level: ConfidenceLevel = serde_json::from_value(json!(0.9)).unwrap();
    assert_eq!(level.get(), 0.9);
    assert!(serde_json::from_value::<ConfidenceLevel>(json!(95)).is_err());
}

#[test]
fn summaries_from_sums_agree_with_summaries_from_values() {
    let values = [12.5, 0.0, 0.0, 99.9, 3.25, 0.0, 41.0];
    let direct = Summary::from_values(&values).unwrap();
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|x| x * x).sum();
    let sums = Summary::from_sums(values.len() as u64, sum, squares).unwrap();
    assert_eq!(direct.n, 7);
    close(sums.mean, direct.mean, 1e-12, "mean");
    close(sums.sd, direct.sd, 1e-9, "sd");
    assert_eq!(Summary::from_sums(0, 0.0, 0.0), None);
    assert_eq!(Summary::from_values(&[]), None);
    assert_eq!(Summary::from_values(&[4.0]).unwrap().sd, 0.0);
}

/// Runs the statsmodels / scipy reference over the cases.
fn reference(cases: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kpi/reference_stats.py");
    clarion_testkit::python_reference(script, cases, "python3-statsmodels and python3-scipy")
}

/// Generated proportions, comparisons and raw revenue samples, each computed here and by
/// statsmodels / scipy, at 95% and at 90%.
#[test]
fn every_formula_agrees_with_statsmodels_over_generated_data() {
    let mut rng = StdRng::seed_from_u64(12);
    for level in [0.95, 0.90] {
        let confidence = ConfidenceLevel::new(level).unwrap();
        let settings = ComparisonSettings::new(confidence, 2).unwrap();
        let mut wilson_cases = vec![(0u64, 1u64), (1, 1), (0, 7), (7, 7)];
        let mut proportion_cases = Vec::new();
        for _ in 0..40 {
            let n = rng.random_range(1..100_000u64);
            wilson_cases.push((rng.random_range(0..=n), n));
            let nc = rng.random_range(20..50_000u64);
            let nt = rng.random_range(20..50_000u64);
            let p = rng.random_range(0.001..0.5);
            let lift = rng.random_range(0.7..1.5);
            let xc = ((nc as f64) * p).round() as u64;
            let xt = (((nt as f64) * p * lift).round() as u64).min(nt);
            proportion_cases.push((xc.max(1), nc, xt.max(1), nt));
        }
        // Revenue per contact: most contacts buy nothing, buyers spend a skewed amount.
        let mut mean_cases = Vec::new();
        for _ in 0..12 {
            let mut sample = |n: usize, buy: f64, scale: f64| -> Vec<f64> {
                (0..n)
                    .map(|_| {
                        if rng.random_bool(buy) {
                            (scale * (1.0 + 3.0 * rng.random::<f64>().powi(3)) * 100.0).round()
                                / 100.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            };
            let nc = 50 + (mean_cases.len() * 97) % 900;
            let nt = 80 + (mean_cases.len() * 311) % 1500;
            let control = sample(nc, 0.05, 40.0);
            let treatment = sample(nt, 0.07, 45.0);
            mean_cases.push((control, treatment));
        }
        let summaries: Vec<(Summary, Summary)> = mean_cases
            .iter()
            .map(|(c, t)| {
                (
                    Summary::from_values(c).unwrap(),
                    Summary::from_values(t).unwrap(),
                )
            })
            .collect();
        let cases = json!({
            "level": level,
            "wilson": wilson_cases,
            "proportions": proportion_cases,
            "means": mean_cases,
            "summaries": summaries.iter().map(|(c, t)| [c.mean, c.sd, c.n as f64, t.mean, t.sd, t.n as f64]).collect::<Vec<_>>(),
        });
        let expected = reference(&cases);

        for ((x, n), want) in wilson_cases
            .iter()
            .zip(expected["wilson"].as_array().unwrap())
        {
            let got = wilson(*x, *n, confidence).unwrap();
            close(
                got.low,
                want[0].as_f64().unwrap(),
                1e-9,
                &format!("wilson {x}/{n} low at {level}"),
            );
            close(
                got.high,
                want[1].as_f64().unwrap(),
                1e-9,
                &format!("wilson {x}/{n} high at {level}"),
            );
        }
        for (&(xc, nc, xt, nt), want) in proportion_cases
            .iter()
            .zip(expected["proportions"].as_array().unwrap())
        {
            let what = format!("{xt}/{nt} against {xc}/{nc} at {level}");
            let got =
                compare_proportions(Proportion::new(xc, nc), Proportion::new(xt, nt), &settings)
                    .unwrap();
            close_rel(
                got.statistic,
                want["statistic"].as_f64().unwrap(),
                1e-9,
                &format!("z of {what}"),
            );
            close_rel(
                got.p_value,
                want["p_value"].as_f64().unwrap(),
                1e-7,
                &format!("p of {what}"),
            );
            close(
                got.difference_interval.low,
                want["low"].as_f64().unwrap(),
                1e-9,
                &format!("low of {what}"),
            );
            close(
                got.difference_interval.high,
                want["high"].as_f64().unwrap(),
                1e-9,
                &format!("high of {what}"),
            );
            assert_eq!(got.significant, got.p_value < 1.0 - level, "{what}");
            assert_eq!(
                got.significant,
                !got.difference_interval.contains(0.0),
                "{what}"
            );
        }
        for ((c, t), want) in summaries.iter().zip(expected["means"].as_array().unwrap()) {
            let what = format!(
                "means {:.4}/{} against {:.4}/{} at {level}",
                t.mean, t.n, c.mean, c.n
            );
            let got = compare_means(*c, *t, &settings).unwrap();
            close_rel(
                got.statistic,
                want["statistic"].as_f64().unwrap(),
                1e-9,
                &format!("t of {what}"),
            );
            close_rel(
                got.degrees_of_freedom.unwrap(),
                want["df"].as_f64().unwrap(),
                1e-9,
                &format!("df of {what}"),
            );
            close_rel(
                got.p_value,
                want["p_value"].as_f64().unwrap(),
                1e-6,
                &format!("p of {what}"),
            );
            close(
                got.difference_interval.low,
                want["low"].as_f64().unwrap(),
                1e-7,
                &format!("low of {what}"),
            );
            close(
                got.difference_interval.high,
                want["high"].as_f64().unwrap(),
                1e-7,
                &format!("high of {what}"),
            );
            assert_eq!(
                got.significant,
                !got.difference_interval.contains(0.0),
                "{what}"
            );
        }
        for ((c, t), want) in summaries
            .iter()
            .zip(expected["summaries"].as_array().unwrap())
        {
            let got = compare_means(*c, *t, &settings).unwrap();
            close_rel(
                got.p_value,
                want["p_value"].as_f64().unwrap(),
                1e-6,
                "p from summaries (scipy)",
            );
        }
    }
}
