//! Thirty contacts and their events, stored through the server's own ingestion, with every
//! edge the rules must get right: missing values, events exactly on window boundaries, events
//! after `NOW`, contacts without events, contacts in different time zones.

use std::collections::BTreeSet;

use clarion_contacts::{contacts, events};
use clarion_model::{ContactUpsert, DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_testkit::{Backend, TestDb};
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::json;

pub const DAY: i64 = 86_400_000;
pub const HOUR: i64 = 3_600_000;

/// The moment rules are evaluated at: 2026-06-15T12:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::parse("2026-06-15T12:00:00Z").unwrap()
}

/// A contact as the test knows it.
#[derive(Debug, Clone)]
pub struct Person {
    pub external_id: String,
    pub country: Option<&'static str>,
    pub city: Option<&'static str>,
    pub time_zone: Option<&'static str>,
    pub email: Option<String>,
    pub age: Option<f64>,
    pub vip: Option<bool>,
    /// `YYYY-MM-DD` or RFC 3339, as written.
    pub birthday: Option<String>,
    pub tags: Option<Vec<&'static str>>,
    pub nickname: Option<&'static str>,
    pub created_at: i64,
}

/// An event as the test knows it.
#[derive(Debug, Clone)]
pub struct Happening {
    pub person: usize,
    pub kind: &'static str,
    pub at: i64,
    pub amount: Option<f64>,
    pub category: Option<&'static str>,
    pub price: Option<f64>,
    pub gift: Option<bool>,
}

pub struct Fixture {
    pub people: Vec<Person>,
    pub happenings: Vec<Happening>,
    pub db: DatabaseConnection,
    _test_db: TestDb,
}

pub fn day(millis: i64) -> String {
    Timestamp::from_millis(millis)
        .to_datetime()
        .format("%Y-%m-%d")
        .to_string()
}

pub fn people() -> Vec<Person> {
    let now = now().millis();
    (0..30)
        .map(|i: usize| {
            let n = i as i64;
            Person {
                external_id: format!("p{i:02}"),
                country: [Some("DE"), Some("AT"), Some("CH"), Some("FR"), None][i % 5],
                city: [
                    None,
                    Some("Berlin"),
                    Some("Wien"),
                    Some("Zürich"),
                    Some("Paris"),
                    Some("Bern"),
                ][i % 6],
                time_zone: [
                    Some("Europe/Berlin"),
                    Some("America/New_York"),
                    Some("Asia/Tokyo"),
                    None,
                ][i % 4],
                email: (i % 6 != 5)
                    .then(|| format!("user{i}@{}", ["example.com", "mail.de", "shop.at"][i % 3])),
                age: (i % 7 != 3).then(|| {
                    18.0 + ((n * 7) % 50) as f64 + if i.is_multiple_of(4) { 0.5 } else { 0.0 }
                }),
                vip: [Some(true), Some(false), None][i % 3],
                birthday: match i % 5 {
                    2 => None,
                    // Written with an offset: its calendar date is the one written.
                    4 => Some(format!("{}T23:30:00+02:00", day(now - n * 40 * DAY))),
                    _ => Some(day(now - n * 40 * DAY)),
                },
                tags: [None, Some(vec!["a"]), Some(vec!["a", "b"]), Some(vec!["c"])][i % 4].clone(),
                nickname: [
                    Some("Anna"),
                    Some("anna-lena"),
                    Some("Bob"),
                    Some("Ann"),
                    None,
                ][i % 5],
                // Contact 3 was created exactly 30 days before NOW.
                created_at: now - n * 10 * DAY - (n % 3) * HOUR,
            }
        })
        .collect()
}

pub fn happenings() -> Vec<Happening> {
    let now = now().millis();
    let mut all = Vec::new();
    for i in 0..30_usize {
        let n = i as i64;
        if i.is_multiple_of(2) {
            for j in 0..(i % 5) as i64 {
                let amount = 10.0 * (j + 1) as f64 + n as f64;
                all.push(Happening {
                    person: i,
                    kind: "purchase",
                    at: now - (j * 25 + n) * DAY - HOUR,
                    amount: (i != 8).then_some(amount),
                    category: Some(["books", "toys"][(j % 2) as usize]),
                    price: Some(amount / 2.0),
                    gift: (j != 1).then_some(j % 2 == 0),
                });
            }
        }
        if i.is_multiple_of(3) {
            all.push(Happening {
                person: i,
                kind: "email_click",
                at: now - n * 2 * DAY,
                amount: None,
                category: None,
                price: None,
                gift: None,
            });
        }
    }
    let at = |person, at, amount| Happening {
        person,
        kind: "purchase",
        at,
        amount,
        category: Some("books"),
        price: amount,
        gift: None,
    };
    // Exactly on the 90-day boundary, a millisecond outside it, exactly now, after now.
    all.push(at(1, now - 90 * DAY, Some(100.0)));
    all.push(at(3, now - 90 * DAY - 1, Some(100.0)));
    all.push(at(5, now, Some(7.0)));
    all.push(at(7, now + DAY, Some(1000.0)));
    // Exactly on the 30-day boundary of email clicks.
    all.push(Happening {
        kind: "email_click",
        ..at(9, now - 30 * DAY, None)
    });
    all
}

impl Fixture {
    pub async fn load(backend: Backend) -> Fixture {
        let test_db = TestDb::new(backend).await;
        let db = test_db.migrated().await;
        let people = people();
        let happenings = happenings();

        let items = people
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let mut attributes = serde_json::Map::new();
                let mut put = |name: &str, value: Option<serde_json::Value>| {
                    if let Some(value) = value {
                        attributes.insert(name.to_string(), value);
                    }
                };
                put("age", p.age.map(|v| json!(v)));
                put("vip", p.vip.map(|v| json!(v)));
                put("birthday", p.birthday.as_ref().map(|v| json!(v)));
                put("tags", p.tags.as_ref().map(|v| json!(v)));
                put("nickname", p.nickname.map(|v| json!(v)));
                let item: ContactUpsert = serde_json::from_value(json!({
                    "external_id": p.external_id,
                    "country": p.country,
                    "city": p.city,
                    "time_zone": p.time_zone,
                    "email": p.email,
                    "attributes": attributes,
                }))
                .unwrap();
                (index, item)
            })
            .collect();
        let report = contacts::upsert_batch(&db, DEFAULT_WORKSPACE, items, true)
            .await
            .unwrap();
        assert_eq!(report.created, people.len(), "{:?}", report.errors);
        for p in &people {
            let update = Query::update()
                .table("contacts")
                .value("created_at", p.created_at)
                .and_where(Expr::col("external_id").eq(p.external_id.clone()))
                .to_owned();
            db.execute(&update).await.unwrap();
        }

        let items = happenings
            .iter()
            .enumerate()
            .map(|(index, h)| {
                let mut properties = serde_json::Map::new();
                if let Some(category) = h.category {
                    properties.insert("category".to_string(), json!(category));
                }
                if let Some(price) = h.price {
                    properties.insert("price".to_string(), json!(price));
                }
                if let Some(gift) = h.gift {
                    properties.insert("gift".to_string(), json!(gift));
                }
                let item: EventInput = serde_json::from_value(json!({
                    "external_id": people[h.person].external_id,
                    "kind": h.kind,
                    "occurred_at": Timestamp::from_millis(h.at),
                    "amount": h.amount,
                    "properties": properties,
                }))
                .unwrap();
                (index, item)
            })
            .collect();
        let options = events::IngestOptions {
            create_unknown_contacts: false,
            max_future_millis: 365 * DAY,
            atomic: true,
        };
        let report = events::insert_batch(&db, DEFAULT_WORKSPACE, items, options)
            .await
            .unwrap();
        assert_eq!(report.accepted, happenings.len(), "{:?}", report.errors);

        Fixture {
            people,
            happenings,
            db,
            _test_db: test_db,
        }
    }

    /// The events of one person.
    pub fn of(&self, person: usize) -> impl Iterator<Item = &Happening> {
        self.happenings.iter().filter(move |h| h.person == person)
    }

    /// External ids of the people a predicate selects.
    pub fn expected(&self, keep: impl Fn(usize, &Person) -> bool) -> BTreeSet<String> {
        self.people
            .iter()
            .enumerate()
            .filter(|(i, p)| keep(*i, p))
            .map(|(_, p)| p.external_id.clone())
            .collect()
    }
}
