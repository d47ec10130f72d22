use std::collections::{HashMap, HashSet};
use std::io::Write;

use clarion_contacts as store;
use clarion_e2e::{clarion, run};
use clarion_model::{DEFAULT_WORKSPACE, ExternalId};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, Database};

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

async fn contacts_import_keeps_good_rows_and_reports_bad_ones_by_line_and_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"Customer,email,country,city,tier,score,zip,Notes (free text)\n".to_vec();
    csv.extend_from_slice(b"c1,ada@example.com,DE,Berlin,gold,12,01067,likes cats\n");
    csv.extend_from_slice(b"c2,not-an-email,FR,Paris,silver,3,,\n");
    csv.extend_from_slice(b"c3,bob@example.com,ZZ,Rome,silver,4,,\n");
    csv.extend_from_slice(b"c4,caro@example.com,IT,Rome\n");
    csv.extend_from_slice(b"c5,dan@example.com,ES,Bilbao,\xff\xfe,5,,\n");
    csv.extend_from_slice(b"c6,eve@example.com,PT,,bronze,007,10115,\n");
    csv.extend_from_slice(b"c7,fay@example.com,PT,,bronze,many,,\n");
    let file = write(&dir, "people.csv", &csv);
    let report = dir.path().join("report.csv");
    let (output, stdout, stderr) =
        run(clarion(&db).args(["import", "contacts"]).arg(&file).args([
            "--map",
            "external_id=Customer",
            "--error-report",
            report.to_str().unwrap(),
        ]));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("imported 7 rows"), "{stdout}");
    assert!(stdout.contains("2 stored"), "{stdout}");
    assert!(stdout.contains("5 refused"), "{stdout}");

    let mut reader = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string(), r[2].to_string())
        })
        .collect();
    let fields: HashMap<&str, &str> = rows
        .iter()
        .map(|(line, field, _)| (line.as_str(), field.as_str()))
        .collect();
    assert_eq!(fields.get("3"), Some(&"email"), "{rows:?}");
    assert_eq!(fields.get("4"), Some(&"country"), "{rows:?}");
    assert_eq!(fields.get("5"), Some(&""), "{rows:?}");
    assert_eq!(fields.get("6"), Some(&"tier"), "{rows:?}");
    assert_eq!(fields.get("8"), Some(&"attributes.score"), "{rows:?}");
    assert!(
        rows.iter()
            .any(|(line, _, message)| line == "5" && message.contains("8 columns")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|(line, _, message)| line == "6" && message.contains("UTF-8")),
        "{rows:?}"
    );

    let conn = Database::connect(&db.url).await.unwrap();
    let c1 = store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("c1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.email.unwrap().as_str(), "ada@example.com");
    assert_eq!(c1.city.unwrap().as_str(), "Berlin");
    let attribute = |name: &str| clarion_model::AttributeName::parse(name).unwrap();
    assert_eq!(
        c1.attributes.len(),
        4,
        "tier, score, zip, and 'Notes (free text)' as notes_free_text"
    );
    assert_eq!(
        c1.attributes[&attribute("notes_free_text")],
        serde_json::json!("likes cats")
    );
    assert_eq!(c1.attributes[&attribute("score")], serde_json::json!(12.0));
    assert_eq!(
        c1.attributes[&attribute("zip")],
        serde_json::json!("01067"),
        "leading zeros keep codes text"
    );
    let c6 = store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("c6").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c6.attributes[&attribute("score")],
        serde_json::json!(7.0),
        "the column is numeric"
    );
    assert_eq!(
        c6.attributes[&attribute("zip")],
        serde_json::json!("10115"),
        "the column is text"
    );
    assert!(
        store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("c2").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_wrong_delimiter_or_missing_column_is_explained(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "semi.csv", b"external_id;email\nc1;a@example.com\n");
    let (output, _, stderr) = run(clarion(&db).args(["import", "contacts"]).arg(&file));
    assert!(!output.status.success());
    assert!(stderr.contains("--delimiter ';'"), "{stderr}");
    let (output, stdout, stderr) = run(clarion(&db)
        .args(["import", "contacts", "--delimiter", ";"])
        .arg(&file));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("1 stored"), "{stdout}");

    let file = write(&dir, "events.csv", b"customer,when\nc1,2024-01-01\n");
    let (output, _, stderr) = run(clarion(&db).args(["import", "events"]).arg(&file));
    assert!(!output.status.success());
    assert!(stderr.contains("no \"external_id\" column"), "{stderr}");
    assert!(
        stderr.contains("\"customer\""),
        "the columns found are listed: {stderr}"
    );
}

async fn events_import_maps_columns_and_keeps_the_rest_as_properties(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "orders.csv",
        b"user,ts,total,currency,order,category\n\
          u1,2024-03-01 10:00:00,19.99,EUR,o-1,books\n\
          u1,2024-03-02 11:30:00,5,EUR,o-2,toys\n\
          u2,yesterday,7,EUR,o-3,toys\n\
          u2,2024-03-03,7,EUR,o-4,garden\n",
    );
    let (output, stdout, stderr) = run(clarion(&db)
        .args([
            "import",
            "events",
            "--kind",
            "purchase",
            "--time-zone",
            "Europe/Berlin",
        ])
        .arg(&file)
        .args([
            "--map",
            "external_id=user",
            "--map",
            "occurred_at=ts",
            "--map",
            "amount=total",
            "--map",
            "idempotency_key=order",
            "--error-report",
            dir.path().join("r.csv").to_str().unwrap(),
        ]));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("3 stored") && stdout.contains("1 refused"),
        "{stdout}"
    );

    // Importing the same file again stores nothing new: the order ids are idempotency keys.
    let (_, stdout, _) = run(clarion(&db)
        .args(["import", "events", "--kind", "purchase"])
        .arg(&file)
        .args([
            "--map",
            "external_id=user",
            "--map",
            "occurred_at=ts",
            "--map",
            "amount=total",
            "--map",
            "idempotency_key=order",
            "--error-report",
            dir.path().join("r2.csv").to_str().unwrap(),
        ]));
    assert!(
        stdout.contains("0 stored") && stdout.contains("3 duplicates"),
        "{stdout}"
    );

    let conn = Database::connect(&db.url).await.unwrap();
    let u1 = store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("u1").unwrap())
        .await
        .unwrap()
        .unwrap();
    let events = store::events::list_for_contact(
        &conn,
        DEFAULT_WORKSPACE,
        u1.id,
        &u1.external_id,
        &Default::default(),
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].occurred_at.to_rfc3339(),
        "2024-03-01T09:00:00.000Z",
        "read in Europe/Berlin"
    );
    assert_eq!(events[1].amount, Some(19.99));
    assert_eq!(events[1].properties["category"], "books");
}

async fn the_online_retail_preset_imports_purchases_with_their_customers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/online_retail_sample.csv"
    );
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout, stderr) = run(clarion(&db)
        .args([
            "import",
            "events",
            "--preset",
            "online-retail",
            sample,
            "--error-report",
        ])
        .arg(dir.path().join("r.csv")));
    assert!(output.status.success(), "{stderr}");

    // What the file says, computed here independently.
    let mut reader = csv::Reader::from_path(sample).unwrap();
    let (mut with_customer, mut without, mut purchases, mut revenue) = (0u64, 0u64, 0u64, 0f64);
    let mut customers = HashSet::new();
    let mut countries = HashMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        if record[6].is_empty() {
            without += 1;
            continue;
        }
        with_customer += 1;
        let customer = record[6].trim_end_matches(".0").to_string();
        countries.insert(customer.clone(), record[7].to_string());
        customers.insert(customer);
        let amount = record[3].parse::<f64>().unwrap() * record[5].parse::<f64>().unwrap();
        revenue += (amount * 100.0).round() / 100.0;
        if !record[0].starts_with('C') {
            purchases += 1;
        }
    }
    assert!(without > 0, "the sample has lines without a customer");
    assert!(
        stdout.contains(&format!("{with_customer} stored")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{without} refused")), "{stdout}");

    let conn = Database::connect(&db.url).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*), SUM(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END), SUM(amount), COUNT(DISTINCT contact_id) FROM events",
        ))
        .await
        .unwrap()
        .unwrap();
    let count: i64 = row.try_get_by_index(0).unwrap();
    let stored_purchases: i64 = row.try_get_by_index(1).unwrap();
    let stored_revenue: f64 = row.try_get_by_index(2).unwrap();
    let distinct: i64 = row.try_get_by_index(3).unwrap();
    assert_eq!(count as u64, with_customer);
    assert_eq!(stored_purchases as u64, purchases);
    assert!(
        (stored_revenue - revenue).abs() < 0.01,
        "{stored_revenue} vs {revenue}"
    );
    assert_eq!(distinct as usize, customers.len());

    let (id, country) = countries
        .iter()
        .find(|(_, c)| c.as_str() == "France")
        .unwrap();
    let contact = store::contacts::get(
        &conn,
        DEFAULT_WORKSPACE,
        &ExternalId::parse(id.as_str()).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(contact.country.map(|c| c.as_str()), Some("FR"), "{country}");
}

/// The external ids of a segment's current members, read from the membership table.
async fn current_members(conn: &sea_orm::DatabaseConnection, slug: &str) -> Vec<String> {
    let backend = conn.get_database_backend();
    let sql = "SELECT c.external_id AS external_id FROM segment_memberships m \
               JOIN segments s ON s.id = m.segment_id \
               JOIN contacts c ON c.id = m.contact_id \
               WHERE s.slug = $1 AND m.exited_at IS NULL ORDER BY c.external_id";
    let sql = match backend {
        sea_orm::DbBackend::Postgres => sql.to_string(),
        _ => sql.replace("$1", "?"),
    };
    conn.query_all_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [slug.into()],
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.try_get::<String>("", "external_id").unwrap())
    .collect()
}

/// A customer export as CRMs write it (the 21 columns of the IBM Telco churn sample): every
/// column arrives, under its snake_case name, and the mapping is shown first. A second
/// import changes segment memberships at once, as the API does, without waiting for a sweep.
async fn crm_headers_become_attributes_and_imports_update_segments_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/telco_customers.csv");
    let (output, stdout, stderr) = run(clarion(&db)
        .args(["import", "contacts"])
        .arg(&file)
        .args(["--map", "external_id=customerID"])
        .args(["--error-report", dir.path().join("r.csv").to_str().unwrap()]));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("5 stored") && stdout.contains("0 refused"),
        "{stdout}"
    );
    let mapping_line = |header: &str, destination: &str| {
        stdout.lines().any(|line| {
            let mut parts = line.split("->");
            parts.next().map(str::trim) == Some(header)
                && parts.next().map(str::trim) == Some(destination)
        })
    };
    assert!(mapping_line("customerID", "external_id"), "{stdout}");
    assert!(
        mapping_line("InternetService", "attribute internet_service"),
        "{stdout}"
    );
    assert!(
        mapping_line("StreamingTV", "attribute streaming_tv"),
        "{stdout}"
    );
    assert!(
        stdout.find("columns:").unwrap() < stdout.find("imported").unwrap(),
        "the mapping is printed before the import: {stdout}"
    );

    let conn = Database::connect(&db.url).await.unwrap();
    let t4 = store::contacts::get(
        &conn,
        DEFAULT_WORKSPACE,
        &ExternalId::parse("T-0004").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let attribute = |name: &str| clarion_model::AttributeName::parse(name).unwrap();
    assert_eq!(
        t4.attributes.len(),
        20,
        "every data column: {:?}",
        t4.attributes
    );
    assert_eq!(
        t4.attributes[&attribute("internet_service")],
        serde_json::json!("Fiber optic")
    );
    assert_eq!(
        t4.attributes[&attribute("contract")],
        serde_json::json!("Two year")
    );
    assert_eq!(
        t4.attributes[&attribute("senior_citizen")],
        serde_json::json!(0.0)
    );
    assert_eq!(
        t4.attributes[&attribute("monthly_charges")],
        serde_json::json!(105.5)
    );
    assert_eq!(
        t4.attributes[&attribute("payment_method")],
        serde_json::json!("Bank transfer (automatic)")
    );

    // A segment on an imported attribute, computed now: T-0003 and T-0004 have fibre.
    let now = clarion_model::Timestamp::now();
    let rule = clarion_segment::Rule::from_json(
        &serde_json::json!({"attr": "internet_service", "op": "=", "value": "Fiber optic"}),
    )
    .unwrap();
    let schema = clarion_segment::store::schema(&conn, DEFAULT_WORKSPACE)
        .await
        .unwrap();
    let valid = clarion_segment::validate_segment("fibre", &rule, &schema).unwrap();
    let segment = clarion_segment::store::create(
        &conn,
        DEFAULT_WORKSPACE,
        clarion_segment::store::NewSegment {
            slug: "fibre".into(),
            name: "Fibre".into(),
            description: String::new(),
            category: clarion_segment::store::Category::Technographic,
            rule: Some(rule),
        },
        now,
    )
    .await
    .unwrap();
    clarion_segment::membership::materialize(&conn, &segment, &valid, now)
        .await
        .unwrap();
    assert_eq!(current_members(&conn, "fibre").await, ["T-0003", "T-0004"]);

    // T-0001 moves to fibre, T-0004 leaves it, T-0006 arrives with it.
    let update = write(
        &dir,
        "changes.csv",
        b"Customer ID,Internet Service,Monthly Charges\n\
          T-0001,Fiber optic,70.7\n\
          T-0004,DSL,60\n\
          T-0006,Fiber optic,89.1\n",
    );
    let (output, stdout, stderr) = run(clarion(&db)
        .args(["import", "contacts"])
        .arg(&update)
        .args(["--map", "external_id=Customer ID"]));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 stored, 2 updated"), "{stdout}");
    assert_eq!(
        current_members(&conn, "fibre").await,
        ["T-0001", "T-0003", "T-0006"],
        "memberships follow the import at once"
    );
}

/// A column that cannot become an attribute stops the import before anything is written,
/// naming the column and the way out; two columns that would share a name do too.
async fn a_header_that_cannot_be_an_attribute_stops_the_import(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "export.csv",
        b"external_id,First Name,2023 Revenue\nc1,Ada,1200\n",
    );
    let (output, stdout, stderr) = run(clarion(&db).args(["import", "contacts"]).arg(&file));
    assert!(!output.status.success(), "{stdout}");
    assert!(stderr.contains("column 3 \"2023 Revenue\""), "{stderr}");
    assert!(stderr.contains("--map NAME='2023 Revenue'"), "{stderr}");
    let conn = Database::connect(&db.url).await.unwrap();
    assert!(
        store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("c1").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing was imported"
    );

    // Named with --map, the same column imports, and so does the first name.
    let (output, stdout, stderr) = run(clarion(&db)
        .args(["import", "contacts"])
        .arg(&file)
        .args(["--map", "revenue_2023=2023 Revenue"]));
    assert!(output.status.success(), "{stdout}{stderr}");
    let c1 = store::contacts::get(&conn, DEFAULT_WORKSPACE, &ExternalId::parse("c1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.first_name.as_ref().map(|n| n.as_str()), Some("Ada"));
    let attribute = |name: &str| clarion_model::AttributeName::parse(name).unwrap();
    assert_eq!(
        c1.attributes[&attribute("revenue_2023")],
        serde_json::json!(1200.0)
    );

    let file = write(
        &dir,
        "twice.csv",
        b"external_id,Zip Code,zip_code\nc2,1,2\n",
    );
    let (output, _, stderr) = run(clarion(&db).args(["import", "contacts"]).arg(&file));
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "column 2 \"Zip Code\" and column 3 \"zip_code\" would both become \"zip_code\""
        ),
        "{stderr}"
    );
}

on_both_backends!(
    contacts_import_keeps_good_rows_and_reports_bad_ones_by_line_and_field,
    a_wrong_delimiter_or_missing_column_is_explained,
    events_import_maps_columns_and_keeps_the_rest_as_properties,
    the_online_retail_preset_imports_purchases_with_their_customers,
    crm_headers_become_attributes_and_imports_update_segments_at_once,
    a_header_that_cannot_be_an_attribute_stops_the_import
);
