//! BG/NBD and Gamma-Gamma against the published CDNOW estimates (Fader, Hardie & Lee 2005;
//! Fader & Hardie 2013), the per-customer predictions against scipy's own special
//! functions, and the customer summaries against a hand count.

use clarion_kpi::KpiError;
use clarion_kpi::clv::{
    BgNbd, ClvSettings, CustomerSummary, GammaGamma, HistoricClv, TimeUnit, fit_bgnbd,
    fit_gamma_gamma, predict, summarize,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/kpi/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of a fixture as numbers, header skipped, the ID column dropped.
fn rows(name: &str) -> Vec<Vec<f64>> {
    fixture(name)
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split(',')
                .skip(1)
                .map(|v| v.trim().parse::<f64>().unwrap())
                .collect()
        })
        .collect()
}

/// CDNOW's 2,357 customers over 39 weeks: `frequency, recency, T`.
fn cdnow() -> Vec<CustomerSummary> {
    rows("cdnow_customers_summary.csv")
        .into_iter()
        .map(|r| CustomerSummary {
            frequency: r[0] as u32,
            recency: r[1],
            age: r[2],
            monetary: 0.0,
        })
        .collect()
}

/// The same customers with the mean value of their repeat purchases: `x, t_x, T, zbar`.
fn cdnow_with_values() -> Vec<CustomerSummary> {
    rows("cdnow_customers_summary_with_transactions.csv")
        .into_iter()
        .map(|r| CustomerSummary {
            frequency: r[0] as u32,
            recency: r[1],
            age: r[2],
            monetary: r[3],
        })
        .collect()
}

fn within(actual: f64, published: f64, share: f64, what: &str) {
    assert!(
        ((actual - published) / published).abs() <= share,
        "{what}: {actual} is not within {}% of the published {published}",
        share * 100.0
    );
}

#[test]
fn bgnbd_reproduces_the_published_cdnow_fit() {
    let customers = cdnow();
    assert_eq!(customers.len(), 2357);
    let fit = fit_bgnbd(&customers).unwrap();
    let p = fit.params;
    within(p.r, 0.2426, 0.001, "r");
    within(p.alpha, 4.4136, 0.001, "alpha");
    within(p.a, 0.7929, 0.001, "a");
    within(p.b, 2.4259, 0.001, "b");
    within(
        fit.quality.log_likelihood,
        -9582.43,
        0.001,
        "log-likelihood",
    );
    assert!(
        (fit.quality.log_likelihood - -9582.43).abs() < 0.01,
        "{}",
        fit.quality.log_likelihood
    );
    assert_eq!(fit.quality.customers, 2357);
    // The maximum: the published parameters themselves score no better.
    let published = BgNbd {
        r: 0.2426,
        alpha: 4.4136,
        a: 0.7929,
        b: 2.4259,
    };
    assert!(fit.quality.log_likelihood >= published.log_likelihood(&customers) - 1e-9);
}

#[test]
fn gamma_gamma_reproduces_the_published_cdnow_fit() {
    let customers = cdnow_with_values();
    let fit = fit_gamma_gamma(&customers).unwrap();
    assert_eq!(fit.quality.customers, 946, "the repeat buyers");
    within(fit.params.p, 6.2488, 0.001, "p");
    within(fit.params.q, 3.7446, 0.001, "q");
    within(fit.params.gamma, 15.4477, 0.001, "gamma");
    let published = GammaGamma {
        p: 6.2488,
        q: 3.7446,
        gamma: 15.4477,
    };
    assert!(fit.quality.log_likelihood >= published.log_likelihood(&customers) - 1e-9);
}

fn reference(cases: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kpi/reference_clv.py");
    clarion_testkit::python_reference(script, cases, "python3-scipy")
}

/// p_alive, expected purchases, expected order value and discounted CLV of every CDNOW
/// customer, against the same formulas evaluated with scipy's gammaln and hyp2f1.
#[test]
fn predictions_agree_with_scipy_for_every_cdnow_customer() {
    let customers = cdnow_with_values();
    let bg = fit_bgnbd(&customers).unwrap().params;
    let gg = fit_gamma_gamma(&customers).unwrap().params;
    let settings = ClvSettings {
        horizon_days: 365.0,
        step_days: 30.0,
        discount_rate: 0.01,
        unit: TimeUnit::Weeks,
    };
    let cases = json!({
        "bg": [bg.r, bg.alpha, bg.a, bg.b],
        "gg": [gg.p, gg.q, gg.gamma],
        "horizon_days": settings.horizon_days,
        "step_days": settings.step_days,
        "discount_rate": settings.discount_rate,
        "unit_days": 7.0,
        "customers": customers.iter().map(|c| [f64::from(c.frequency), c.recency, c.age, c.monetary]).collect::<Vec<_>>(),
    });
    let expected = reference(&cases);
    let expected = expected["predictions"].as_array().unwrap();
    assert_eq!(expected.len(), customers.len());
    for (c, want) in customers.iter().zip(expected) {
        let got = predict(&bg, &gg, c, &settings);
        let what = format!("{c:?}");
        let check = |g: f64, w: &Value, name: &str| {
            let w = w.as_f64().unwrap();
            assert!(
                (g - w).abs() <= 1e-8 * w.abs().max(1.0),
                "{name} of {what}: {g} against scipy's {w}"
            );
        };
        check(got.p_alive, &want["p_alive"], "p_alive");
        check(
            got.expected_purchases,
            &want["expected_purchases"],
            "expected purchases",
        );
        check(
            got.expected_order_value.unwrap(),
            &want["expected_order_value"],
            "order value",
        );
        check(got.predicted_clv.unwrap(), &want["clv"], "clv");
    }
    // A one-time buyer long ago is more likely alive than a frequent buyer who stopped.
    let frequent_then_silent = CustomerSummary {
        frequency: 10,
        recency: 5.0,
        age: 38.0,
        monetary: 30.0,
    };
    let once = CustomerSummary {
        frequency: 0,
        recency: 0.0,
        age: 38.0,
        monetary: 0.0,
    };
    assert_eq!(bg.p_alive(&once), 1.0);
    assert!(bg.p_alive(&frequent_then_silent) < 0.01);
}

/// Fader & Hardie's note on the BG/NBD in Excel: the CDNOW customer with x = 2, t_x = 30.43,
/// T = 38.86 is expected to make 1.226 purchases in the next 39 weeks.
#[test]
fn conditional_expectation_matches_the_published_example() {
    let bg = BgNbd {
        r: 0.2426,
        alpha: 4.4136,
        a: 0.7929,
        b: 2.4259,
    };
    let c = CustomerSummary {
        frequency: 2,
        recency: 30.43,
        age: 38.86,
        monetary: 0.0,
    };
    let expected = bg.expected_purchases(&c, 39.0);
    assert!((expected - 1.226).abs() < 5e-4, "{expected}");
}

#[test]
fn summaries_count_purchase_days() {
    let day = 86_400_000i64;
    let start = 20_000 * day;
    // Two orders on the first day, one 3 days later (at noon), two on day 10; one after now.
    let purchases = [
        (start + 1_000, 10.0),
        (start + 5_000, 5.0),
        (start + 3 * day + day / 2, 20.0),
        (start + 10 * day, 7.0),
        (start + 10 * day + 60_000, 3.0),
        (start + 40 * day, 1000.0),
    ];
    let now = start + 14 * day;
    let s = summarize(&purchases, now, TimeUnit::Days).unwrap();
    assert_eq!(s.frequency, 2);
    assert_eq!(s.recency, 10.0);
    assert_eq!(s.age, 14.0);
    assert_eq!(s.monetary, (20.0 + 10.0) / 2.0);
    let weeks = summarize(&purchases, now, TimeUnit::Weeks).unwrap();
    assert_eq!(weeks.age, 2.0);
    assert_eq!(
        summarize(&purchases[..1], now, TimeUnit::Days)
            .unwrap()
            .monetary,
        0.0
    );
    assert_eq!(summarize(&purchases[5..], now, TimeUnit::Days), None);

    let historic = HistoricClv::of(&[10.0, 0.0, 30.0, 5.0]).unwrap();
    assert_eq!(
        (
            historic.contacts,
            historic.total,
            historic.mean,
            historic.median
        ),
        (4, 45.0, 11.25, 7.5)
    );
    assert_eq!(HistoricClv::of(&[]), None);
}

#[test]
fn fits_refuse_data_without_repeat_purchases() {
    let once = vec![
        CustomerSummary {
            frequency: 0,
            recency: 0.0,
            age: 10.0,
            monetary: 0.0
        };
        50
    ];
    assert!(matches!(fit_bgnbd(&once), Err(KpiError::Model { .. })));
    assert!(matches!(
        fit_gamma_gamma(&once),
        Err(KpiError::Model { .. })
    ));
    let bad = vec![CustomerSummary {
        frequency: 1,
        recency: 12.0,
        age: 10.0,
        monetary: 5.0,
    }];
    assert!(matches!(fit_bgnbd(&bad), Err(KpiError::Invalid { .. })));
    assert!(
        ClvSettings {
            discount_rate: 1.5,
            ..ClvSettings::default()
        }
        .check()
        .is_err()
    );
    assert!(
        ClvSettings {
            horizon_days: 0.0,
            ..ClvSettings::default()
        }
        .check()
        .is_err()
    );
    assert!(ClvSettings::default().check().is_ok());
}
