//! The shape of the compiled query: one statement, constants bound as parameters.

use clarion_model::{AttributeName, AttributeType, DEFAULT_WORKSPACE};
use clarion_segment::{Rule, Schema, compile, validate};
use sea_orm::{
    DbBackend,
    sea_query::{PostgresQueryBuilder, SqliteQueryBuilder},
};
use serde_json::json;

use crate::fixture::now;

const HOSTILE: &str = "x'); DROP TABLE contacts; --";

fn rule() -> Rule {
    Rule::from_json(&json!({"all": [
        {"attr": "city", "op": "starts_with", "value": HOSTILE},
        {"attr": "nickname", "op": "in", "value": [HOSTILE, "b"]},
        {"event": "purchase", "count": {"op": ">=", "value": 3}, "within": "90d",
         "where": [{"prop": "category", "op": "=", "value": HOSTILE}]},
        {"not": {"event": "email_click", "within": "30d"}}
    ]}))
    .unwrap()
}

#[test]
fn constants_never_reach_the_sql_text() {
    let schema = Schema::new().with_attribute(
        AttributeName::parse("nickname").unwrap(),
        AttributeType::String,
    );
    let valid = validate(&rule(), &schema).unwrap();
    for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
        let query = compile(&valid, DEFAULT_WORKSPACE, backend, now()).unwrap();
        let (sql, values) = match backend {
            DbBackend::Postgres => query.build(PostgresQueryBuilder),
            _ => query.build(SqliteQueryBuilder),
        };
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(
            !sql.contains("nickname") && !sql.contains("category"),
            "{sql}"
        );
        assert!(
            sql.starts_with(
                r#"SELECT "c"."id" FROM "contacts" AS "c" WHERE "c"."workspace_id" = "#
            ),
            "{sql}"
        );
        assert_eq!(
            sql.matches("SELECT").count(),
            3,
            "one query with one subquery per event condition: {sql}"
        );
        let hostile = values
            .0
            .iter()
            .filter(|v| format!("{v:?}").contains("DROP TABLE"))
            .count();
        assert_eq!(hostile, 4, "{values:?}");
    }
}
