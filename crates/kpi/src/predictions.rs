//! Predicted CLV for a whole workspace, stored for reports and rules.
//!
//! [`recompute`] reads every contact's purchase events (kind `purchase_kind`, at or before
//! `now`, amounts as they are; refunds are not purchases), summarises each buyer
//! ([`crate::clv`]: repeat purchase days, recency, age, mean repeat value), fits BG/NBD and
//! Gamma-Gamma on all of them, and rewrites in one transaction the workspace's fit
//! (`clv_fits`) and every buyer's predictions (`contact_predictions`): `p_alive`,
//! `expected_purchases` and `predicted_clv` over the configured horizon, and
//! `expected_order_value`. Rules read these as traits of the same names; a contact without
//! a purchase has none. When a model cannot be fitted (no repeat purchase yet), the
//! workspace's fit and predictions are removed rather than left stale, and the summary says
//! why; without a Gamma-Gamma fit, order value and CLV are NULL.

use std::time::Instant;

use clarion_model::{ContactId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, TransactionTrait,
    Value,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::KpiError;
use crate::clv::{
    self, BgNbdFit, ClvSettings, CustomerSummary, GammaGammaFit, Prediction, TimeUnit,
};

const DAY_MILLIS: i64 = 86_400_000;

/// Contact ids per read of purchase days, and rows per INSERT of predictions.
const CONTACT_RANGE: i64 = 20_000;
const INSERT_ROWS: usize = 1_000;

const _: () = assert!(
    DAY_MILLIS == 86_400_000,
    "the SQL below divides by this literal"
);

/// What one [`recompute`] did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PredictionSummary {
    pub computed_at: Timestamp,
    /// Contacts with at least one purchase by `computed_at`.
    pub customers: u64,
    /// Of them, those with a repeat purchase day.
    pub repeat_customers: u64,
    pub bg_nbd: Option<BgNbdFit>,
    pub gamma_gamma: Option<GammaGammaFit>,
    /// Why a model was not fitted, when one was not.
    pub not_fitted: Option<String>,
    pub elapsed_ms: u64,
}

/// The stored predictions of one contact.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, FromQueryResult)]
pub struct ContactPrediction {
    pub frequency: i64,
    pub recency: f64,
    pub age: f64,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub expected_order_value: Option<f64>,
    pub predicted_clv: Option<f64>,
    pub computed_at: i64,
}

/// SQL text with bound values, numbered `$n` on PostgreSQL and `?` on SQLite.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        if self.backend == DbBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

#[derive(FromQueryResult)]
struct DayRow {
    contact_id: i64,
    day: i64,
    amount: f64,
}

#[derive(FromQueryResult)]
struct Bounds {
    low: Option<i64>,
    high: Option<i64>,
}

/// The purchase filter shared by both reads.
fn purchases_of(sql: &mut Sql, workspace: WorkspaceId, now: Timestamp, purchase_kind: &str) {
    sql.push(" FROM events WHERE workspace_id = ")
        .bind(workspace.0)
        .push(" AND kind = ")
        .bind(purchase_kind.to_owned())
        .push(" AND occurred_at >= 0 AND occurred_at <= ")
        .bind(now.millis());
}

/// Every buyer's summary at `now`, read as (contact, day) totals for one range of contact ids
/// at a time (the events' (contact, kind, time) index serves each range), so memory holds
/// the summaries, not the events.
async fn summaries(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    now: Timestamp,
    purchase_kind: &str,
    unit: TimeUnit,
) -> Result<Vec<(ContactId, CustomerSummary)>, KpiError> {
    let backend = db.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("SELECT MIN(contact_id) AS low, MAX(contact_id) AS high");
    purchases_of(&mut sql, workspace, now, purchase_kind);
    let Some(Bounds {
        low: Some(low),
        high: Some(high),
    }) = Bounds::find_by_statement(sql.build()).one(db).await?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut from = low;
    while from <= high {
        let to = from.saturating_add(CONTACT_RANGE);
        let mut sql = Sql::new(backend);
        // Whole UTC days of non-negative milliseconds; the literal divisor keeps the
        // grouping expression identical to the selected one on PostgreSQL.
        sql.push("SELECT contact_id, occurred_at / 86400000 AS day, CAST(SUM(COALESCE(amount, 0)) AS DOUBLE PRECISION) AS amount");
        purchases_of(&mut sql, workspace, now, purchase_kind);
        sql.push(" AND contact_id >= ")
            .bind(from)
            .push(" AND contact_id < ")
            .bind(to)
            .push(" GROUP BY contact_id, occurred_at / 86400000 ORDER BY contact_id, day");
        let rows = DayRow::find_by_statement(sql.build()).all(db).await?;
        for group in rows.chunk_by(|x, y| x.contact_id == y.contact_id) {
            let days: Vec<(i64, f64)> = group.iter().map(|r| (r.day, r.amount)).collect();
            if let Some(summary) = clv::summarize_days(&days, now.millis(), unit) {
                out.push((ContactId(group[0].contact_id), summary));
            }
        }
        from = to;
    }
    Ok(out)
}

/// Fits the models on the workspace's buyers and rewrites its fit and predictions (module
/// docs). `settings` is checked first.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn recompute(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
    purchase_kind: &str,
    settings: &ClvSettings,
) -> Result<PredictionSummary, KpiError> {
    settings.check()?;
    let started = Instant::now();
    let customers = summaries(db, workspace, now, purchase_kind, settings.unit).await?;
    let just: Vec<CustomerSummary> = customers.iter().map(|(_, c)| *c).collect();
    let repeat_customers = just.iter().filter(|c| c.frequency > 0).count() as u64;
    let mut not_fitted = None;
    let bg_nbd = match clv::fit_bgnbd(&just) {
        Ok(fit) => Some(fit),
        Err(KpiError::Model { model, message }) => {
            not_fitted = Some(format!("{model}: {message}"));
            None
        }
        Err(other) => return Err(other),
    };
    let gamma_gamma = match bg_nbd.map(|_| clv::fit_gamma_gamma(&just)) {
        Some(Ok(fit)) => Some(fit),
        Some(Err(KpiError::Model { model, message })) => {
            not_fitted = Some(format!("{model}: {message}"));
            None
        }
        Some(Err(other)) => return Err(other),
        None => None,
    };

    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    for table in ["contact_predictions", "clv_fits"] {
        let mut delete = Sql::new(backend);
        delete
            .push(&format!("DELETE FROM {table} WHERE workspace_id = "))
            .bind(workspace.0);
        txn.execute_raw(delete.build()).await?;
    }
    if let Some(bg) = &bg_nbd {
        let gg = gamma_gamma.map(|f| f.params);
        for chunk in customers.chunks(INSERT_ROWS) {
            let mut insert = Sql::new(backend);
            insert.push(
                "INSERT INTO contact_predictions (contact_id, workspace_id, frequency, recency, age, \
                 p_alive, expected_purchases, expected_order_value, predicted_clv, computed_at) VALUES ",
            );
            for (i, (contact, c)) in chunk.iter().enumerate() {
                let p = predicted(&bg.params, gg.as_ref(), c, settings);
                insert.push(if i == 0 { "(" } else { ", (" });
                push_row(&mut insert, contact.0, workspace, c, &p, now);
            }
            txn.execute_raw(insert.build()).await?;
        }
        let elapsed_ms = started.elapsed().as_millis() as i64;
        let mut insert = Sql::new(backend);
        insert
            .push(
                "INSERT INTO clv_fits (workspace_id, computed_at, unit, horizon_days, step_days, discount_rate, \
                 customers, r, alpha, a, b, bg_log_likelihood, repeat_customers, p, q, gamma, gg_log_likelihood, \
                 elapsed_ms) VALUES (",
            )
            .bind(workspace.0)
            .push(", ")
            .bind(now.millis())
            .push(", ")
            .bind(unit_name(settings.unit).to_owned())
            .push(", ")
            .bind(settings.horizon_days)
            .push(", ")
            .bind(settings.step_days)
            .push(", ")
            .bind(settings.discount_rate)
            .push(", ")
            .bind(customers.len() as i64)
            .push(", ")
            .bind(bg.params.r)
            .push(", ")
            .bind(bg.params.alpha)
            .push(", ")
            .bind(bg.params.a)
            .push(", ")
            .bind(bg.params.b)
            .push(", ")
            .bind(bg.quality.log_likelihood)
            .push(", ")
            .bind(repeat_customers as i64)
            .push(", ")
            .bind(gamma_gamma.map(|f| f.params.p))
            .push(", ")
            .bind(gamma_gamma.map(|f| f.params.q))
            .push(", ")
            .bind(gamma_gamma.map(|f| f.params.gamma))
            .push(", ")
            .bind(gamma_gamma.map(|f| f.quality.log_likelihood))
            .push(", ")
            .bind(elapsed_ms)
            .push(")");
        txn.execute_raw(insert.build()).await?;
    }
    txn.commit().await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        customers = customers.len(),
        repeat_customers,
        fitted = bg_nbd.is_some(),
        not_fitted = not_fitted.as_deref().unwrap_or(""),
        elapsed_ms,
        "clv predictions recomputed"
    );
    Ok(PredictionSummary {
        computed_at: now,
        customers: customers.len() as u64,
        repeat_customers,
        bg_nbd,
        gamma_gamma,
        not_fitted,
        elapsed_ms,
    })
}

/// Contacts per read and write of [`refresh_contacts`].
const REFRESH_CHUNK: usize = 1_000;

/// Rewrites the predictions of `contacts` (of `workspace`) as of `now` with the workspace's
/// stored fit, after their purchases changed: each contact's summary is read again from its
/// purchase events, the fitted parameters are kept (the next [`recompute`] fits them again
/// on every buyer), and the horizon, discounting and unit are the fit's, so a contact's
/// figures stay comparable with the others'. Without a stored fit nothing is written.
/// Returns the contacts written.
pub async fn refresh_contacts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    now: Timestamp,
    purchase_kind: &str,
) -> Result<u64, KpiError> {
    if contacts.is_empty() {
        return Ok(0);
    }
    let Some(fit) = stored_fit(db, workspace).await? else {
        return Ok(0);
    };
    let settings = ClvSettings {
        horizon_days: fit.horizon_days,
        step_days: fit.step_days,
        discount_rate: fit.discount_rate,
        unit: if fit.unit == unit_name(TimeUnit::Weeks) {
            TimeUnit::Weeks
        } else {
            TimeUnit::Days
        },
    };
    let bg = clv::BgNbd {
        r: fit.r,
        alpha: fit.alpha,
        a: fit.a,
        b: fit.b,
    };
    let gg = match (fit.p, fit.q, fit.gamma) {
        (Some(p), Some(q), Some(gamma)) => Some(clv::GammaGamma { p, q, gamma }),
        _ => None,
    };
    let backend = db.get_database_backend();
    let mut written = 0;
    for chunk in contacts.chunks(REFRESH_CHUNK) {
        let mut sql = Sql::new(backend);
        // The workspace as an expression, so that the contact index serves the read even
        // without statistics (see `clarion_segment::traits`).
        sql.push("SELECT contact_id, occurred_at / 86400000 AS day, CAST(SUM(COALESCE(amount, 0)) AS DOUBLE PRECISION) AS amount \
             FROM events WHERE workspace_id + 0 = ")
            .bind(workspace.0)
            .push(" AND kind = ")
            .bind(purchase_kind.to_owned())
            .push(" AND occurred_at >= 0 AND occurred_at <= ")
            .bind(now.millis())
            .push(" AND contact_id IN (");
        for (i, contact) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(contact.0);
        }
        sql.push(") GROUP BY contact_id, occurred_at / 86400000 ORDER BY contact_id, day");
        let rows = DayRow::find_by_statement(sql.build()).all(db).await?;
        let mut insert = Sql::new(backend);
        insert.push(
            "INSERT INTO contact_predictions (contact_id, workspace_id, frequency, recency, age, \
             p_alive, expected_purchases, expected_order_value, predicted_clv, computed_at) VALUES ",
        );
        let mut values = 0;
        for group in rows.chunk_by(|x, y| x.contact_id == y.contact_id) {
            let days: Vec<(i64, f64)> = group.iter().map(|r| (r.day, r.amount)).collect();
            let Some(c) = clv::summarize_days(&days, now.millis(), settings.unit) else {
                continue;
            };
            let p = predicted(&bg, gg.as_ref(), &c, &settings);
            insert.push(if values == 0 { "(" } else { ", (" });
            values += 1;
            push_row(&mut insert, group[0].contact_id, workspace, &c, &p, now);
        }
        if values == 0 {
            continue;
        }
        insert.push(
            " ON CONFLICT (contact_id) DO UPDATE SET workspace_id = excluded.workspace_id, \
             frequency = excluded.frequency, recency = excluded.recency, age = excluded.age, \
             p_alive = excluded.p_alive, expected_purchases = excluded.expected_purchases, \
             expected_order_value = excluded.expected_order_value, \
             predicted_clv = excluded.predicted_clv, computed_at = excluded.computed_at",
        );
        written += db.execute_raw(insert.build()).await?.rows_affected();
    }
    Ok(written)
}

/// The values of one `contact_predictions` row, in the column order both inserts name.
fn push_row(
    insert: &mut Sql,
    contact: i64,
    workspace: WorkspaceId,
    c: &CustomerSummary,
    p: &Prediction,
    now: Timestamp,
) {
    insert
        .bind(contact)
        .push(", ")
        .bind(workspace.0)
        .push(", ")
        .bind(i64::from(c.frequency))
        .push(", ")
        .bind(c.recency)
        .push(", ")
        .bind(c.age)
        .push(", ")
        .bind(p.p_alive)
        .push(", ")
        .bind(p.expected_purchases)
        .push(", ")
        .bind(p.expected_order_value)
        .push(", ")
        .bind(p.predicted_clv)
        .push(", ")
        .bind(now.millis())
        .push(")");
}

/// One customer's predictions; order value and CLV only with a Gamma-Gamma fit.
fn predicted(
    bg: &clv::BgNbd,
    gg: Option<&clv::GammaGamma>,
    customer: &CustomerSummary,
    settings: &ClvSettings,
) -> Prediction {
    match gg {
        Some(gg) => clv::predict(bg, gg, customer, settings),
        None => Prediction {
            p_alive: bg.p_alive(customer),
            expected_purchases: bg
                .expected_purchases(customer, settings.horizon_days / settings.unit.days()),
            expected_order_value: None,
            predicted_clv: None,
        },
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Days => "days",
        TimeUnit::Weeks => "weeks",
    }
}

/// A workspace's stored fit, as [`recompute`] wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, FromQueryResult)]
pub struct StoredFit {
    pub computed_at: i64,
    pub unit: String,
    pub horizon_days: f64,
    pub step_days: f64,
    pub discount_rate: f64,
    pub customers: i64,
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub bg_log_likelihood: f64,
    pub repeat_customers: i64,
    pub p: Option<f64>,
    pub q: Option<f64>,
    pub gamma: Option<f64>,
    pub gg_log_likelihood: Option<f64>,
    pub elapsed_ms: i64,
}

/// The workspace's last fit; `None` when none was made (or it could not be).
pub async fn stored_fit(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Option<StoredFit>, KpiError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT computed_at, unit, horizon_days, step_days, discount_rate, customers, r, alpha, a, b, \
         bg_log_likelihood, repeat_customers, p, q, gamma, gg_log_likelihood, elapsed_ms FROM clv_fits \
         WHERE workspace_id = ",
    )
    .bind(workspace.0);
    Ok(StoredFit::find_by_statement(sql.build()).one(db).await?)
}

/// One contact's stored predictions; `None` without a purchase (or a fit).
pub async fn for_contact(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contact: ContactId,
) -> Result<Option<ContactPrediction>, KpiError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT frequency, recency, age, p_alive, expected_purchases, expected_order_value, predicted_clv, \
         computed_at FROM contact_predictions WHERE contact_id = ",
    )
    .bind(contact.0)
    .push(" AND workspace_id = ")
    .bind(workspace.0);
    Ok(ContactPrediction::find_by_statement(sql.build())
        .one(db)
        .await?)
}
