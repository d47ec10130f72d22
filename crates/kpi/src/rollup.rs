//! Roll-ups of campaign runs, kept current as events arrive and deliveries settle.
//!
//! Each contact's part of each run it belongs to is a set of *facts* (`kpi_run_facts`: run,
//! channel, metric, hour since launch, a count and an amount), computed by one pure function,
//! [`contributions`], from the contact's delivery rows and events. The run totals that reports
//! read (`kpi_run_counts`, per variant, target segment, channel, metric and hour) are the sums
//! of those facts. When a contact's events or deliveries change, [`refresh_runs`] computes its facts
//! again, stores them and adds the difference to the totals, all in one transaction; so a late
//! event, a repeated notification or a recomputation under another attribution model leaves the
//! totals exactly equal to the sums over the raw rows.
//!
//! Who calls it: the ingestion listener [`Rollups`] through [`refresh_events`] (every stored
//! event batch, the tracking endpoints' clicks, opens and unsubscribes included), which also
//! brings the contacts' activity spells up to date. Launch after writing a run's rows
//! ([`build_run`]), the delivery worker after it records outcomes, triggers after they send
//! and the click-burst filter after it flags clicks call [`refresh_runs`] alone. Only
//! the runs whose facts changed are rewritten, so settling a message costs the same however
//! many runs its contact was in before.
//!
//! # The facts of one contact in one run
//!
//! Channel `""` holds figures of the contact, each channel figures of its delivery there:
//!
//! | metric | channel | count | when (hour since launch) |
//! |---|---|---|---|
//! | `audience` | `""` and each channel | 1 (the contact was assigned at launch) | 0 |
//! | `holdout` | `""` and each channel | 1 if held out as control | 0 |
//! | `holdout_reachable` / `treatment_reachable` | `""` | 1 if reachable at launch on any of the campaign's channels | 0 |
//! | `sent` | channel | 1 if the delivery was sent | hour of sending |
//! | `failed`, `pending` (queued or sending), `cancelled` | channel | 1 by status | hour of the last change (0 for pending) |
//! | `suppressed:<reason>` | channel | 1, at launch or by the worker | 0 |
//! | `opened`, `clicked`, `unsubscribed`, `bounced`, `complained` | channel | 1 if at least one `email_open`, `email_click`, `unsubscribe`, `email_bounce`, `email_complaint` event not flagged as a machine's (`properties.machine`) names the delivery (`properties.delivery_id`): unique per delivery | hour of the first |
//! | `recipients` | `""` and each channel | 1 if a delivery was sent | 0 |
//! | `conversions` | channel | goal events attributed to the delivery; amount = their `amount` sum (attributed revenue) | hour of each event |
//! | `converters` | `""` and each channel | 1 if at least one goal event is attributed | 0 |
//! | `itt_converters_t` / `itt_converters_h` | `""` | 1 if the contact is reachable at launch (treatment / holdout) and has a goal event in `[started_at, started_at + window)` | 0 |
//! | `itt_revenue_t` / `itt_revenue_h` | `""` | goal events of the same window; amount = their amount sum | 0 |
//!
//! Reachable at launch: a treatment contact has a row that launch did not suppress (a row the
//! worker suppressed later, after claiming it, has `attempts > 0`); a held-out contact has a
//! `holdout` row without a suppression reason (launch records a held-out contact's reason
//! exactly as a treated one's).
//!
//! Attribution: a goal event of kind K at time t counts for one delivery: among the contact's
//! *sent* deliveries of campaigns whose goal is K with `sent_at <= t < sent_at + window`, the
//! latest (last touch, the default) or the earliest (first touch, per workspace). Events
//! without an amount add 0 to revenue.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use clarion_contacts::{Change, Listener, events::Earliest};
use clarion_model::{ContactId, WorkspaceId, entity::event};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement,
    sea_query::{Expr, ExprTrait, JoinType, OnConflict, Query},
};

use crate::{Attribution, KpiError, settings};

const HOUR_MS: i64 = 3_600_000;
/// Contacts refreshed per transaction; keeps IN lists and statements small.
const CHUNK: usize = 2_000;

/// The event kinds that count as engagement with a delivery, and the metric each feeds.
pub const ENGAGEMENT: [(&str, &str); 5] = [
    ("email_open", "opened"),
    ("email_click", "clicked"),
    ("unsubscribe", "unsubscribed"),
    ("email_bounce", "bounced"),
    ("email_complaint", "complained"),
];

/// One delivery row of a contact, with what its run and campaign say.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFact {
    pub id: i64,
    pub run_id: i64,
    pub variant_id: i64,
    pub segment_id: i64,
    pub channel: String,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
    /// When the run started (launch).
    pub started_at: i64,
    /// The campaign's goal event kind and attribution window.
    pub goal: String,
    pub window_ms: i64,
}

/// One event of a contact, as far as KPIs look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub id: i64,
    pub kind: String,
    pub occurred_at: i64,
    pub amount: Option<f64>,
    /// `properties.delivery_id` of engagement events.
    pub delivery_id: Option<i64>,
    /// Flagged as a machine's (`properties.machine`: bot, privacy proxy, click burst,
    /// honeypot); left out of the engagement counts.
    pub machine: bool,
}

/// Where a fact belongs: run, channel, metric and hour since launch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FactKey {
    pub run_id: i64,
    pub channel: String,
    pub metric: String,
    pub bucket: i64,
}

/// A contact's part of a run total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FactValue {
    pub variant_id: i64,
    pub segment_id: i64,
    pub n: i64,
    pub amount: f64,
}

/// Every fact of one contact, computed from its deliveries and events; see the module docs
/// for what each metric counts.
pub fn contributions(
    deliveries: &[DeliveryFact],
    events: &[EventFact],
    attribution: Attribution,
) -> BTreeMap<FactKey, FactValue> {
    let mut facts: BTreeMap<FactKey, FactValue> = BTreeMap::new();
    let mut by_run: BTreeMap<i64, Vec<&DeliveryFact>> = BTreeMap::new();
    for delivery in deliveries {
        by_run.entry(delivery.run_id).or_default().push(delivery);
    }
    let mut add =
        |run: &DeliveryFact, channel: &str, metric: &str, bucket: i64, n: i64, amount: f64| {
            let entry = facts
                .entry(FactKey {
                    run_id: run.run_id,
                    channel: channel.to_owned(),
                    metric: metric.to_owned(),
                    bucket: Ord::max(bucket, 0),
                })
                .or_insert(FactValue {
                    variant_id: run.variant_id,
                    segment_id: run.segment_id,
                    n: 0,
                    amount: 0.0,
                });
            entry.n += n;
            entry.amount += amount;
        };
    let hour = |run: &DeliveryFact, at: i64| (at - run.started_at).div_euclid(HOUR_MS);

    // Engagement events by delivery, in time order.
    let mut sorted: Vec<&EventFact> = events.iter().collect();
    sorted.sort_by_key(|e| (e.occurred_at, e.id));

    // Attribution of each goal event to one sent delivery.
    let mut attributed: HashMap<i64, Vec<&EventFact>> = HashMap::new();
    for event in &sorted {
        let covering = deliveries.iter().filter(|d| {
            d.status == "sent"
                && d.goal == event.kind
                && d.sent_at
                    .is_some_and(|s| s <= event.occurred_at && event.occurred_at < s + d.window_ms)
        });
        let chosen = match attribution {
            Attribution::LastTouch => covering.max_by_key(|d| (d.sent_at, d.id)),
            Attribution::FirstTouch => covering.min_by_key(|d| (d.sent_at, d.id)),
        };
        if let Some(delivery) = chosen {
            attributed.entry(delivery.id).or_default().push(event);
        }
    }

    for rows in by_run.values() {
        let Some(&first) = rows.first() else {
            continue;
        };
        let holdout = rows.iter().any(|d| d.status == "holdout");
        add(first, "", "audience", 0, 1, 0.0);
        let reachable = if holdout {
            add(first, "", "holdout", 0, 1, 0.0);
            rows.iter()
                .any(|d| d.status == "holdout" && d.reason.is_none())
        } else {
            rows.iter()
                .any(|d| !(d.status == "suppressed" && d.attempts == 0))
        };
        let group = if holdout { "h" } else { "t" };
        if reachable {
            add(
                first,
                "",
                if holdout {
                    "holdout_reachable"
                } else {
                    "treatment_reachable"
                },
                0,
                1,
                0.0,
            );
            let (count, revenue) = sorted
                .iter()
                .filter(|e| {
                    e.kind == first.goal
                        && first.started_at <= e.occurred_at
                        && e.occurred_at < first.started_at + first.window_ms
                })
                .fold((0, 0.0), |(n, sum), e| {
                    (n + 1, sum + e.amount.unwrap_or(0.0))
                });
            if count > 0 {
                add(first, "", &format!("itt_converters_{group}"), 0, 1, 0.0);
                add(
                    first,
                    "",
                    &format!("itt_revenue_{group}"),
                    0,
                    count,
                    revenue,
                );
            }
        }

        let mut recipient = false;
        let mut converter = false;
        for delivery in rows {
            let channel = delivery.channel.as_str();
            add(delivery, channel, "audience", 0, 1, 0.0);
            if holdout {
                add(delivery, channel, "holdout", 0, 1, 0.0);
                continue;
            }
            match delivery.status.as_str() {
                "sent" => {
                    recipient = true;
                    let at = delivery.sent_at.unwrap_or(delivery.updated_at);
                    add(delivery, channel, "sent", hour(delivery, at), 1, 0.0);
                    add(delivery, channel, "recipients", 0, 1, 0.0);
                }
                "failed" => add(
                    delivery,
                    channel,
                    "failed",
                    hour(delivery, delivery.updated_at),
                    1,
                    0.0,
                ),
                "cancelled" => {
                    add(
                        delivery,
                        channel,
                        "cancelled",
                        hour(delivery, delivery.updated_at),
                        1,
                        0.0,
                    );
                }
                "suppressed" => {
                    let reason = delivery.reason.as_deref().unwrap_or("unknown");
                    add(
                        delivery,
                        channel,
                        &format!("suppressed:{reason}"),
                        0,
                        1,
                        0.0,
                    );
                }
                _ => add(delivery, channel, "pending", 0, 1, 0.0),
            }
            for (kind, metric) in ENGAGEMENT {
                if let Some(first_event) = sorted
                    .iter()
                    .find(|e| e.kind == kind && !e.machine && e.delivery_id == Some(delivery.id))
                {
                    add(
                        delivery,
                        channel,
                        metric,
                        hour(delivery, first_event.occurred_at),
                        1,
                        0.0,
                    );
                }
            }
            if let Some(events) = attributed.get(&delivery.id) {
                converter = true;
                add(delivery, channel, "converters", 0, 1, 0.0);
                for event in events {
                    add(
                        delivery,
                        channel,
                        "conversions",
                        hour(delivery, event.occurred_at),
                        1,
                        event.amount.unwrap_or(0.0),
                    );
                }
            }
        }
        if recipient {
            add(first, "", "recipients", 0, 1, 0.0);
        }
        if converter {
            add(first, "", "converters", 0, 1, 0.0);
        }
    }
    facts
}

/// The ingestion listener that keeps the campaign roll-ups current: every stored event batch
/// refreshes the facts of the contacts it touched, and their activity spells from their
/// earliest new event on, before the request answers. The events are stored before it runs,
/// so a failure is logged; [`rebuild_run`] and [`crate::churn::rebuild_spells`] repair.
/// (The goal roll-up needs no listener: the database adds every inserted event to it.)
pub struct Rollups {
    db: DatabaseConnection,
}

impl Rollups {
    pub fn new(db: DatabaseConnection) -> Self {
        Rollups { db }
    }
}

#[async_trait::async_trait]
impl Listener for Rollups {
    async fn ingested(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change<'_>) {
        let Change::Events(earliest) = change else {
            return;
        };
        if let Err(error) = refresh_events(&self.db, workspace, contacts, earliest).await {
            tracing::warn!(%error, contacts = contacts.len(), "KPI roll-ups could not be updated; rebuild the runs concerned");
        }
    }
}

/// Brings the roll-ups up to date after new events of `contacts` were stored (`earliest`:
/// the earliest of each contact and kind): their activity spells from the earliest new event
/// the churn rule looks at, and their run facts. One transaction per chunk of contacts;
/// contacts without deliveries cost one indexed lookup for the facts.
///
/// # Errors
/// Database errors; nothing of the failed chunk is changed then.
pub async fn refresh_events(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    earliest: &[Earliest],
) -> Result<(), KpiError> {
    refresh_after(db, workspace, contacts, Some(earliest)).await
}

/// Computes the run facts of `contacts` again and brings the run totals up to date, after
/// their delivery rows changed (the worker recorded outcomes, a trigger sent, launch wrote
/// them) or their events were flagged (machine clicks): the roll-ups of the events alone
/// (activity spells, goal days) stay as they are. One transaction per chunk of contacts.
///
/// # Errors
/// Database errors; nothing of the failed chunk is changed then.
pub async fn refresh_runs(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
) -> Result<(), KpiError> {
    refresh_after(db, workspace, contacts, None).await
}

/// Refreshes `contacts`: their run facts, and their spells when `earliest` says which new
/// events they have.
async fn refresh_after(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    earliest: Option<&[Earliest]>,
) -> Result<(), KpiError> {
    if contacts.is_empty() {
        return Ok(());
    }
    let kpi = settings::get(db, workspace).await?;
    let attribution = kpi.attribution;
    let rule = crate::churn::Rule::new(&kpi);
    // Each contact's earliest new event of a kind its spells depend on.
    let kinds = rule.kinds();
    let mut since: BTreeMap<i64, i64> = BTreeMap::new();
    for e in earliest.unwrap_or_default() {
        if kinds.contains(&e.kind) {
            since
                .entry(e.contact.0)
                .and_modify(|t| *t = Ord::min(*t, e.occurred_at))
                .or_insert(e.occurred_at);
        }
    }
    let mut ids: Vec<i64> = contacts.iter().map(|c| c.0).collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(CHUNK) {
        let spells: Vec<(i64, i64)> = chunk
            .iter()
            .filter_map(|c| since.get(c).map(|&t| (*c, t)))
            .collect();
        let mut attempt = 1;
        loop {
            match refresh_chunk(db, workspace, chunk, attribution, &rule, &spells).await {
                Err(KpiError::Db(ref error))
                    if attempt < 5 && clarion_contacts::is_retryable(error) =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        }
    }
    Ok(())
}

/// Recomputes every contact of run `run_id` (after launch, or to repair it).
///
/// # Errors
/// Database errors.
pub async fn rebuild_run(db: &DatabaseConnection, run_id: i64) -> Result<(), KpiError> {
    let select = Query::select()
        .column("workspace_id")
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run_id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(());
    };
    let workspace = WorkspaceId(row.try_get("", "workspace_id")?);
    let mut after = i64::MIN;
    loop {
        let page = Query::select()
            .distinct()
            .column("contact_id")
            .from("deliveries")
            .and_where(Expr::col("run_id").eq(run_id))
            .and_where(Expr::col("contact_id").gt(after))
            .order_by("contact_id", sea_orm::Order::Asc)
            .limit(CHUNK as u64)
            .to_owned();
        let rows = db.query_all(&page).await?;
        let contacts: Vec<ContactId> = rows
            .iter()
            .map(|r| r.try_get("", "contact_id").map(ContactId))
            .collect::<Result<_, _>>()?;
        let Some(last) = contacts.last() else {
            break;
        };
        after = last.0;
        refresh_runs(db, workspace, &contacts).await?;
    }
    Ok(())
}

/// Recomputes every run of `workspace` (after its attribution model changed).
///
/// # Errors
/// Database errors.
pub async fn rebuild_workspace(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
) -> Result<(), KpiError> {
    let select = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    for row in db.query_all(&select).await? {
        rebuild_run(db, row.try_get("", "id")?).await?;
    }
    Ok(())
}

/// The advisory lock that set-based builds take exclusively and refreshes share. It uses
/// the two-integer key space, which PostgreSQL keeps apart from the bigint keys of the
/// per-contact refresh locks (`contact id # CONTACT_LOCKS`). It was once the bigint
/// `CONTACT_LOCKS + 1`: the lock of contact 1, so every refresh that touched contact 1 held
/// back all the others (waits of up to 3 s per batch in `bench ingest`).
const BUILD_LOCK: &str = "1179664713, 1";
/// The salt of the per-contact refresh locks' bigint keys.
const CONTACT_LOCKS: i64 = 4_705_957_230_960_885_760;

/// Makes the calling transaction the only writer of KPI roll-ups until it ends: on PostgreSQL
/// it waits for running refreshes and holds new ones back (SQLite transactions that write are
/// one at a time anyway).
///
/// # Errors
/// Database errors.
pub(crate) async fn lock_for_build(txn: &impl ConnectionTrait) -> Result<(), KpiError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({BUILD_LOCK})"))
            .await?;
    }
    Ok(())
}

/// Builds the roll-ups of a run set-based (launch calls it after writing the run's rows;
/// cancelling and retrying after changing many rows): one INSERT ...
/// SELECT of every contact's facts that follow from its delivery rows alone (audience,
/// holdout, reachability, suppressions, statuses), the run totals summed from them, and then
/// the per-contact [`refresh_runs`] of only the contacts that have events a fact could count
/// (engagement or goal events dated or received from the launch on; none at launch unless
/// clocks disagree). Every fact that needs an event needs one of those: engagement names a
/// delivery made at launch or later, and a goal event counts only from the launch (ITT) or
/// a sending (attribution) on. The result is what [`rebuild_run`] computes contact by
/// contact.
///
/// # Errors
/// Database errors; nothing of the set-based step is changed then.
pub async fn build_run(db: &DatabaseConnection, run_id: i64) -> Result<(), KpiError> {
    let select = Query::select()
        .columns([("r", "workspace_id"), ("r", "started_at")])
        .expr_as(Expr::col(("c", "goal_event")), "goal_event")
        .from_as("campaign_runs", "r")
        .join_as(
            JoinType::InnerJoin,
            "campaigns",
            "c",
            Expr::col(("c", "id")).equals(("r", "campaign_id")),
        )
        .and_where(Expr::col(("r", "id")).eq(run_id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(());
    };
    let workspace = WorkspaceId(row.try_get("", "workspace_id")?);
    let started_at: i64 = row.try_get("", "started_at")?;
    let goal: String = row.try_get("", "goal_event")?;
    let backend = db.get_database_backend();
    let p = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    };
    let (r, w) = (p(1), p(2));

    let txn = clarion_contacts::begin_write(db).await?;
    lock_for_build(&txn).await?;
    for table in ["kpi_run_facts", "kpi_run_counts"] {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {table} WHERE run_id = {r}"),
            [run_id.into()],
        ))
        .await?;
    }
    // Each contact's delivery rows of the run, summarised: `h` held out, `hr` held out and
    // reachable (a holdout row without a reason), `reach` treated and reachable (a row launch
    // did not suppress); `v`/`g` the variant and segment (one per contact and run).
    let per_contact = format!(
        "SELECT d.contact_id AS contact_id, MIN(d.variant_id) AS v, MIN(d.segment_id) AS g,                 MAX(CASE WHEN d.status = 'holdout' THEN 1 ELSE 0 END) AS h,                 MAX(CASE WHEN d.status = 'holdout' AND d.reason IS NULL THEN 1 ELSE 0 END) AS hr,                 MAX(CASE WHEN NOT (d.status = 'suppressed' AND d.attempts = 0) THEN 1 ELSE 0 END) AS reach,                 MAX(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END) AS sent          FROM deliveries d WHERE d.run_id = {r} AND d.workspace_id = {w} GROUP BY d.contact_id"
    );
    // The contact's own facts (channel '') and each delivery's (its channel); hours since
    // launch floor like `div_euclid` and never below 0.
    let hour = |at: &str| {
        format!("CASE WHEN {at} < {started_at} THEN 0 ELSE ({at} - {started_at}) / {HOUR_MS} END")
    };
    let facts = format!(
        "SELECT x.contact_id, x.v, x.g, '' AS channel, 'audience' AS metric, 0 AS bucket FROM ({per_contact}) x          UNION ALL SELECT x.contact_id, x.v, x.g, '', 'holdout', 0 FROM ({per_contact}) x WHERE x.h = 1          UNION ALL SELECT x.contact_id, x.v, x.g, '', 'holdout_reachable', 0 FROM ({per_contact}) x WHERE x.h = 1 AND x.hr = 1          UNION ALL SELECT x.contact_id, x.v, x.g, '', 'treatment_reachable', 0 FROM ({per_contact}) x WHERE x.h = 0 AND x.reach = 1          UNION ALL SELECT x.contact_id, x.v, x.g, '', 'recipients', 0 FROM ({per_contact}) x WHERE x.h = 0 AND x.sent = 1          UNION ALL SELECT d.contact_id, d.variant_id, d.segment_id, d.channel, 'audience', 0 FROM deliveries d WHERE d.run_id = {r}          UNION ALL SELECT d.contact_id, d.variant_id, d.segment_id, d.channel,                 CASE WHEN x.h = 1 THEN 'holdout'                      WHEN d.status = 'sent' THEN 'sent'                      WHEN d.status = 'failed' THEN 'failed'                      WHEN d.status = 'cancelled' THEN 'cancelled'                      WHEN d.status = 'suppressed' THEN 'suppressed:' || COALESCE(d.reason, 'unknown')                      ELSE 'pending' END,                 CASE WHEN x.h = 1 THEN 0                      WHEN d.status = 'sent' THEN {sent_hour}                      WHEN d.status IN ('failed', 'cancelled') THEN {updated_hour}                      ELSE 0 END            FROM deliveries d JOIN ({per_contact}) x ON x.contact_id = d.contact_id WHERE d.run_id = {r}          UNION ALL SELECT d.contact_id, d.variant_id, d.segment_id, d.channel, 'recipients', 0            FROM deliveries d JOIN ({per_contact}) x ON x.contact_id = d.contact_id WHERE d.run_id = {r} AND x.h = 0 AND d.status = 'sent'",
        sent_hour = hour("COALESCE(d.sent_at, d.updated_at)"),
        updated_hour = hour("d.updated_at"),
    );
    let written = txn.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO kpi_run_facts (run_id, contact_id, workspace_id, variant_id, segment_id, channel, metric, bucket, n, amount)              SELECT {r}, f.contact_id, {w}, f.v, f.g, f.channel, f.metric, f.bucket, COUNT(*), 0.0 FROM ({facts}) f              GROUP BY f.contact_id, f.v, f.g, f.channel, f.metric, f.bucket"
        ),
        [run_id.into(), workspace.0.into()],
    ))
    .await?
    .rows_affected();
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "INSERT INTO kpi_run_counts (run_id, variant_id, segment_id, channel, metric, bucket, n, amount, amount_sq)              SELECT run_id, variant_id, segment_id, channel, metric, bucket, SUM(n), SUM(amount), SUM(amount * amount)              FROM kpi_run_facts WHERE run_id = {r} GROUP BY run_id, variant_id, segment_id, channel, metric, bucket"
        ),
        [run_id.into()],
    ))
    .await?;
    txn.commit().await?;
    if backend == DbBackend::Postgres && written >= ANALYZE_AFTER_ROWS {
        // A large run grows the facts from few rows to millions in one statement, long
        // before autovacuum looks at the table. Without statistics PostgreSQL takes a
        // chunk's 500 contacts for most of the table and the worker's refresh of every
        // settled batch scans all of it (and its cached plans keep doing so): 50 ms a
        // statement at 100,000 recipients, growing with the table, instead of an index
        // lookup. Sampling costs little and does not block writers.
        db.execute_unprepared("ANALYZE kpi_run_facts").await?;
    }

    // The contacts whose events can add facts: the set-based step leaves them out of
    // nothing, the refresh computes them exactly.
    let mut kinds: Vec<String> = ENGAGEMENT.iter().map(|(k, _)| (*k).to_owned()).collect();
    kinds.push(goal);
    let mut values: Vec<sea_orm::Value> = vec![run_id.into(), workspace.0.into()];
    let mut marks = Vec::new();
    for kind in kinds {
        values.push(kind.into());
        marks.push(p(values.len()));
    }
    values.push(started_at.into());
    let at = p(values.len());
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT DISTINCT d.contact_id AS contact_id FROM deliveries d                  WHERE d.run_id = {r} AND EXISTS (SELECT 1 FROM events e WHERE e.contact_id = d.contact_id                    AND e.workspace_id = {w} AND e.kind IN ({}) AND (e.occurred_at >= {at} OR e.received_at >= {at}))",
                marks.join(", ")
            ),
            values,
        ))
        .await?;
    let contacts: Vec<ContactId> = rows
        .iter()
        .map(|row| row.try_get("", "contact_id").map(ContactId))
        .collect::<Result<_, _>>()?;
    // Launch wrote delivery rows; the contacts' events, and so their event roll-ups, are
    // as they were.
    refresh_runs(db, workspace, &contacts).await
}

/// Facts written by one [`build_run`] from which PostgreSQL's statistics of the table are
/// brought up to date at once.
const ANALYZE_AFTER_ROWS: u64 = 10_000;

/// Changes of the run totals: (run, variant, segment, channel, metric, bucket) -> (count,
/// amount, squares of amounts).
type Deltas = BTreeMap<(i64, i64, i64, String, String, i64), (i64, f64, f64)>;

async fn refresh_chunk(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[i64],
    attribution: Attribution,
    rule: &crate::churn::Rule,
    spells_since: &[(i64, i64)],
) -> Result<(), KpiError> {
    let txn = clarion_contacts::begin_write(db).await?;
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        // Refreshes run side by side, but not while a run or the activity roll-up is built
        // set-based (see `lock_for_build`).
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock_shared({BUILD_LOCK})"
        ))
        .await?;
        // One refresh of a contact at a time: each reads the old facts and writes the
        // difference, so two at once would apply it twice. Locks are taken in id order.
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest($1::bigint[]) # {CONTACT_LOCKS} AS k ORDER BY 1) s"),
            [sea_orm::Value::Array(
                sea_orm::sea_query::ArrayType::BigInt,
                Some(Box::new(contacts.iter().map(|&c| c.into()).collect())),
            )],
        ))
        .await?;
    }
    crate::churn::refresh_spells_since(&txn, workspace, rule, spells_since).await?;
    let deliveries = load_deliveries(&txn, workspace, contacts).await?;
    let old = load_facts(&txn, workspace, contacts).await?;
    if deliveries.is_empty() && old.is_empty() {
        txn.commit().await?;
        return Ok(());
    }
    let events = load_events(&txn, workspace, &deliveries).await?;

    // Facts are compared and rewritten per contact and run: settling one delivery rewrites
    // the facts of its run, not those of every run the contact was ever in.
    let mut deltas: Deltas = BTreeMap::new();
    let mut removed: Vec<(i64, Vec<sea_orm::Value>)> = Vec::new();
    let mut inserts: Vec<(i64, FactKey, FactValue)> = Vec::new();
    let touched: BTreeSet<i64> = deliveries.keys().chain(old.keys()).copied().collect();
    let empty_d = Vec::new();
    let empty_e = Vec::new();
    let empty_f = BTreeMap::new();
    for contact in touched {
        let new = contributions(
            deliveries.get(&contact).unwrap_or(&empty_d),
            events.get(&contact).unwrap_or(&empty_e),
            attribution,
        );
        let before = old.get(&contact).unwrap_or(&empty_f);
        if &new == before {
            continue;
        }
        // Only the facts that changed are rewritten: settling a delivery turns its `pending`
        // into `sent` and `recipients` and leaves the audience and reachability facts alone.
        removed.extend(
            before
                .iter()
                .filter(|(key, value)| new.get(key) != Some(value))
                .map(|(key, _)| {
                    let FactKey {
                        run_id,
                        channel,
                        metric,
                        bucket,
                    } = key.clone();
                    (
                        contact,
                        vec![run_id.into(), channel.into(), metric.into(), bucket.into()],
                    )
                }),
        );
        inserts.extend(
            new.iter()
                .filter(|(key, value)| before.get(key) != Some(value))
                .map(|(key, value)| (contact, key.clone(), *value)),
        );
        let (before, new) = (per_run(before), per_run(&new));
        let runs: BTreeSet<i64> = before.keys().chain(new.keys()).copied().collect();
        for run in runs {
            let (was, now) = (before.get(&run), new.get(&run));
            if was == now {
                continue;
            }
            for (facts, sign) in [(was, -1.0), (now, 1.0)] {
                for (key, value) in facts.into_iter().flatten() {
                    let entry = deltas
                        .entry((
                            key.run_id,
                            value.variant_id,
                            value.segment_id,
                            key.channel.clone(),
                            key.metric.clone(),
                            key.bucket,
                        ))
                        .or_insert((0, 0.0, 0.0));
                    entry.0 += if sign > 0.0 { value.n } else { -value.n };
                    entry.1 += sign * value.amount;
                    entry.2 += sign * value.amount * value.amount;
                }
            }
        }
    }
    if !(removed.is_empty() && inserts.is_empty()) {
        crate::delete_keys(
            &txn,
            "kpi_run_facts",
            &["run_id", "channel", "metric", "bucket"],
            workspace,
            &removed,
        )
        .await?;
        write_facts(&txn, workspace, &inserts).await?;
        write_deltas(&txn, &deltas).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A contact's facts grouped by run.
fn per_run(facts: &BTreeMap<FactKey, FactValue>) -> BTreeMap<i64, Vec<(&FactKey, &FactValue)>> {
    let mut runs: BTreeMap<i64, Vec<(&FactKey, &FactValue)>> = BTreeMap::new();
    for (key, value) in facts {
        runs.entry(key.run_id).or_default().push((key, value));
    }
    runs
}

async fn load_deliveries(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[i64],
) -> Result<HashMap<i64, Vec<DeliveryFact>>, KpiError> {
    let select = Query::select()
        .columns([
            ("d", "id"),
            ("d", "contact_id"),
            ("d", "run_id"),
            ("d", "variant_id"),
            ("d", "segment_id"),
            ("d", "channel"),
            ("d", "status"),
            ("d", "reason"),
            ("d", "attempts"),
            ("d", "sent_at"),
            ("d", "updated_at"),
        ])
        .expr_as(Expr::col(("r", "started_at")), "started_at")
        .expr_as(Expr::col(("c", "goal_event")), "goal_event")
        .expr_as(Expr::col(("c", "goal_window_hours")), "goal_window_hours")
        .from_as("deliveries", "d")
        .join_as(
            JoinType::InnerJoin,
            "campaign_runs",
            "r",
            Expr::col(("r", "id")).equals(("d", "run_id")),
        )
        .join_as(
            JoinType::InnerJoin,
            "campaigns",
            "c",
            Expr::col(("c", "id")).equals(("d", "campaign_id")),
        )
        .and_where(Expr::col(("d", "workspace_id")).eq(workspace.0))
        .and_where(Expr::col(("d", "contact_id")).is_in(contacts.iter().copied()))
        .to_owned();
    let mut out: HashMap<i64, Vec<DeliveryFact>> = HashMap::new();
    for row in db.query_all(&select).await? {
        let hours: i64 = row.try_get("", "goal_window_hours")?;
        out.entry(row.try_get("", "contact_id")?)
            .or_default()
            .push(DeliveryFact {
                id: row.try_get("", "id")?,
                run_id: row.try_get("", "run_id")?,
                variant_id: row.try_get("", "variant_id")?,
                segment_id: row.try_get("", "segment_id")?,
                channel: row.try_get("", "channel")?,
                status: row.try_get("", "status")?,
                reason: row.try_get("", "reason")?,
                attempts: row.try_get("", "attempts")?,
                sent_at: row.try_get("", "sent_at")?,
                updated_at: row.try_get("", "updated_at")?,
                started_at: row.try_get("", "started_at")?,
                goal: row.try_get("", "goal_event")?,
                window_ms: hours.saturating_mul(HOUR_MS),
            });
    }
    Ok(out)
}

/// The events that can feed the facts of these deliveries' contacts: engagement and the
/// campaigns' goal kinds, from the earliest launch on.
async fn load_events(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    deliveries: &HashMap<i64, Vec<DeliveryFact>>,
) -> Result<HashMap<i64, Vec<EventFact>>, KpiError> {
    let mut out: HashMap<i64, Vec<EventFact>> = HashMap::new();
    let Some(since) = deliveries.values().flatten().map(|d| d.started_at).min() else {
        return Ok(out);
    };
    let mut kinds: HashSet<String> = ENGAGEMENT.iter().map(|(k, _)| (*k).to_owned()).collect();
    kinds.extend(deliveries.values().flatten().map(|d| d.goal.clone()));
    // `workspace_id + 0` keeps the planners on the index (contact, kind, time): with the
    // workspace as a plain equality they may walk (workspace, kind, time) from the launch
    // on, every contact's opens and clicks, for each chunk of contacts.
    let rows = event::Entity::find()
        .filter(Expr::col(event::Column::WorkspaceId).add(0).eq(workspace.0))
        .filter(event::Column::ContactId.is_in(deliveries.keys().copied()))
        .filter(event::Column::Kind.is_in(kinds))
        .filter(event::Column::OccurredAt.gte(since))
        .all(db)
        .await?;
    for row in rows {
        let delivery_id = if ENGAGEMENT.iter().any(|(k, _)| *k == row.kind) {
            row.properties
                .get("delivery_id")
                .and_then(serde_json::Value::as_i64)
        } else {
            None
        };
        let machine = row.properties.get("machine").is_some_and(|m| !m.is_null());
        out.entry(row.contact_id).or_default().push(EventFact {
            machine,
            id: row.id,
            kind: row.kind,
            occurred_at: row.occurred_at,
            amount: row.amount,
            delivery_id,
        });
    }
    Ok(out)
}

async fn load_facts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[i64],
) -> Result<HashMap<i64, BTreeMap<FactKey, FactValue>>, KpiError> {
    let select = Query::select()
        .columns([
            "contact_id",
            "run_id",
            "variant_id",
            "segment_id",
            "channel",
            "metric",
            "bucket",
            "n",
            "amount",
        ])
        .from("kpi_run_facts")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("contact_id").is_in(contacts.iter().copied()))
        .to_owned();
    let mut out: HashMap<i64, BTreeMap<FactKey, FactValue>> = HashMap::new();
    for row in db.query_all(&select).await? {
        out.entry(row.try_get("", "contact_id")?)
            .or_default()
            .insert(
                FactKey {
                    run_id: row.try_get("", "run_id")?,
                    channel: row.try_get("", "channel")?,
                    metric: row.try_get("", "metric")?,
                    bucket: row.try_get("", "bucket")?,
                },
                FactValue {
                    variant_id: row.try_get("", "variant_id")?,
                    segment_id: row.try_get("", "segment_id")?,
                    n: row.try_get("", "n")?,
                    amount: row.try_get("", "amount")?,
                },
            );
    }
    Ok(out)
}

async fn write_facts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    facts: &[(i64, FactKey, FactValue)],
) -> Result<(), KpiError> {
    let per_statement = clarion_contacts::rows_per_statement(db.get_database_backend(), 10);
    for chunk in facts.chunks(per_statement) {
        let mut insert = Query::insert();
        insert.into_table("kpi_run_facts").columns([
            "run_id",
            "contact_id",
            "workspace_id",
            "variant_id",
            "segment_id",
            "channel",
            "metric",
            "bucket",
            "n",
            "amount",
        ]);
        for (contact, key, value) in chunk {
            insert
                .values([
                    key.run_id.into(),
                    (*contact).into(),
                    workspace.0.into(),
                    value.variant_id.into(),
                    value.segment_id.into(),
                    key.channel.clone().into(),
                    key.metric.clone().into(),
                    key.bucket.into(),
                    value.n.into(),
                    value.amount.into(),
                ])
                .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Adds the differences to the run totals, in key order so that concurrent refreshes lock
/// the same rows in the same order.
async fn write_deltas(db: &impl ConnectionTrait, deltas: &Deltas) -> Result<(), KpiError> {
    let rows: Vec<_> = deltas
        .iter()
        .filter(|(_, (n, amount, sq))| *n != 0 || *amount != 0.0 || *sq != 0.0)
        .collect();
    let per_statement = clarion_contacts::rows_per_statement(db.get_database_backend(), 9);
    for chunk in rows.chunks(per_statement) {
        let mut insert = Query::insert();
        insert.into_table("kpi_run_counts").columns([
            "run_id",
            "variant_id",
            "segment_id",
            "channel",
            "metric",
            "bucket",
            "n",
            "amount",
            "amount_sq",
        ]);
        for ((run, variant, segment, channel, metric, bucket), (n, amount, sq)) in chunk {
            insert
                .values([
                    (*run).into(),
                    (*variant).into(),
                    (*segment).into(),
                    channel.clone().into(),
                    metric.clone().into(),
                    (*bucket).into(),
                    (*n).into(),
                    (*amount).into(),
                    (*sq).into(),
                ])
                .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        }
        insert.on_conflict(
            OnConflict::columns([
                "run_id",
                "variant_id",
                "segment_id",
                "channel",
                "metric",
                "bucket",
            ])
            .value("n", Expr::cust("kpi_run_counts.n + excluded.n"))
            .value(
                "amount",
                Expr::cust("kpi_run_counts.amount + excluded.amount"),
            )
            .value(
                "amount_sq",
                Expr::cust("kpi_run_counts.amount_sq + excluded.amount_sq"),
            )
            .to_owned(),
        );
        db.execute(&insert).await?;
    }
    Ok(())
}
