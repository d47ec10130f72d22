//! `clarion import`: contacts and events from CSV, through the same ingestion as the API (so
//! segment memberships follow at once), in batches, with a progress bar and a per-row error
//! report. Column headers are matched to fields and attribute names after normalization
//! (`First Name` is `first_name`); the mapping is printed before the import starts, and a
//! column that cannot be imported stops it, named, before anything is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use clarion_contacts::{
    Ingest, ItemError, attributes::AttributeTypes, events::IngestOptions, headers,
};
use clarion_model::{
    AttributeName, AttributeType, ContactUpsert, CountryCode, Currency, DEFAULT_WORKSPACE,
    EventInput, EventKind, ExternalId, IdempotencyKey, Patch, Timestamp,
};
use clarion_server::{Settings, db};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import contacts: one row per contact, created or updated by external_id.
    ///
    /// Columns are matched to fields by header name (external_id, email, phone, first_name,
    /// last_name, locale, time_zone, country, region, city), after the header is normalized
    /// to snake_case ASCII (`First Name` -> first_name, `InternetService` ->
    /// internet_service, accents folded). Every other column becomes the custom attribute of
    /// its normalized name; a header that cannot be one (it starts with a digit, say) stops
    /// the import with the column named: rename it with --map NAME=COLUMN. An attribute
    /// column keeps the type the workspace already has for it, or takes the type of its first
    /// value (plain numbers without leading zeros are numbers, true/false booleans, the rest
    /// text). Empty cells leave a field unchanged.
    Contacts(CommonArgs),
    /// Import events: one row per event.
    ///
    /// Columns are matched by header name (external_id, kind, occurred_at, amount, currency,
    /// idempotency_key); other columns become event properties. Contacts that do not exist
    /// yet are created.
    Events {
        #[command(flatten)]
        common: CommonArgs,
        /// The kind of every event, when the file has no kind column.
        #[arg(long)]
        kind: Option<String>,
        /// A known file layout instead of --map.
        #[arg(long, value_enum)]
        preset: Option<Preset>,
    },
}

#[derive(Args)]
pub struct CommonArgs {
    /// The CSV file; `.gz` files are decompressed on the fly.
    pub file: PathBuf,
    /// Read a field, or a custom attribute, from a column with another name:
    /// --map email=E-Mail, --map tier=Kundenstufe (repeatable).
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    pub map: Vec<String>,
    /// The column separator.
    #[arg(long, default_value = ",")]
    pub delimiter: char,
    /// Rows per database batch.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Where to write the per-row error report (CSV: line, field, message).
    #[arg(long)]
    pub error_report: Option<PathBuf>,
    /// Time zone for timestamps written without an offset.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
}

/// File layouts Clarion knows.
#[derive(Clone, Copy, ValueEnum)]
pub enum Preset {
    /// The UCI Online Retail data set (InvoiceNo, StockCode, Description, Quantity,
    /// InvoiceDate, UnitPrice, CustomerID, Country): one `purchase` event per invoice line
    /// (`refund` for cancelled invoices), amount = Quantity x UnitPrice in GBP, customers
    /// as contacts with their country. Lines without a CustomerID are reported and skipped.
    OnlineRetail,
}

pub async fn run(command: ImportCommand, settings: Settings) -> anyhow::Result<()> {
    let db = db::connect(&settings.database).await?;
    db::migrate(&db).await?;
    let ingest = clarion_server::state::ingest(&db, &settings);
    let options = IngestOptions {
        create_unknown_contacts: true,
        max_future_millis: i64::from(settings.ingest.max_future_hours) * 3_600_000,
        atomic: false,
    };
    let summary = match command {
        ImportCommand::Contacts(common) => {
            import(&ingest, &common, Target::Contacts(HashMap::new()), options).await?
        }
        ImportCommand::Events {
            common,
            kind,
            preset,
        } => {
            let target = match preset {
                Some(Preset::OnlineRetail) => Target::OnlineRetail(Default::default()),
                None => Target::Events {
                    kind: kind.map(EventKind::parse).transpose()?,
                },
            };
            import(&ingest, &common, target, options).await?
        }
    };
    summary.print();
    Ok(())
}

enum Target {
    /// With the type of each attribute column, fixed by the workspace's definition or by the
    /// column's first value.
    Contacts(HashMap<usize, AttributeType>),
    Events {
        kind: Option<EventKind>,
    },
    OnlineRetail(HashSet<String>),
}

const CONTACT_FIELDS: &[&str] = &[
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "country",
    "region",
    "city",
];
const EVENT_FIELDS: &[&str] = &[
    "external_id",
    "kind",
    "occurred_at",
    "amount",
    "currency",
    "idempotency_key",
];
const RETAIL_COLUMNS: &[&str] = &[
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// Counts of an import, and where its error report went.
struct Summary {
    rows: u64,
    stored: u64,
    updated: u64,
    duplicates: u64,
    errors: u64,
    reasons: BTreeMap<String, u64>,
    report: Option<PathBuf>,
    seconds: f64,
}

impl Summary {
    fn print(&self) {
        let rate = self.rows as f64 / self.seconds.max(1e-9);
        println!(
            "imported {} rows in {:.1} s ({:.0} rows/s): {} stored, {} updated, {} duplicates, {} refused",
            self.rows, self.seconds, rate, self.stored, self.updated, self.duplicates, self.errors
        );
        if let Some(report) = &self.report {
            let mut reasons: Vec<_> = self.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1));
            for (reason, count) in reasons.into_iter().take(10) {
                println!("  {count:>8} x {reason}");
            }
            println!(
                "every refused row, with its line and field: {}",
                report.display()
            );
        }
    }
}

/// Counts the compressed bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(path: &Path) -> anyhow::Result<(Box<dyn Read>, u64, Arc<AtomicU64>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: BufReader::with_capacity(1 << 20, file),
        read: read.clone(),
    };
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(counting),
        ))
    } else {
        Box::new(counting)
    };
    Ok((reader, size, read))
}

/// Where each column of a file goes: the built-in fields by column, and every other column
/// as the attribute (contacts) or property (events) it becomes, with its name.
struct Columns {
    fields: HashMap<String, usize>,
    extra: Vec<(usize, String)>,
}

/// Finds the column `wanted` names: its header exactly, then ignoring case, then normalized.
fn find_column(headers: &csv::StringRecord, wanted: &str) -> Option<usize> {
    let wanted = wanted.trim();
    let normalized = headers::normalize(wanted);
    headers
        .iter()
        .position(|h| h.trim() == wanted)
        .or_else(|| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(wanted))
        })
        .or_else(|| {
            (!normalized.is_empty())
                .then(|| {
                    headers
                        .iter()
                        .position(|h| headers::normalize(h) == normalized)
                })
                .flatten()
        })
}

/// Decides where every column goes, or says which column cannot be imported and why. With
/// `attributes`, columns that are not fields become contact attributes and must have a name
/// that can be one; otherwise they become event properties under their header.
fn column_map(
    headers: &csv::StringRecord,
    fields: &[&str],
    overrides: &[String],
    delimiter: char,
    attributes: bool,
) -> anyhow::Result<Columns> {
    if headers.len() == 1 {
        let header = headers.get(0).unwrap_or_default();
        for (candidate, flag) in [(';', ";"), ('\t', "\\t"), ('|', "|"), (',', ",")] {
            if candidate != delimiter && header.contains(candidate) {
                bail!(
                    "the header has a single column {header:?}: the file seems to be separated by {flag:?}, not {delimiter:?}; pass --delimiter '{flag}'"
                );
            }
        }
    }
    let mut fields_at: HashMap<String, usize> = HashMap::new();
    let mut named: HashMap<usize, String> = HashMap::new();
    for entry in overrides {
        let (name, column) = entry
            .split_once('=')
            .with_context(|| format!("--map {entry:?}: expected NAME=COLUMN"))?;
        let index = find_column(headers, column).with_context(|| {
            format!(
                "--map {entry:?}: no column {column:?}; the columns are {}",
                join_headers(headers)
            )
        })?;
        if fields.contains(&name) {
            fields_at.insert(name.to_string(), index);
        } else if attributes {
            let attribute = AttributeName::parse(name).map_err(|e| {
                anyhow::anyhow!(
                    "--map {entry:?}: {name:?} is neither a field ({}) nor an attribute name: {e}",
                    fields.join(", ")
                )
            })?;
            named.insert(index, attribute.as_str().to_string());
        } else {
            bail!(
                "--map {entry:?}: {name:?} is not a field; the fields are {}",
                fields.join(", ")
            );
        }
    }
    for field in fields {
        if fields_at.contains_key(*field) {
            continue;
        }
        let wanted = headers::normalize(field);
        if let Some(index) = headers
            .iter()
            .enumerate()
            .position(|(i, h)| !named.contains_key(&i) && headers::normalize(h) == wanted)
            && !fields_at.values().any(|&i| i == index)
        {
            fields_at.insert(field.to_string(), index);
        }
    }
    let mut extra = Vec::new();
    let mut taken: HashMap<String, usize> = HashMap::new();
    for (index, header) in headers.iter().enumerate() {
        if fields_at.values().any(|&i| i == index) {
            continue;
        }
        let name = match named.remove(&index) {
            Some(name) => name,
            None if attributes => {
                let name = headers::normalize(header);
                let column = describe_column(index, header);
                if fields.contains(&name.as_str()) {
                    bail!(
                        "{column} would be the field {name:?}, which another column already gives; \
                         drop one of them, or import it as an attribute with --map NAME={}",
                        column_reference(header)
                    );
                }
                AttributeName::parse(name.as_str()).map_err(|e| {
                    anyhow::anyhow!(
                        "{column} cannot become an attribute: {e}; name it with --map NAME={} \
                         (NAME: a lower-case letter, then a-z, 0-9 or _)",
                        column_reference(header)
                    )
                })?;
                name
            }
            None => header.trim().to_string(),
        };
        if let Some(&other) = taken.get(&name) {
            bail!(
                "{} and {} would both become {name:?}; rename one with --map NAME=COLUMN",
                describe_column(other, headers.get(other).unwrap_or_default()),
                describe_column(index, header)
            );
        }
        taken.insert(name.clone(), index);
        extra.push((index, name));
    }
    Ok(Columns {
        fields: fields_at,
        extra,
    })
}

/// "column 3 "First Name"", for messages.
fn describe_column(index: usize, header: &str) -> String {
    format!("column {} {header:?}", index + 1)
}

/// How `--map` can refer to a column: its header, quoted for the shell when it needs to be.
fn column_reference(header: &str) -> String {
    let header = header.trim();
    if header
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        header.to_string()
    } else {
        format!("'{}'", header.replace('\'', "'\\''"))
    }
}

/// Prints where each column goes, before anything is written.
fn print_mapping(headers: &csv::StringRecord, columns: &Columns, target: &Target) {
    let width = headers
        .iter()
        .map(|h| h.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    println!("columns:");
    for (index, header) in headers.iter().enumerate() {
        let field = columns
            .fields
            .iter()
            .find(|(_, i)| **i == index)
            .map(|(field, _)| field.as_str());
        let destination = match (field, target) {
            (Some(field), Target::OnlineRetail(_)) => format!("{field} (online-retail preset)"),
            (Some(field), _) => field.to_string(),
            (None, Target::Contacts(_)) => match columns.extra.iter().find(|(i, _)| *i == index) {
                Some((_, name)) => format!("attribute {name}"),
                None => "?".to_string(),
            },
            (None, Target::Events { .. }) => {
                match columns.extra.iter().find(|(i, _)| *i == index) {
                    Some((_, name)) => format!("property {name}"),
                    None => "?".to_string(),
                }
            }
            (None, Target::OnlineRetail(_)) => "not read by the online-retail preset".to_string(),
        };
        println!("  {header:<width$}  -> {destination}");
    }
}

fn join_headers(headers: &csv::StringRecord) -> String {
    headers
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn require(
    map: &HashMap<String, usize>,
    field: &str,
    headers: &csv::StringRecord,
) -> anyhow::Result<()> {
    if map.contains_key(field) {
        return Ok(());
    }
    bail!(
        "the file has no {field:?} column (columns: {}); name it {field:?} or pass --map {field}=COLUMN",
        join_headers(headers)
    )
}

/// A cell as a JSON value: `true`/`false` as booleans, plain decimal numbers (without
/// leading zeros, so codes such as "01234" stay text) as numbers, anything else as text.
fn cell_value(cell: &str) -> serde_json::Value {
    match cell {
        "true" => return serde_json::Value::Bool(true),
        "false" => return serde_json::Value::Bool(false),
        _ => {}
    }
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let plain = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && !(digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0."));
    if plain
        && let Ok(number) = cell.parse::<f64>()
        && let Some(number) = serde_json::Number::from_f64(number)
    {
        return serde_json::Value::Number(number);
    }
    serde_json::Value::String(cell.to_string())
}

async fn import(
    ingest: &Ingest,
    args: &CommonArgs,
    mut target: Target,
    options: IngestOptions,
) -> anyhow::Result<Summary> {
    let zone: chrono_tz::Tz = match target {
        Target::OnlineRetail(_) if args.time_zone == "UTC" => chrono_tz::Europe::London,
        _ => args.time_zone.parse().map_err(|_| {
            anyhow::anyhow!("--time-zone {:?} is not an IANA time zone", args.time_zone)
        })?,
    };
    if !args.delimiter.is_ascii() {
        bail!("--delimiter must be a single ASCII character");
    }
    if args.batch == 0 || args.batch > 10_000 {
        bail!("--batch must be between 1 and 10000");
    }
    let (reader, size, read) = open(&args.file)?;
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(args.delimiter as u8)
        .flexible(true)
        .from_reader(reader);
    let headers = csv.headers().context("cannot read the header row")?.clone();
    let fields = match target {
        Target::Contacts(_) => CONTACT_FIELDS,
        Target::Events { .. } => EVENT_FIELDS,
        Target::OnlineRetail(_) => RETAIL_COLUMNS,
    };
    let attributes = matches!(target, Target::Contacts(_));
    let columns = column_map(&headers, fields, &args.map, args.delimiter, attributes)?;
    let map = &columns.fields;
    match &target {
        Target::Contacts(_) => require(map, "external_id", &headers)?,
        Target::Events { kind } => {
            require(map, "external_id", &headers)?;
            if kind.is_none() {
                require(map, "kind", &headers)?;
            }
        }
        Target::OnlineRetail(_) => {
            for column in RETAIL_COLUMNS {
                require(map, column, &headers)?;
            }
        }
    }
    print_mapping(&headers, &columns, &target);
    let extra = &columns.extra;
    if let Target::Contacts(types) = &mut target {
        let names = extra
            .iter()
            .filter_map(|(_, name)| AttributeName::parse(name.as_str()).ok())
            .collect();
        let declared = AttributeTypes::load(ingest.db(), DEFAULT_WORKSPACE, names).await?;
        for (index, name) in extra {
            if let Some(kind) = AttributeName::parse(name.as_str())
                .ok()
                .and_then(|name| declared.declared(&name))
            {
                types.insert(*index, kind);
            }
        }
    }

    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report_path = args.error_report.clone().unwrap_or_else(|| {
        let name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        PathBuf::from(format!("{name}.errors.csv"))
    });
    let mut report: Option<csv::Writer<File>> = None;
    let mut summary = Summary {
        rows: 0,
        stored: 0,
        updated: 0,
        duplicates: 0,
        errors: 0,
        reasons: BTreeMap::new(),
        report: None,
        seconds: 0.0,
    };
    let started = Instant::now();
    let mut record = csv::ByteRecord::new();
    let mut batch = Batch::default();
    let mut line: u64 = 1;
    loop {
        let more = match csv.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(error) => {
                line += 1;
                batch.errors.push(ItemError::new(
                    line as usize,
                    None,
                    format!("unreadable row: {error}"),
                ));
                true
            }
        };
        if more && !record.is_empty() {
            line = record.position().map_or(line + 1, |p| p.line());
            summary.rows += 1;
            batch.add_row(&record, line, &headers, map, extra, &mut target, zone);
        }
        if batch.len() >= args.batch || (!more && (batch.len() > 0 || !batch.errors.is_empty())) {
            batch
                .flush(ingest, &mut target, options, &mut summary)
                .await?;
            for error in batch.errors.drain(..) {
                let writer = match &mut report {
                    Some(writer) => writer,
                    None => {
                        let mut writer =
                            csv::Writer::from_path(&report_path).with_context(|| {
                                format!("cannot write the error report {}", report_path.display())
                            })?;
                        writer.write_record(["line", "field", "message"])?;
                        report.insert(writer)
                    }
                };
                writer.write_record([
                    error.index.to_string(),
                    error.field.clone().unwrap_or_default(),
                    error.message.clone(),
                ])?;
                *summary.reasons.entry(error.message).or_default() += 1;
                summary.errors += 1;
            }
            progress.set_position(read.load(Ordering::Relaxed));
            let rate = summary.rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.set_message(format!(
                "{} rows, {rate:.0} rows/s, {} refused",
                summary.rows, summary.errors
            ));
        }
        if !more {
            break;
        }
    }
    if let Some(mut writer) = report {
        writer.flush()?;
        summary.report = Some(report_path);
    }
    progress.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Rows read but not yet written, with the CSV line of each.
#[derive(Default)]
struct Batch {
    contacts: Vec<(usize, ContactUpsert)>,
    events: Vec<(usize, EventInput)>,
    /// Contacts the Online Retail preset saw first in this batch, with their country.
    new_customers: Vec<(usize, ContactUpsert)>,
    errors: Vec<ItemError>,
}

impl Batch {
    fn len(&self) -> usize {
        self.contacts.len() + self.events.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn add_row(
        &mut self,
        record: &csv::ByteRecord,
        line: u64,
        headers: &csv::StringRecord,
        map: &HashMap<String, usize>,
        extra: &[(usize, String)],
        target: &mut Target,
        zone: chrono_tz::Tz,
    ) {
        let line = line as usize;
        // Decode every cell first, so invalid UTF-8 is reported with its column.
        let mut cells = Vec::with_capacity(record.len());
        for (index, bytes) in record.iter().enumerate() {
            match std::str::from_utf8(bytes) {
                Ok(text) => cells.push(text.trim()),
                Err(_) => {
                    let column = headers.get(index).unwrap_or("?").to_string();
                    self.errors.push(ItemError::new(
                        line,
                        Some(column),
                        "the cell is not valid UTF-8 text",
                    ));
                    return;
                }
            }
        }
        if cells.len() != headers.len() {
            self.errors.push(ItemError::new(
                line,
                None,
                format!(
                    "the row has {} cells but the header has {} columns",
                    cells.len(),
                    headers.len()
                ),
            ));
            return;
        }
        let cell = |field: &str| map.get(field).map(|&i| cells[i]).filter(|c| !c.is_empty());
        match target {
            Target::Contacts(types) => {
                let mut object = serde_json::Map::new();
                for field in CONTACT_FIELDS {
                    if let Some(value) = cell(field) {
                        object.insert(
                            field.to_string(),
                            serde_json::Value::String(value.to_string()),
                        );
                    }
                }
                let mut attributes = serde_json::Map::new();
                for (index, name) in extra {
                    let text = cells[*index];
                    if text.is_empty() {
                        continue;
                    }
                    let kind = *types
                        .entry(*index)
                        .or_insert_with(|| match cell_value(text) {
                            serde_json::Value::Number(_) => AttributeType::Number,
                            serde_json::Value::Bool(_) => AttributeType::Boolean,
                            _ => AttributeType::String,
                        });
                    match typed_cell(text, kind) {
                        Some(value) => {
                            attributes.insert(name.clone(), value);
                        }
                        None => {
                            self.errors.push(ItemError::new(
                                line,
                                Some(format!("attributes.{name}")),
                                format!("{text:?} is not a {} (the column's type)", kind.as_str()),
                            ));
                            return;
                        }
                    }
                }
                if !attributes.is_empty() {
                    object.insert("attributes".into(), serde_json::Value::Object(attributes));
                }
                match serde_path_to_error::deserialize(serde_json::Value::Object(object)) {
                    Ok(contact) => self.contacts.push((line, contact)),
                    Err(error) => self.errors.push(ItemError::from_serde(line, error)),
                }
            }
            Target::Events { kind } => {
                let mut object = serde_json::Map::new();
                for field in EVENT_FIELDS {
                    let Some(value) = cell(field) else { continue };
                    let value = match *field {
                        "amount" => cell_value(value),
                        "occurred_at" => match Timestamp::parse_lenient(value, zone) {
                            Ok(ts) => serde_json::Value::String(ts.to_rfc3339()),
                            Err(error) => {
                                self.errors.push(ItemError::new(
                                    line,
                                    Some("occurred_at".into()),
                                    error.to_string(),
                                ));
                                return;
                            }
                        },
                        _ => serde_json::Value::String(value.to_string()),
                    };
                    object.insert(field.to_string(), value);
                }
                if let Some(kind) = kind {
                    object
                        .entry("kind")
                        .or_insert_with(|| serde_json::Value::String(kind.as_str().to_string()));
                }
                let properties: serde_json::Map<_, _> = extra
                    .iter()
                    .filter(|(index, _)| !cells[*index].is_empty())
                    .map(|(index, header)| (header.clone(), cell_value(cells[*index])))
                    .collect();
                object.insert("properties".into(), serde_json::Value::Object(properties));
                match serde_path_to_error::deserialize(serde_json::Value::Object(object)) {
                    Ok(event) => self.events.push((line, event)),
                    Err(error) => self.errors.push(ItemError::from_serde(line, error)),
                }
            }
            Target::OnlineRetail(_) => match retail_event(&cell, line, zone) {
                Ok((event, country)) => {
                    self.new_customers
                        .push((line, retail_contact(&event.external_id, country)));
                    self.events.push((line, event));
                }
                Err(error) => self.errors.push(error),
            },
        }
    }

    async fn flush(
        &mut self,
        ingest: &Ingest,
        target: &mut Target,
        options: IngestOptions,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        if !self.contacts.is_empty() {
            let report = ingest
                .contacts(DEFAULT_WORKSPACE, std::mem::take(&mut self.contacts), false)
                .await?;
            summary.stored += report.created as u64;
            summary.updated += report.updated as u64;
            self.errors.extend(report.errors);
        }
        if let Target::OnlineRetail(seen) = target {
            let customers: Vec<_> = std::mem::take(&mut self.new_customers)
                .into_iter()
                .filter(|(_, c)| seen.insert(c.external_id.as_str().to_string()))
                .collect();
            if !customers.is_empty() {
                let report = ingest.contacts(DEFAULT_WORKSPACE, customers, false).await?;
                self.errors.extend(report.errors);
            }
        }
        if !self.events.is_empty() {
            let report = ingest
                .events(DEFAULT_WORKSPACE, std::mem::take(&mut self.events), options)
                .await?;
            summary.stored += report.accepted as u64;
            summary.duplicates += report.duplicates.len() as u64;
            self.errors.extend(report.errors);
        }
        Ok(())
    }
}

/// A cell read as an attribute of a known type; lists are separated by `|`.
fn typed_cell(text: &str, kind: AttributeType) -> Option<serde_json::Value> {
    match kind {
        AttributeType::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number),
        AttributeType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(serde_json::Value::Bool(true)),
            "false" | "no" | "0" => Some(serde_json::Value::Bool(false)),
            _ => None,
        },
        AttributeType::List => Some(serde_json::Value::Array(
            text.split('|')
                .map(|item| serde_json::Value::String(item.trim().to_string()))
                .collect(),
        )),
        AttributeType::String | AttributeType::Date => {
            Some(serde_json::Value::String(text.to_string()))
        }
    }
}

/// One Online Retail line as an event, with the customer's country.
fn retail_event<'a>(
    cell: &impl Fn(&str) -> Option<&'a str>,
    line: usize,
    zone: chrono_tz::Tz,
) -> Result<(EventInput, Option<CountryCode>), ItemError> {
    let missing =
        |column: &str| ItemError::new(line, Some(column.to_string()), format!("{column} is empty"));
    let invoice = cell("InvoiceNo").ok_or_else(|| missing("InvoiceNo"))?;
    let customer = cell("CustomerID").ok_or_else(|| missing("CustomerID"))?;
    // The published file writes customer ids as floats ("17850.0").
    let customer = customer.strip_suffix(".0").unwrap_or(customer);
    let external_id = ExternalId::parse(customer)
        .map_err(|e| ItemError::new(line, Some("CustomerID".into()), e.to_string()))?;
    let number = |column: &str| -> Result<f64, ItemError> {
        let text = cell(column).ok_or_else(|| missing(column))?;
        text.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| {
                ItemError::new(
                    line,
                    Some(column.to_string()),
                    format!("{text:?} is not a number"),
                )
            })
    };
    let quantity = number("Quantity")?;
    let unit_price = number("UnitPrice")?;
    let date = cell("InvoiceDate").ok_or_else(|| missing("InvoiceDate"))?;
    let occurred_at = Timestamp::parse_lenient(date, zone)
        .map_err(|e| ItemError::new(line, Some("InvoiceDate".into()), e.to_string()))?;
    let kind = if invoice.starts_with('C') {
        "refund"
    } else {
        "purchase"
    };
    let mut properties = serde_json::Map::new();
    properties.insert("invoice".into(), invoice.into());
    if let Some(code) = cell("StockCode") {
        properties.insert("stock_code".into(), code.into());
    }
    if let Some(description) = cell("Description") {
        properties.insert("description".into(), description.into());
    }
    properties.insert("quantity".into(), quantity.into());
    properties.insert("unit_price".into(), unit_price.into());
    let event = EventInput {
        external_id,
        kind: EventKind::parse(kind).map_err(|e| ItemError::new(line, None, e.to_string()))?,
        occurred_at: Some(occurred_at),
        amount: Some((quantity * unit_price * 100.0).round() / 100.0),
        currency: Currency::parse("GBP").ok(),
        properties,
        idempotency_key: IdempotencyKey::parse(format!("online-retail:{invoice}:{line}")).ok(),
    };
    let country = cell("Country").and_then(|name| CountryCode::from_name(name).ok());
    Ok((event, country))
}

fn retail_contact(external_id: &ExternalId, country: Option<CountryCode>) -> ContactUpsert {
    let mut contact: ContactUpsert = ContactUpsert {
        external_id: external_id.clone(),
        email: Patch::Keep,
        phone: Patch::Keep,
        first_name: Patch::Keep,
        last_name: Patch::Keep,
        locale: Patch::Keep,
        time_zone: Patch::Keep,
        country: Patch::Keep,
        region: Patch::Keep,
        city: Patch::Keep,
        attributes: Default::default(),
        subscriptions: None,
    };
    if let Some(country) = country {
        contact.country = Patch::Set(country);
    }
    contact
}

#[cfg(test)]
mod tests {
    use super::cell_value;
    use serde_json::json;

    #[test]
    fn cells_become_numbers_booleans_or_text() {
        assert_eq!(cell_value("42"), json!(42.0));
        assert_eq!(cell_value("-3.5"), json!(-3.5));
        assert_eq!(cell_value("0.5"), json!(0.5));
        assert_eq!(cell_value("01234"), json!("01234"));
        assert_eq!(cell_value("true"), json!(true));
        assert_eq!(cell_value("1.2.3"), json!("1.2.3"));
        assert_eq!(cell_value("gold"), json!("gold"));
    }
}
