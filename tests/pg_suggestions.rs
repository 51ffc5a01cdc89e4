//! Errors that point the right way: the key that names another product's table,
//! mapping a cost column the table already has (never adding one nobody fills), and
//! "did you mean" for a misspelt column.

mod common;
mod pg_common;
mod presets_common;

use common::TestDb;
use presets_common::*;

#[tokio::test]
async fn litellm_without_its_table_names_source_table_not_db_init() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["snapshot", "--json", "--preset", "litellm"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("\"LiteLLM_SpendLogs\" does not exist"),
        "{err}"
    );
    assert!(
        err.contains("set source.table"),
        "the key that exists: {err}"
    );
    assert!(!err.contains("database.table"), "{err}");
    assert!(
        !err.contains("Create it with `burnrate db init`"),
        "db init does not create LiteLLM's table: {err}"
    );
    // The config key named is real: it points the preset at another table.
    c_exec(&db, LITELLM_DDL).await;
    c_exec(&db, "ALTER TABLE \"LiteLLM_SpendLogs\" RENAME TO spend_log").await;
    let (code, out, err) = burnrate(
        &db.url,
        "[source]\ntable = \"spend_log\"\n",
        &["snapshot", "--json", "--preset", "litellm"],
    );
    assert_eq!(code, 0, "{out}{err}");
    db.drop_db().await;
}

async fn c_exec(db: &TestDb, sql: &str) {
    db.client().await.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn a_cost_column_is_mapped_in_place_rather_than_an_empty_one_added() {
    let db = TestDb::create().await;
    c_exec(
        &db,
        "CREATE TABLE cost_events (\"timestamp\" timestamptz NOT NULL, feature_name text, \
           cost numeric(12, 6), input_tokens int, id bigserial PRIMARY KEY); \
         INSERT INTO cost_events (\"timestamp\", feature_name, cost) VALUES \
           (now() - interval '5 minutes', 'chat', 1.25), (now() - interval '4 minutes', 'chat', 0.5)",
    )
    .await;
    let (code, out, err) = burnrate(&db.url, "", &["snapshot", "--json"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("[source.columns] cost = \"cost\""),
        "suggests mapping the column it has: {err}"
    );
    assert!(!err.contains("db init"), "nothing to add: {err}");

    let (code, out, err) = burnrate(
        &db.url,
        "[source.columns]\ncost = \"cost\"\n",
        &["snapshot", "--json", "--window", "24h"],
    );
    assert_eq!(code, 0, "the suggestion works: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["cost_usd"], "1.750000", "{v:#}");
    db.drop_db().await;
}

#[tokio::test]
async fn a_misspelt_column_gets_did_you_mean_not_another_preset() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["db", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    let config = "[source.columns]\nuser = \"user_idd\"\n";
    let (code, out, err) = burnrate(&db.url, config, &["snapshot", "--json"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("did you mean user_id?"), "{err}");
    let (code, out, err) = burnrate(&db.url, config, &["doctor"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("did you mean user_id?"), "{out}");
    assert!(!out.contains("--preset seed fits"), "{out}");
    db.drop_db().await;
}
