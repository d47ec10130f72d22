//! Marketing spend: what a workspace paid for one campaign or one channel over a period, the
//! numerator of customer acquisition cost ([`crate::cac`]).
//!
//! A spend is an exact amount, greater than 0, in an ISO 4217 currency, stored in the
//! currency's minor units (cents for EUR, yen for JPY), so an amount may have at most as many
//! decimal places as its currency (trailing zeros aside). Currencies without a minor unit
//! in the standard (gold, special drawing rights, the test and "no currency" codes) are
//! refused. Its period is `[from, to)`. It is for exactly one of a campaign of the workspace
//! (`campaign_id`) or a channel (`channel`: `email`, `webhook`). Deleting a campaign deletes
//! its spend with its deliveries.

use clarion_model::{Channel, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, Order, QueryResult,
    sea_query::{Expr, ExprTrait, Query, SelectStatement},
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::KpiError;

/// The largest amount in minor units (10^15): exact in a 64-bit float as well.
const MAX_MINOR: i64 = 1_000_000_000_000_000;
/// The longest label.
pub const LABEL_MAX: usize = 200;

/// A currency spend can be recorded in: registered in ISO 4217 with a minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendCurrency {
    code: &'static str,
    /// Decimal places of the minor unit.
    exponent: u32,
}

impl SpendCurrency {
    /// The currency of `code` (three capital letters).
    ///
    /// # Errors
    /// [`KpiError::Invalid`] naming `field` for a code ISO 4217 does not list, or one without
    /// a minor unit.
    pub fn parse(field: &str, code: &str) -> Result<Self, KpiError> {
        let iso = iso_currency::Currency::from_code(code).ok_or_else(|| {
            KpiError::invalid(
                field,
                format!("{code:?} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)"),
            )
        })?;
        let exponent = iso.exponent().ok_or_else(|| {
            KpiError::invalid(
                field,
                format!("{code} has no minor unit in ISO 4217 (a metal, fund or reserved code); record spend in a currency of money"),
            )
        })?;
        Ok(SpendCurrency {
            code: iso.code(),
            exponent: u32::from(exponent),
        })
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    /// Decimal places of the currency's minor unit.
    pub fn exponent(self) -> u32 {
        self.exponent
    }

    /// One major unit in minor units (100 for EUR, 1 for JPY).
    pub fn scale(self) -> i64 {
        10_i64.pow(self.exponent)
    }

    /// Reads a decimal amount (`1250`, `1250.5`, `1250.50`) into minor units.
    ///
    /// # Errors
    /// [`KpiError::Invalid`] naming `amount`: not a plain decimal, 0 or less, more decimal
    /// places than the currency has, or above 10^15 minor units.
    pub fn minor_units(self, text: &str) -> Result<i64, KpiError> {
        let invalid = |message: String| KpiError::invalid("amount", message);
        if text.starts_with('-') {
            return Err(invalid(format!("must be more than 0, not {text}")));
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (text.contains('.') && !digits(fraction)) {
            return Err(invalid(format!(
                "{text:?} is not a decimal amount such as 1250.00"
            )));
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > self.exponent as usize {
            return Err(invalid(format!(
                "{} has {} decimal place(s); {text} has more",
                self.code, self.exponent
            )));
        }
        let whole = whole.trim_start_matches('0');
        let too_large = || invalid(format!("{text} is too large (at most 10^15 minor units)"));
        if whole.len() > 16 {
            return Err(too_large());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let padded = format!("{fraction:0<width$}", width = self.exponent as usize);
        let fraction: i64 = if padded.is_empty() {
            0
        } else {
            padded.parse().map_err(|_| too_large())?
        };
        let minor = whole
            .checked_mul(self.scale())
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(too_large)?;
        if minor == 0 {
            return Err(invalid(format!("must be more than 0, not {text}")));
        }
        if minor > MAX_MINOR {
            return Err(too_large());
        }
        Ok(minor)
    }

    /// Minor units as a decimal with exactly the currency's places (`1250.50`).
    pub fn format(self, minor: i64) -> String {
        if self.exponent == 0 {
            return minor.to_string();
        }
        let scale = self.scale();
        format!(
            "{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = self.exponent as usize
        )
    }

    /// Minor units in major units, as a float for reports.
    pub fn major(self, minor: f64) -> f64 {
        minor / self.scale() as f64
    }
}

/// An amount as the API receives it: a decimal string (`"1250.50"`, exact) or a JSON number.
#[derive(Debug, Clone, PartialEq)]
pub struct AmountText(pub String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(deserializer) {
            // Display gives the shortest text that reads back as the same number, never an
            // exponent: 0.1 is "0.1", 1250.5 is "1250.5".
            Ok(Raw::Number(n)) => Ok(AmountText(n.to_string())),
            Ok(Raw::Text(t)) => Ok(AmountText(t)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a decimal amount, as a string such as \"1250.00\" or a number",
            )),
        }
    }
}

/// The OpenAPI schema of an amount: a decimal string or a positive number.
pub fn amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]+(\.[0-9]+)?$"))
                .examples(["1250.00"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0)),
        )
        .description(Some(
            "More than 0, with at most the currency's decimal places (2 for EUR, 0 for JPY), at most 10^15 minor units",
        ))
        .build()
        .into()
}

/// A spend to record, or the new content of one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendInput {
    /// The amount paid, as a decimal string (exact) or a number.
    #[schema(schema_with = amount_schema)]
    pub amount: AmountText,
    /// ISO 4217 code of a currency with a minor unit.
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// Start of the period paid for (RFC 3339), included.
    pub from: Timestamp,
    /// End of the period (RFC 3339), excluded; after `from`.
    pub to: Timestamp,
    /// The campaign paid for; give this or `channel`, not both.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub campaign_id: Option<i64>,
    /// The channel paid for (e.g. an email service's invoice); give this or `campaign_id`.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// What it was, e.g. "March newsletter design".
    #[serde(default)]
    #[schema(max_length = 200)]
    pub label: Option<String>,
}

/// A recorded spend.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Spend {
    pub id: i64,
    /// Exactly, with the currency's decimal places (`"1250.00"`, `"9800"` for JPY).
    #[schema(example = "1250.00")]
    pub amount: String,
    #[schema(example = "EUR")]
    pub currency: String,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The campaign paid for, or null for a channel's spend.
    pub campaign_id: Option<i64>,
    /// The channel paid for, or null for a campaign's spend.
    pub channel: Option<Channel>,
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which spends a list shows; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct SpendFilter {
    pub campaign_id: Option<i64>,
    pub channel: Option<Channel>,
    pub currency: Option<String>,
    /// Spends whose period ends after this moment.
    pub from: Option<Timestamp>,
    /// Spends whose period starts before this moment.
    pub to: Option<Timestamp>,
}

/// A checked input, ready to store.
struct Checked {
    minor: i64,
    currency: SpendCurrency,
    from: i64,
    to: i64,
    campaign_id: Option<i64>,
    channel: Option<Channel>,
    label: Option<String>,
}

async fn check(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    input: SpendInput,
) -> Result<Checked, KpiError> {
    let currency = SpendCurrency::parse("currency", &input.currency)?;
    let minor = currency.minor_units(&input.amount.0)?;
    if input.from >= input.to {
        return Err(KpiError::invalid("to", "must lie after from"));
    }
    match (input.campaign_id, input.channel) {
        (Some(_), Some(_)) => {
            return Err(KpiError::invalid(
                "channel",
                "give campaign_id or channel, not both: a campaign's spend covers its channels",
            ));
        }
        (None, None) => {
            return Err(KpiError::invalid(
                "campaign_id",
                "give the campaign (campaign_id) or the channel (channel) the spend is for",
            ));
        }
        (Some(campaign), None) => {
            let select = Query::select()
                .column("id")
                .from("campaigns")
                .and_where(Expr::col("id").eq(campaign))
                .and_where(Expr::col("workspace_id").eq(workspace.0))
                .to_owned();
            if db.query_one(&select).await?.is_none() {
                return Err(KpiError::invalid(
                    "campaign_id",
                    format!("no campaign {campaign} in this workspace"),
                ));
            }
        }
        (None, Some(_)) => {}
    }
    if let Some(label) = &input.label
        && label.chars().count() > LABEL_MAX
    {
        return Err(KpiError::invalid(
            "label",
            format!("at most {LABEL_MAX} characters"),
        ));
    }
    Ok(Checked {
        minor,
        currency,
        from: input.from.millis(),
        to: input.to.millis(),
        campaign_id: input.campaign_id,
        channel: input.channel,
        label: input.label,
    })
}

const COLUMNS: [&str; 10] = [
    "id",
    "campaign_id",
    "channel",
    "amount_minor",
    "currency",
    "period_from",
    "period_to",
    "label",
    "created_at",
    "updated_at",
];

fn select(workspace: WorkspaceId) -> SelectStatement {
    Query::select()
        .columns(COLUMNS)
        .from("marketing_spend")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned()
}

fn from_row(row: &QueryResult) -> Result<Spend, KpiError> {
    let code: String = row.try_get("", "currency")?;
    let minor: i64 = row.try_get("", "amount_minor")?;
    let amount = SpendCurrency::parse("currency", &code)
        .map(|c| c.format(minor))
        .unwrap_or_else(|_| minor.to_string());
    let channel: Option<String> = row.try_get("", "channel")?;
    Ok(Spend {
        id: row.try_get("", "id")?,
        amount,
        currency: code,
        from: Timestamp::from_millis(row.try_get("", "period_from")?),
        to: Timestamp::from_millis(row.try_get("", "period_to")?),
        campaign_id: row.try_get("", "campaign_id")?,
        channel: channel.as_deref().and_then(Channel::parse),
        label: row.try_get("", "label")?,
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
    })
}

/// Records a spend.
///
/// # Errors
/// [`KpiError::Invalid`] naming the field (amount, currency, to, campaign_id, channel,
/// label); nothing is stored then. Database errors.
pub async fn create(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    input: SpendInput,
) -> Result<Spend, KpiError> {
    let checked = check(db, workspace, input).await?;
    let now = Timestamp::now().millis();
    let insert = Query::insert()
        .into_table("marketing_spend")
        .columns([
            "workspace_id",
            "campaign_id",
            "channel",
            "amount_minor",
            "currency",
            "period_from",
            "period_to",
            "label",
            "created_at",
            "updated_at",
        ])
        .values([
            workspace.0.into(),
            checked.campaign_id.into(),
            checked.channel.map(|c| c.as_str().to_owned()).into(),
            checked.minor.into(),
            checked.currency.code().to_owned().into(),
            checked.from.into(),
            checked.to.into(),
            checked.label.into(),
            now.into(),
            now.into(),
        ])
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .returning_col("id")
        .to_owned();
    let row = db
        .query_one(&insert)
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("INSERT returned no id".to_owned()))?;
    let id: i64 = row.try_get("", "id")?;
    get(db, workspace, id)
        .await?
        .ok_or_else(|| KpiError::NotFound(format!("spend {id}")))
}

/// Replaces a spend's content; `None` when the workspace has no spend `id`.
///
/// # Errors
/// As [`create`]; nothing is changed then.
pub async fn update(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: i64,
    input: SpendInput,
) -> Result<Option<Spend>, KpiError> {
    if get(db, workspace, id).await?.is_none() {
        return Ok(None);
    }
    let checked = check(db, workspace, input).await?;
    let update = Query::update()
        .table("marketing_spend")
        .values([
            ("campaign_id", checked.campaign_id.into()),
            (
                "channel",
                checked.channel.map(|c| c.as_str().to_owned()).into(),
            ),
            ("amount_minor", checked.minor.into()),
            ("currency", checked.currency.code().to_owned().into()),
            ("period_from", checked.from.into()),
            ("period_to", checked.to.into()),
            ("label", checked.label.into()),
            ("updated_at", Timestamp::now().millis().into()),
        ])
        .and_where(Expr::col("id").eq(id))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    db.execute(&update).await?;
    get(db, workspace, id).await
}

/// One spend of the workspace.
///
/// # Errors
/// Database errors.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: i64,
) -> Result<Option<Spend>, KpiError> {
    let query = select(workspace)
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.query_one(&query)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Deletes a spend; whether there was one.
///
/// # Errors
/// Database errors.
pub async fn delete(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: i64,
) -> Result<bool, KpiError> {
    let delete = Query::delete()
        .from_table("marketing_spend")
        .and_where(Expr::col("id").eq(id))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// A page of the workspace's spends matching `filter`, in id order, after id `after`.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    filter: &SpendFilter,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Spend>, KpiError> {
    let mut query = select(workspace);
    if let Some(campaign) = filter.campaign_id {
        query.and_where(Expr::col("campaign_id").eq(campaign));
    }
    if let Some(channel) = filter.channel {
        query.and_where(Expr::col("channel").eq(channel.as_str()));
    }
    if let Some(currency) = &filter.currency {
        query.and_where(Expr::col("currency").eq(currency.clone()));
    }
    if let Some(from) = filter.from {
        query.and_where(Expr::col("period_to").gt(from.millis()));
    }
    if let Some(to) = filter.to {
        query.and_where(Expr::col("period_from").lt(to.millis()));
    }
    if let Some(after) = after {
        query.and_where(Expr::col("id").gt(after));
    }
    query.order_by("id", Order::Asc).limit(limit);
    db.query_all(&query).await?.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> SpendCurrency {
        SpendCurrency::parse("currency", "EUR").unwrap()
    }

    #[test]
    fn amounts_are_exact_in_minor_units() {
        assert_eq!(eur().minor_units("1250").unwrap(), 125_000);
        assert_eq!(eur().minor_units("1250.5").unwrap(), 125_050);
        assert_eq!(eur().minor_units("0.01").unwrap(), 1);
        assert_eq!(eur().minor_units("7.100").unwrap(), 710);
        assert_eq!(eur().format(125_050), "1250.50");
        assert_eq!(eur().format(7), "0.07");
        let jpy = SpendCurrency::parse("currency", "JPY").unwrap();
        assert_eq!(jpy.minor_units("9800").unwrap(), 9800);
        assert_eq!(jpy.format(9800), "9800");
        assert!(jpy.minor_units("9800.5").is_err());
        let bhd = SpendCurrency::parse("currency", "BHD").unwrap();
        assert_eq!(bhd.minor_units("1.234").unwrap(), 1234);
        assert_eq!(bhd.format(1234), "1.234");
    }

    #[test]
    fn bad_amounts_and_currencies_are_refused() {
        for bad in [
            "0",
            "0.00",
            "-5",
            "1.234",
            "",
            ".5",
            "5.",
            "1e3",
            "abc",
            "10000000000000.01",
        ] {
            assert!(
                matches!(eur().minor_units(bad), Err(KpiError::Invalid { ref field, .. }) if field == "amount"),
                "{bad}"
            );
        }
        assert_eq!(eur().minor_units("10000000000000").unwrap(), MAX_MINOR);
        for bad in ["EUX", "eur", "XAU", "XXX", "EURO"] {
            assert!(SpendCurrency::parse("currency", bad).is_err(), "{bad}");
        }
    }
}
