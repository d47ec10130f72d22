//! The campaign report against a computation in plain Rust over the generated rows.
//!
//! Three campaigns with overlapping audiences (so attribution must choose between them), every
//! delivery status, held-out contacts reachable and not, engagement repeated on one delivery,
//! goal events exactly on the window edges, events that arrive late (after the deliveries
//! settled, with earlier times), and a campaign without a holdout. Events go through the real
//! ingestion with the roll-up listener; delivery outcomes are written as the worker writes them
//! and followed by the same refresh the worker calls. The report must equal the expected
//! figures after every step, under last touch and first touch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use clarion_contacts::{Ingest, events::IngestOptions};
use clarion_kpi::{
    Attribution, KpiSettings,
    campaign::{self, CampaignReport, Figures, Step, Verdict},
    rollup::{self, Rollups},
    settings,
};
use clarion_model::{CampaignId, ContactId, DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::{add_contacts, exec, id_of};

const HOUR: i64 = 3_600_000;

/// 2026-06-01T00:00:00Z.
fn t0() -> i64 {
    Timestamp::parse("2026-06-01T00:00:00Z").unwrap().millis()
}

/// A small deterministic generator (xorshift64*), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Debug, Clone)]
struct Campaign {
    id: i64,
    run: i64,
    goal: &'static str,
    window: i64,
    started: i64,
    channels: Vec<&'static str>,
    variants: Vec<i64>,
}

#[derive(Debug, Clone)]
struct Delivery {
    id: i64,
    run: i64,
    contact: i64,
    variant: i64,
    segment: i64,
    channel: &'static str,
    /// What launch wrote.
    launch_status: &'static str,
    status: &'static str,
    reason: Option<&'static str>,
    attempts: i64,
    sent_at: Option<i64>,
    updated_at: i64,
}

#[derive(Debug, Clone)]
struct Happening {
    contact: i64,
    external_id: String,
    kind: &'static str,
    at: i64,
    amount: Option<f64>,
    delivery: Option<i64>,
}

struct World {
    db: DatabaseConnection,
    ingest: Ingest,
    campaigns: Vec<Campaign>,
    deliveries: Vec<Delivery>,
    /// Events stored so far.
    stored: Vec<Happening>,
    externals: HashMap<i64, String>,
    _test_db: TestDb,
}

async fn ingest_events(world: &mut World, events: Vec<Happening>) {
    let items = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut properties = serde_json::Map::new();
            if let Some(d) = e.delivery {
                properties.insert("delivery_id".into(), json!(d));
            }
            let input: EventInput = serde_json::from_value(json!({
                "external_id": e.external_id,
                "kind": e.kind,
                "occurred_at": Timestamp::from_millis(e.at).to_rfc3339(),
                "amount": e.amount,
                "properties": properties,
            }))
            .unwrap();
            (i, input)
        })
        .collect();
    let options = IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: 0,
        atomic: true,
    };
    let report = world
        .ingest
        .events(DEFAULT_WORKSPACE, items, options)
        .await
        .unwrap();
    assert_eq!(report.accepted, events.len(), "{:?}", report.errors);
    world.stored.extend(events);
}

/// Contacts, segments, three launched campaigns with their delivery rows as launch writes
/// them, and the roll-ups launch starts.
async fn world(backend: Backend, rng: &mut Rng) -> World {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db.clone()).with_listener(Arc::new(Rollups::new(db.clone())));
    add_contacts(&ingest, (0..240).map(|i| format!("c{i:03}"))).await;
    let mut segments = Vec::new();
    for slug in ["alpha", "beta"] {
        exec(&db, &format!(
            "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
             VALUES (1, '{slug}', '{slug}', '', 'custom', 'static', NULL, 0, 0)"
        ))
        .await;
        segments.push(
            id_of(
                &db,
                &format!("SELECT id FROM segments WHERE slug = '{slug}'"),
            )
            .await,
        );
    }
    let specs: [(&str, &'static str, i64, i64, Vec<&'static str>); 3] = [
        ("one", "purchase", 48, 0, vec!["email"]),
        ("two", "purchase", 24, 10, vec!["email", "webhook"]),
        ("three", "signup", 72, 5, vec!["email"]),
    ];
    let mut campaigns = Vec::new();
    for (name, goal, hours, offset, channels) in specs {
        let started = t0() + offset * HOUR;
        exec(&db, &format!(
            "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) \
             VALUES (1, '{name}', 'sending', '{goal}', {hours}, 10, '{}', 0, 0)", channels.join(",")
        ))
        .await;
        let id = id_of(
            &db,
            &format!("SELECT id FROM campaigns WHERE name = '{name}'"),
        )
        .await;
        let mut variants = Vec::new();
        for variant in ["A", "B"] {
            exec(&db, &format!(
                "INSERT INTO campaign_variants (campaign_id, position, name, weight, version, created_at, updated_at) \
                 VALUES ({id}, 0, '{variant}', 1, 1, 0, 0)"
            ))
            .await;
            variants.push(
                id_of(&db, &format!("SELECT id FROM campaign_variants WHERE campaign_id = {id} AND name = '{variant}'")).await,
            );
        }
        exec(&db, &format!(
            "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, suppressed, holdout, started_at, updated_at) \
             VALUES (1, {id}, 'running', 0, 0, 0, 0, {started}, {started})"
        ))
        .await;
        let run = id_of(
            &db,
            &format!("SELECT id FROM campaign_runs WHERE campaign_id = {id}"),
        )
        .await;
        campaigns.push(Campaign {
            id,
            run,
            goal,
            window: hours * HOUR,
            started,
            channels,
            variants,
        });
    }

    let externals: HashMap<i64, String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, external_id FROM contacts".to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "external_id").unwrap(),
            )
        })
        .collect();
    let contact_ids: BTreeSet<i64> = externals.keys().copied().collect();
    let mut deliveries = Vec::new();
    for (index, campaign) in campaigns.iter().enumerate() {
        let (share, holdout_share) = [(0.8, 0.25), (0.5, 0.3), (0.6, 0.0)][index];
        for &contact in &contact_ids {
            if !rng.chance(share) {
                continue;
            }
            let holdout = rng.chance(holdout_share);
            let variant = campaign.variants[rng.below(2) as usize];
            let segment = segments[rng.below(2) as usize];
            for &channel in &campaign.channels {
                let mut d = Delivery {
                    id: 0,
                    run: campaign.run,
                    contact,
                    variant,
                    segment,
                    channel,
                    launch_status: "queued",
                    status: "queued",
                    reason: None,
                    attempts: 0,
                    sent_at: None,
                    updated_at: campaign.started,
                };
                if holdout {
                    d.launch_status = "holdout";
                    if rng.chance(0.2) {
                        d.reason = Some(if channel == "email" {
                            "no email address"
                        } else {
                            "unsubscribed"
                        });
                    }
                } else if rng.chance(0.12) {
                    d.launch_status = "suppressed";
                    d.reason = Some(["unsubscribed", "no email address"][rng.below(2) as usize]);
                }
                d.status = d.launch_status;
                deliveries.push(d);
            }
        }
    }
    for d in &mut deliveries {
        let reason = d.reason.map_or("NULL".to_owned(), |r| format!("'{r}'"));
        let campaign = campaigns.iter().find(|c| c.run == d.run).unwrap().id;
        exec(&db, &format!(
            "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, variant_id, segment_id, status, reason, attempts, created_at, updated_at) \
             VALUES (1, {}, {campaign}, {}, '{}', {}, {}, '{}', {reason}, 0, {}, {})",
            d.run, d.contact, d.channel, d.variant, d.segment, d.status, d.updated_at, d.updated_at
        ))
        .await;
        d.id = id_of(&db, &format!(
            "SELECT id FROM deliveries WHERE run_id = {} AND contact_id = {} AND channel = '{}'",
            d.run, d.contact, d.channel
        ))
        .await;
    }
    for campaign in &campaigns {
        rollup::rebuild_run(&db, campaign.run).await.unwrap();
    }
    World {
        db,
        ingest,
        campaigns,
        deliveries,
        stored: Vec::new(),
        externals,
        _test_db: test_db,
    }
}

/// The outcomes the workers record: most queued rows are sent, some fail, are suppressed after
/// claiming, cancelled, or stay queued; then the refresh the worker calls.
async fn settle(world: &mut World, rng: &mut Rng) {
    let mut touched = BTreeSet::new();
    for d in &mut world.deliveries {
        if d.status != "queued" {
            continue;
        }
        let started = world
            .campaigns
            .iter()
            .find(|c| c.run == d.run)
            .unwrap()
            .started;
        let at = started + rng.below(6 * HOUR as u64) as i64;
        let roll = rng.below(100);
        let (status, reason, attempts, sent_at) = match roll {
            0..=64 => ("sent", None, 1, Some(at)),
            65..=74 => ("failed", Some("550 mailbox unavailable"), 1, None),
            75..=81 => ("suppressed", Some("unsubscribed since launch"), 1, None),
            82..=89 => ("cancelled", None, 0, None),
            _ => continue,
        };
        d.status = status;
        d.reason = reason;
        d.attempts = attempts;
        d.sent_at = sent_at;
        d.updated_at = at;
        let reason = reason.map_or("NULL".to_owned(), |r| format!("'{r}'"));
        let sent = sent_at.map_or("NULL".to_owned(), |s| s.to_string());
        exec(&world.db, &format!(
            "UPDATE deliveries SET status = '{status}', reason = {reason}, attempts = {attempts}, sent_at = {sent}, updated_at = {at} WHERE id = {}",
            d.id
        ))
        .await;
        touched.insert(d.contact);
    }
    let contacts: Vec<ContactId> = touched.into_iter().map(ContactId).collect();
    rollup::refresh_runs(&world.db, DEFAULT_WORKSPACE, &contacts)
        .await
        .unwrap();
}

/// Goal events spread around the launches (before them too), some exactly on window edges,
/// and engagement on sent email deliveries, opens repeated.
fn happenings(world: &World, rng: &mut Rng) -> Vec<Happening> {
    let mut out = Vec::new();
    let external = |contact: i64| world.externals[&contact].clone();
    let contacts: BTreeSet<i64> = world.deliveries.iter().map(|d| d.contact).collect();
    for &contact in &contacts {
        for _ in 0..rng.below(4) {
            let at = t0() - 20 * HOUR + rng.below(120 * HOUR as u64) as i64;
            let amount = rng.chance(0.9).then(|| (rng.below(20_000) as f64) / 100.0);
            out.push(Happening {
                contact,
                external_id: external(contact),
                kind: "purchase",
                at,
                amount,
                delivery: None,
            });
        }
        if rng.chance(0.3) {
            let at = t0() + rng.below(90 * HOUR as u64) as i64;
            out.push(Happening {
                contact,
                external_id: external(contact),
                kind: "signup",
                at,
                amount: None,
                delivery: None,
            });
        }
    }
    for d in &world.deliveries {
        let campaign = world.campaigns.iter().find(|c| c.run == d.run).unwrap();
        let here =
            |kind: &'static str, at: i64, amount: Option<f64>, delivery: Option<i64>| Happening {
                contact: d.contact,
                external_id: external(d.contact),
                kind,
                at,
                amount,
                delivery,
            };
        // Window edges: the launch and the end of the intent-to-treat window.
        if d.channel == "email" && rng.chance(0.05) {
            out.push(here(campaign.goal, campaign.started, Some(11.0), None));
        }
        if d.channel == "email" && rng.chance(0.05) {
            out.push(here(
                campaign.goal,
                campaign.started + campaign.window,
                Some(13.0),
                None,
            ));
        }
        let Some(sent) = d.sent_at else { continue };
        // Attribution edges: at the sending, and at the end of its window (not attributed).
        if rng.chance(0.08) {
            out.push(here(campaign.goal, sent, Some(7.5), None));
        }
        if rng.chance(0.08) {
            out.push(here(
                campaign.goal,
                sent + campaign.window,
                Some(9.25),
                None,
            ));
        }
        if d.channel != "email" {
            continue;
        }
        for _ in 0..rng.below(4) {
            out.push(here(
                "email_open",
                sent + rng.below(48 * HOUR as u64) as i64,
                None,
                Some(d.id),
            ));
        }
        for _ in 0..rng.below(3) {
            out.push(here(
                "email_click",
                sent + rng.below(48 * HOUR as u64) as i64,
                None,
                Some(d.id),
            ));
        }
        for (kind, p) in [
            ("unsubscribe", 0.05),
            ("email_bounce", 0.03),
            ("email_complaint", 0.02),
        ] {
            if rng.chance(p) {
                out.push(here(
                    kind,
                    sent + rng.below(10 * HOUR as u64) as i64,
                    None,
                    Some(d.id),
                ));
            }
        }
    }
    // An open that names no delivery counts nowhere.
    if let Some(&contact) = contacts.iter().next() {
        out.push(Happening {
            contact,
            external_id: external(contact),
            kind: "email_open",
            at: t0() + HOUR,
            amount: None,
            delivery: None,
        });
    }
    out
}

/// What the report must say, computed from the rows alone.
#[derive(Debug, Default)]
struct Expected {
    totals: Figures,
    variants: BTreeMap<i64, Figures>,
    channels: BTreeMap<String, Figures>,
    /// contacts, converters, revenue, revenue squared: treatment, holdout.
    itt: [(u64, u64, f64, f64); 2],
    variant_itt: BTreeMap<i64, [(u64, u64, f64, f64); 2]>,
    /// Sent deliveries and attributed conversions per day since launch.
    days: BTreeMap<i64, (u64, u64)>,
}

fn rate(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn finish(f: &mut Figures) {
    f.click_to_open_rate = rate(f.unique_clicks, f.unique_opens);
    f.conversion_rate = rate(f.converters, f.recipients);
    f.revenue_per_recipient =
        (f.recipients > 0).then(|| f.attributed_revenue / f.recipients as f64);
    f.average_order_value = (f.attributed_conversions > 0)
        .then(|| f.attributed_revenue / f.attributed_conversions as f64);
}

fn expected(world: &World, campaign: &Campaign, attribution: Attribution) -> Expected {
    let window_of = |run: i64| world.campaigns.iter().find(|c| c.run == run).unwrap();
    // Which delivery each goal event is credited to.
    let mut credited: HashMap<i64, Vec<&Happening>> = HashMap::new();
    for e in &world.stored {
        let mut best: Option<&Delivery> = None;
        for d in world
            .deliveries
            .iter()
            .filter(|d| d.contact == e.contact && d.status == "sent")
        {
            let c = window_of(d.run);
            let sent = d.sent_at.unwrap();
            if c.goal != e.kind || e.at < sent || e.at >= sent + c.window {
                continue;
            }
            best = match best {
                None => Some(d),
                Some(b) => {
                    let later = (sent, d.id) > (b.sent_at.unwrap(), b.id);
                    match attribution {
                        Attribution::LastTouch if later => Some(d),
                        Attribution::FirstTouch if !later => Some(d),
                        _ => Some(b),
                    }
                }
            };
        }
        if let Some(d) = best {
            credited.entry(d.id).or_default().push(e);
        }
    }

    let mut out = Expected::default();
    let rows: Vec<&Delivery> = world
        .deliveries
        .iter()
        .filter(|d| d.run == campaign.run)
        .collect();
    let members: BTreeSet<i64> = rows.iter().map(|d| d.contact).collect();
    for &contact in &members {
        let mine: Vec<&&Delivery> = rows.iter().filter(|d| d.contact == contact).collect();
        let variant = mine[0].variant;
        let holdout = mine.iter().any(|d| d.launch_status == "holdout");
        let figures_of = |f: &mut Figures, channel: Option<&str>| {
            let list: Vec<&&&Delivery> = mine
                .iter()
                .filter(|d| channel.is_none_or(|c| d.channel == c))
                .collect();
            if list.is_empty() {
                return;
            }
            f.audience += if channel.is_some() {
                list.len() as u64
            } else {
                1
            };
            if holdout {
                f.holdout += if channel.is_some() {
                    list.len() as u64
                } else {
                    1
                };
                return;
            }
            let mut recipient = false;
            let mut converter = false;
            for d in list {
                match d.status {
                    "sent" => {
                        f.sent += 1;
                        recipient = true;
                        if channel.is_some() {
                            f.recipients += 1;
                        }
                    }
                    "failed" => f.failed += 1,
                    "cancelled" => f.cancelled += 1,
                    "suppressed" => {
                        *f.suppressed
                            .entry(d.reason.unwrap().to_owned())
                            .or_default() += 1
                    }
                    _ => f.pending += 1,
                }
                let named = |kind: &str| {
                    world
                        .stored
                        .iter()
                        .any(|e| e.kind == kind && e.delivery == Some(d.id))
                };
                f.unique_opens += u64::from(named("email_open"));
                f.unique_clicks += u64::from(named("email_click"));
                f.unsubscribes += u64::from(named("unsubscribe"));
                f.bounced += u64::from(named("email_bounce"));
                f.complaints += u64::from(named("email_complaint"));
                if let Some(events) = credited.get(&d.id) {
                    converter = true;
                    if channel.is_some() {
                        f.converters += 1;
                    }
                    f.attributed_conversions += events.len() as u64;
                    f.attributed_revenue +=
                        events.iter().map(|e| e.amount.unwrap_or(0.0)).sum::<f64>();
                }
            }
            if channel.is_none() {
                f.recipients += u64::from(recipient);
                f.converters += u64::from(converter);
            }
        };
        figures_of(&mut out.totals, None);
        figures_of(out.variants.entry(variant).or_default(), None);
        for channel in &campaign.channels {
            let f = out.channels.entry((*channel).to_owned()).or_default();
            figures_of(f, Some(channel));
        }
        let reachable = if holdout {
            mine.iter().any(|d| d.reason.is_none())
        } else {
            mine.iter().any(|d| d.launch_status != "suppressed")
        };
        if reachable {
            let goal: Vec<&Happening> = world
                .stored
                .iter()
                .filter(|e| {
                    e.contact == contact
                        && e.kind == campaign.goal
                        && e.at >= campaign.started
                        && e.at < campaign.started + campaign.window
                })
                .collect();
            let revenue: f64 = goal.iter().map(|e| e.amount.unwrap_or(0.0)).sum();
            for slot in [
                &mut out.itt[usize::from(holdout)],
                &mut out.variant_itt.entry(variant).or_default()[usize::from(holdout)],
            ] {
                slot.0 += 1;
                slot.1 += u64::from(!goal.is_empty());
                slot.2 += revenue;
                slot.3 += revenue * revenue;
            }
        }
        for d in mine {
            if let Some(sent) = d.sent_at {
                out.days
                    .entry((sent - campaign.started) / (24 * HOUR))
                    .or_default()
                    .0 += 1;
            }
            for e in credited.get(&d.id).into_iter().flatten() {
                out.days
                    .entry((e.at - campaign.started) / (24 * HOUR))
                    .or_default()
                    .1 += 1;
            }
        }
    }
    finish(&mut out.totals);
    out.variants.values_mut().for_each(finish);
    out.channels.values_mut().for_each(finish);
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

fn assert_figures(what: &str, got: &Figures, want: &Figures) {
    let opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    };
    let mut got_exact = got.clone();
    let mut want_exact = want.clone();
    for f in [&mut got_exact, &mut want_exact] {
        f.click_to_open_rate = None;
        f.conversion_rate = None;
        f.revenue_per_recipient = None;
        f.average_order_value = None;
        f.attributed_revenue = 0.0;
    }
    assert_eq!(got_exact, want_exact, "{what}: counts");
    assert!(
        close(got.attributed_revenue, want.attributed_revenue),
        "{what}: revenue {} vs {}",
        got.attributed_revenue,
        want.attributed_revenue
    );
    assert!(
        opt(got.click_to_open_rate, want.click_to_open_rate),
        "{what}: click-to-open"
    );
    assert!(
        opt(got.conversion_rate, want.conversion_rate),
        "{what}: conversion rate"
    );
    assert!(
        opt(got.revenue_per_recipient, want.revenue_per_recipient),
        "{what}: revenue per recipient"
    );
    assert!(
        opt(got.average_order_value, want.average_order_value),
        "{what}: average order value"
    );
}

fn assert_itt(what: &str, report: &campaign::Uplift, want: &[(u64, u64, f64, f64); 2]) {
    for (group, w) in [(&report.treatment, want[0]), (&report.holdout, want[1])] {
        assert_eq!(group.contacts, w.0, "{what}: contacts");
        assert_eq!(group.converters, w.1, "{what}: converters");
        assert!(
            close(group.revenue, w.2),
            "{what}: revenue {} vs {}",
            group.revenue,
            w.2
        );
        assert_eq!(
            group.conversion_rate.is_none(),
            w.0 == 0,
            "{what}: an empty group has no rate"
        );
        if w.0 > 1 {
            let n = w.0 as f64;
            let mean = w.2 / n;
            let sd = ((w.3 - n * mean * mean) / (n - 1.0)).max(0.0).sqrt();
            assert!(
                close(group.revenue_sd.unwrap(), sd),
                "{what}: sd {:?} vs {sd}",
                group.revenue_sd
            );
        }
    }
}

async fn check(world: &World, attribution: Attribution, min_sample: u64) {
    for campaign in &world.campaigns {
        let report: CampaignReport = campaign::report(
            &world.db,
            DEFAULT_WORKSPACE,
            CampaignId(campaign.id),
            None,
            Some(Step::Day),
        )
        .await
        .unwrap();
        let want = expected(world, campaign, attribution);
        let name = format!("campaign {}", campaign.id);
        assert_eq!(report.run_id, campaign.run);
        assert_eq!(report.attribution, attribution);
        assert_figures(&format!("{name} totals"), &report.totals, &want.totals);
        let variants: BTreeMap<i64, &Figures> = report
            .variants
            .iter()
            .map(|b| (b.id.unwrap(), &b.figures))
            .collect();
        assert_eq!(variants.len(), want.variants.len(), "{name}: variants");
        for (id, figures) in &want.variants {
            assert_figures(&format!("{name} variant {id}"), variants[id], figures);
        }
        let channels: BTreeMap<&str, &Figures> = report
            .channels
            .iter()
            .map(|b| (b.name.as_str(), &b.figures))
            .collect();
        for (channel, figures) in &want.channels {
            assert_figures(
                &format!("{name} channel {channel}"),
                channels[channel.as_str()],
                figures,
            );
        }
        assert_itt(&name, &report.uplift, &want.itt);
        for b in &report.variants {
            assert_itt(
                &format!("{name} variant {:?}", b.id),
                b.uplift.as_ref().unwrap(),
                &want.variant_itt[&b.id.unwrap()],
            );
        }
        // The verdict: none below the minimum sample; otherwise the difference of the rates.
        let [t, h] = want.itt;
        let uplift = &report.uplift;
        if t.0 < min_sample || h.0 < min_sample {
            assert!(
                uplift.conversion.is_none(),
                "{name}: below the minimum sample"
            );
            assert_eq!(uplift.conversion_verdict, Verdict::NotEnoughData);
        } else {
            let c = uplift.conversion.as_ref().unwrap();
            let diff = t.1 as f64 / t.0 as f64 - h.1 as f64 / h.0 as f64;
            assert!(
                close(c.difference, diff),
                "{name}: difference {} vs {diff}",
                c.difference
            );
            assert_eq!(c.significant, c.p_value < 0.05);
            assert_eq!(
                uplift.conversion_verdict,
                if c.significant {
                    Verdict::Significant
                } else {
                    Verdict::NotSignificant
                }
            );
        }
        // The series per day since launch, gaps filled with zeros (it runs on to the last
        // day with any time-based figure, an open say).
        let series = report.series.as_ref().unwrap();
        let last = want.days.keys().next_back().copied().unwrap_or(0);
        assert!(series.len() as i64 > last, "{name}: days");
        for (index, point) in series.iter().enumerate() {
            assert_eq!(point.offset, index as i64);
            let (sent, conversions) = want.days.get(&point.offset).copied().unwrap_or_default();
            assert_eq!(
                (point.sent, point.attributed_conversions),
                (sent, conversions),
                "{name}: day {}",
                point.offset
            );
        }
        let sum = |f: fn(&campaign::SeriesPoint) -> u64| series.iter().map(f).sum::<u64>();
        assert_eq!(
            sum(|p| p.unique_opens),
            want.totals.unique_opens,
            "{name}: opens over the series"
        );
        assert_eq!(
            sum(|p| p.failed),
            want.totals.failed,
            "{name}: failures over the series"
        );
    }
}

async fn campaign_report_matches_the_rows(backend: Backend) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut world = world(backend, &mut rng).await;
    check(&world, Attribution::LastTouch, 100).await;

    let mut events = happenings(&world, &mut rng);
    // Half now, before the deliveries settle: the goal events around launch.
    let later = events.split_off(events.len() / 2);
    let (engagement, early): (Vec<_>, Vec<_>) =
        events.into_iter().partition(|e| e.delivery.is_some());
    ingest_events(&mut world, early).await;
    check(&world, Attribution::LastTouch, 100).await;

    settle(&mut world, &mut rng).await;
    check(&world, Attribution::LastTouch, 100).await;

    // The rest arrives late, with times before events already counted.
    ingest_events(&mut world, engagement).await;
    let more = happenings(&world, &mut rng);
    ingest_events(&mut world, later.into_iter().chain(more).collect()).await;
    check(&world, Attribution::LastTouch, 100).await;

    // Refreshing again changes nothing; a small minimum sample gives verdicts.
    let all: Vec<ContactId> = world
        .deliveries
        .iter()
        .map(|d| ContactId(d.contact))
        .collect();
    rollup::refresh_runs(&world.db, DEFAULT_WORKSPACE, &all)
        .await
        .unwrap();
    let small = KpiSettings {
        min_sample: 20,
        ..KpiSettings::default()
    };
    settings::put(&world.db, DEFAULT_WORKSPACE, small.clone())
        .await
        .unwrap();
    check(&world, Attribution::LastTouch, 20).await;

    // First touch recomputes every run.
    let first = KpiSettings {
        attribution: Attribution::FirstTouch,
        ..small
    };
    settings::put(&world.db, DEFAULT_WORKSPACE, first)
        .await
        .unwrap();
    check(&world, Attribution::FirstTouch, 20).await;

    // The campaign without a holdout has no comparison, and says so.
    let three = world.campaigns[2].id;
    let report = campaign::report(&world.db, DEFAULT_WORKSPACE, CampaignId(three), None, None)
        .await
        .unwrap();
    assert_eq!(report.totals.holdout, 0);
    assert_eq!(report.uplift.holdout.contacts, 0);
    assert_eq!(report.uplift.holdout.conversion_rate, None);
    assert_eq!(report.uplift.conversion_verdict, Verdict::NotEnoughData);
    assert_eq!(report.uplift.revenue_verdict, Verdict::NotEnoughData);
}

async fn csv_export_has_a_row_per_group(backend: Backend) {
    let mut rng = Rng(7);
    let mut world = world(backend, &mut rng).await;
    settle(&mut world, &mut rng).await;
    let events = happenings(&world, &mut rng);
    ingest_events(&mut world, events).await;
    let campaign = world.campaigns[1].clone();
    let report = campaign::report(
        &world.db,
        DEFAULT_WORKSPACE,
        CampaignId(campaign.id),
        None,
        None,
    )
    .await
    .unwrap();
    let text = campaign::to_csv(&report).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        1 + report.variants.len() + report.segments.len() + report.channels.len()
    );
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let want = expected(&world, &campaign, Attribution::LastTouch);
    assert_eq!(&rows[0][column("scope")], "total");
    assert_eq!(
        rows[0][column("sent")].parse::<u64>().unwrap(),
        want.totals.sent
    );
    let suppressed: u64 = want.totals.suppressed.values().sum();
    assert_eq!(
        rows[0][column("suppressed")].parse::<u64>().unwrap(),
        suppressed
    );
    assert!(close(
        rows[0][column("attributed_revenue")]
            .parse::<f64>()
            .unwrap(),
        want.totals.attributed_revenue
    ));
    let webhook = rows
        .iter()
        .find(|r| &r[column("scope")] == "channel" && &r[column("name")] == "webhook")
        .unwrap();
    // Webhooks are not opened: an empty rate cell, not 0.
    assert_eq!(&webhook[column("click_to_open_rate")], "");
}

async fn unknown_campaigns_and_runs_are_named(backend: Backend) {
    let mut rng = Rng(11);
    let world = world(backend, &mut rng).await;
    let missing =
        campaign::report(&world.db, DEFAULT_WORKSPACE, CampaignId(9_999), None, None).await;
    assert_eq!(missing.unwrap_err().to_string(), "campaign 9999 not found");
    let other_run = world.campaigns[0].run;
    let wrong = campaign::report(
        &world.db,
        DEFAULT_WORKSPACE,
        CampaignId(world.campaigns[1].id),
        Some(other_run),
        None,
    )
    .await;
    assert_eq!(
        wrong.unwrap_err().to_string(),
        format!(
            "run {other_run} of campaign {} not found",
            world.campaigns[1].id
        )
    );
    exec(&world.db, "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) VALUES (1, 'draft', 'draft', 'purchase', 24, 0, 'email', 0, 0)").await;
    let draft = id_of(&world.db, "SELECT id FROM campaigns WHERE name = 'draft'").await;
    let unlaunched =
        campaign::report(&world.db, DEFAULT_WORKSPACE, CampaignId(draft), None, None).await;
    assert_eq!(
        unlaunched.unwrap_err().to_string(),
        format!("campaign {draft} has not been launched")
    );
}

/// A run big enough that the worker's refresh of each settled batch must read the facts by
/// contact: building it writes every member's facts (each queued treatment member: audience
/// and reachable for the contact, audience and pending for the channel) and, on PostgreSQL,
/// leaves the planner statistics of them, so the first batches are not planned on an empty
/// table's figures.
async fn a_large_run_is_built_with_statistics_of_its_facts(backend: Backend) {
    const MEMBERS: i64 = 3_000;
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db.clone());
    add_contacts(&ingest, (0..MEMBERS).map(|i| format!("m{i:05}"))).await;
    exec(&db, "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
               VALUES (1, 'all', 'all', '', 'custom', 'static', NULL, 0, 0)").await;
    let segment = id_of(&db, "SELECT id FROM segments WHERE slug = 'all'").await;
    exec(&db, "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) \
               VALUES (1, 'big', 'sending', 'purchase', 24, 0, 'email', 0, 0)").await;
    let campaign = id_of(&db, "SELECT id FROM campaigns WHERE name = 'big'").await;
    exec(&db, &format!(
        "INSERT INTO campaign_variants (campaign_id, position, name, weight, version, created_at, updated_at) \
         VALUES ({campaign}, 0, 'A', 1, 1, 0, 0)"
    ))
    .await;
    let variant = id_of(
        &db,
        &format!("SELECT id FROM campaign_variants WHERE campaign_id = {campaign}"),
    )
    .await;
    let started = t0();
    exec(&db, &format!(
        "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, suppressed, holdout, started_at, updated_at) \
         VALUES (1, {campaign}, 'running', {MEMBERS}, {MEMBERS}, 0, 0, {started}, {started})"
    ))
    .await;
    let run = id_of(
        &db,
        &format!("SELECT id FROM campaign_runs WHERE campaign_id = {campaign}"),
    )
    .await;
    exec(&db, &format!(
        "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, variant_id, segment_id, status, reason, attempts, created_at, updated_at) \
         SELECT 1, {run}, {campaign}, id, 'email', {variant}, {segment}, 'queued', NULL, 0, {started}, {started} FROM contacts"
    ))
    .await;

    rollup::build_run(&db, run).await.unwrap();

    let count = |sql: &str| {
        let db = db.clone();
        let sql = sql.to_owned();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<f64>(0).unwrap()
        }
    };
    let facts = count(&format!(
        "SELECT CAST(COUNT(*) AS DOUBLE PRECISION) FROM kpi_run_facts WHERE run_id = {run}"
    ))
    .await;
    assert_eq!(facts, (4 * MEMBERS) as f64, "four facts per queued member");
    if backend == Backend::Postgres {
        // ANALYZE reads every row of a table this small, so its row estimate is exact;
        // a table never analyzed says -1.
        let estimated = count(
            "SELECT CAST(reltuples AS DOUBLE PRECISION) FROM pg_class WHERE relname = 'kpi_run_facts'",
        )
        .await;
        assert_eq!(
            estimated, facts,
            "the planner's row estimate of kpi_run_facts"
        );
    }
}

on_both_backends!(
    campaign_report_matches_the_rows,
    csv_export_has_a_row_per_group,
    unknown_campaigns_and_runs_are_named,
    a_large_run_is_built_with_statistics_of_its_facts,
);
