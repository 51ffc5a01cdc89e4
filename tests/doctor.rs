//! `burnrate doctor` against real databases: what it shows, and its exit codes.

mod common;
mod pg_common;
mod presets_common;

use chrono::{Duration, Utc};
use common::TestDb;
use presets_common::*;

#[tokio::test]
async fn doctor_on_a_litellm_database_shows_the_map_indexes_rows_and_mode() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(LITELLM_DDL).await.unwrap();
    let now = Utc::now();
    for i in 0..30u32 {
        litellm_row(&c, i, now - Duration::minutes(i64::from(i))).await;
    }
    let prices = "[prices]\n\"gpt-4o\" = [{ from = \"2024-08-06\", input_per_mtok = \"2.5\", output_per_mtok = \"10\" }]\n";
    let (code, out, err) = burnrate(&db.url, prices, &["doctor", "--preset", "litellm"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("prices     gpt-4o: rows that log no cost or 0"),
        "{out}"
    );
    for want in [
        "preset     litellm",
        "table      \"LiteLLM_SpendLogs\"",
        "timestamp      <- \"startTime\"  (timestamp(3) without time zone)",
        "cost           <- spend  (double precision)",
        "feature        <- request_tags -> 0  (jsonb)",
        "tenant         <- team_id  (text)",
        "region         (none): not in this table",
        "tail mode  time overlap (best effort): re-reads the last 2m",
        "rows       30, ",
        "(\"startTime\", request_id) for the tail and the backfill: ok (LiteLLM_SpendLogs_startTime_request_id_idx)",
        "result     ok",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // The default preset does not fit this database: doctor says so, and which does.
    let (code, out, _) = burnrate(&db.url, "", &["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("problem    table cost_events does not exist"),
        "{out}"
    );
    assert!(
        out.contains(
            "hint       --preset litellm fits this database (table \"LiteLLM_SpendLogs\")"
        ),
        "{out}"
    );
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn doctor_names_missing_indexes_with_the_statement_to_add_them() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(SEED_DDL).await.unwrap();
    c.batch_execute(
        "INSERT INTO cost_events (timestamp, feature_name, cost_usd) VALUES \
         ('2026-11-01 10:00:00', 'chat', 0.25), ('2026-11-02 11:30:00', NULL, 0.5)",
    )
    .await
    .unwrap();
    let (code, out, err) = burnrate(&db.url, "", &["doctor", "--preset", "seed"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("tail mode  id overlap (best effort)"), "{out}");
    assert!(
        out.contains("rows       2, 2026-11-01 10:00:00 UTC to 2026-11-02 11:30:00 UTC"),
        "{out}"
    );
    assert!(
        out.contains("(id) for the tail: ok (cost_events_pkey)"),
        "the serial primary key serves the tail: {out}"
    );
    assert!(
        out.contains("(timestamp) for the backfill: MISSING: CREATE INDEX CONCURRENTLY ON cost_events (timestamp);"),
        "{out}"
    );
    assert!(err.contains("doctor found 1 problem"), "{err}");

    // After adding it, all is well.
    c.batch_execute("CREATE INDEX ON cost_events (timestamp)")
        .await
        .unwrap();
    let (code, out, err) = burnrate(&db.url, "", &["doctor", "--preset", "seed"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("result     ok"), "{out}");
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn doctor_on_burnrates_own_table_after_db_init_is_clean() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["db", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = burnrate(&db.url, "", &["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("preset     burnrate"), "{out}");
    assert!(out.contains("tail mode  tx watermark (gap-free)"), "{out}");
    assert!(out.contains("(tx, id) for the tail: ok"), "{out}");
    assert!(out.contains("(timestamp) for the backfill: ok"), "{out}");
    assert!(out.contains("rows       0"), "{out}");
    db.drop_db().await;
}

#[test]
fn doctor_without_a_server_fails_with_where_it_tried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://alice:s3cretpw@127.0.0.1:{port}/llm");
    let (code, out, err) = burnrate(&url, "", &["doctor"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(out.contains("problem    "), "{out}");
    assert!(!out.contains("s3cretpw") && !err.contains("s3cretpw"));
}

/// `doctor --json` on stdout, parsed; with the exit code.
fn doctor_json(url: &str, config: &str, preset: &str) -> (i32, serde_json::Value) {
    let (code, out, err) = burnrate(url, config, &["doctor", "--json", "--preset", preset]);
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("doctor --json is one JSON object ({e}): {out}{err}"));
    (code, v)
}

#[tokio::test]
async fn doctor_json_has_the_same_findings_and_exit_codes() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(SEED_DDL).await.unwrap();
    c.batch_execute(
        "INSERT INTO cost_events (timestamp, feature_name, cost_usd) VALUES \
         ('2026-11-01 10:00:00', 'chat', 0.25), ('2026-11-02 11:30:00', NULL, 0.5), \
         ('2026-11-03 08:15:00', 'search', 0.125)",
    )
    .await
    .unwrap();
    let (code, v) = doctor_json(&db.url, "", "seed");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["preset"], "seed");
    assert_eq!(v["table"], "cost_events");
    assert!(v["server_version"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(v["rows"], 3);
    assert_eq!(v["first"], "2026-11-01T10:00:00Z");
    assert_eq!(v["last"], "2026-11-03T08:15:00Z");
    assert_eq!(v["tail_mode"]["mode"], "id_overlap");
    assert_eq!(v["tail_mode"]["label"], "id overlap (best effort)");
    assert!(v["tail_mode"]["overlap_secs"].is_null());
    let columns: Vec<(String, String, String)> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["field"].as_str().unwrap().into(),
                m["column"].as_str().unwrap().into(),
                m["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        columns.contains(&(
            "timestamp".into(),
            "timestamp".into(),
            "timestamp without time zone".into()
        )) && columns.contains(&("cost".into(), "cost_usd".into(), "numeric(10,6)".into())),
        "{columns:?}"
    );
    assert!(
        v["unmapped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "user"),
        "{v}"
    );
    let indexes = v["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 2, "{v}");
    assert_eq!(indexes[0]["purpose"], "the tail");
    assert_eq!(indexes[0]["columns"], serde_json::json!(["id"]));
    assert_eq!(indexes[0]["present"], true);
    assert_eq!(indexes[0]["index"], "cost_events_pkey");
    assert_eq!(indexes[1]["purpose"], "the backfill");
    assert_eq!(indexes[1]["present"], false);
    assert!(indexes[1]["index"].is_null());
    let create = "CREATE INDEX CONCURRENTLY ON cost_events (timestamp);";
    assert_eq!(indexes[1]["create"], create);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert!(problems[0].as_str().unwrap().contains(create), "{v}");

    // Fixed: ok, exit code 0, every index present.
    c.batch_execute("CREATE INDEX ON cost_events (timestamp)")
        .await
        .unwrap();
    let (code, v) = doctor_json(&db.url, "", "seed");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert!(
        v["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["present"] == true)
    );

    // A LiteLLM database: keyset mode with its overlap, the price list, and the
    // preset that fits when the configured one does not.
    c.batch_execute(LITELLM_DDL).await.unwrap();
    for i in 0..5u32 {
        litellm_row(&c, i, Utc::now() - Duration::minutes(i64::from(i))).await;
    }
    let prices = "[prices]\n\"gpt-4o\" = [{ from = \"2024-08-06\", input_per_mtok = \"2.5\", output_per_mtok = \"10\" }]\n";
    let (code, v) = doctor_json(&db.url, prices, "litellm");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["table"], "\"LiteLLM_SpendLogs\"");
    assert_eq!(v["rows"], 5);
    assert_eq!(v["tail_mode"]["mode"], "keyset_overlap");
    assert_eq!(v["tail_mode"]["overlap_secs"], 120);
    assert_eq!(v["priced_models"], serde_json::json!(["gpt-4o"]));
    assert_eq!(
        v["indexes"][0]["columns"],
        serde_json::json!(["\"startTime\"", "request_id"])
    );
    assert_eq!(
        v["indexes"][0]["index"],
        "LiteLLM_SpendLogs_startTime_request_id_idx"
    );
    c.batch_execute("DROP TABLE cost_events").await.unwrap();
    let (code, v) = doctor_json(&db.url, "", "burnrate");
    assert_eq!(code, 1, "{v}");
    assert!(v["tail_mode"].is_null() && v["rows"].is_null(), "{v}");
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("table cost_events does not exist"),
        "{v}"
    );
    assert_eq!(
        v["other_presets"],
        serde_json::json!([{"preset": "litellm", "table": "\"LiteLLM_SpendLogs\""}])
    );
    drop(c);
    db.drop_db().await;
}

/// A view over burnrate's table: doctor checks the base table's indexes (a view has
/// none, and CREATE INDEX on it fails) and says so.
#[tokio::test]
async fn doctor_on_a_view_checks_the_base_tables_indexes() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["db", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    let c = db.client().await;
    c.batch_execute("CREATE VIEW spend AS SELECT * FROM cost_events")
        .await
        .unwrap();
    let config = "[database]\ntable = \"spend\"\n";
    let (code, out, err) = burnrate(&db.url, config, &["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("spend is a view: PostgreSQL uses the indexes of its base table cost_events"),
        "{out}"
    );
    assert!(out.contains("(tx, id) for the tail: ok"), "{out}");
    assert!(
        !out.contains("ON spend"),
        "no CREATE INDEX on the view: {out}"
    );

    // Without the base table's index, the statement names the base table.
    c.batch_execute("DROP INDEX cost_events_timestamp_idx")
        .await
        .unwrap();
    let (code, out, _) = burnrate(&db.url, config, &["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CREATE INDEX CONCURRENTLY ON cost_events (timestamp);"),
        "{out}"
    );

    // A view that renames a column: that index is not guessed at.
    c.batch_execute(
        "CREATE VIEW spend_at AS SELECT \"timestamp\" AS at, feature_name, cost_usd, id, tx \
         FROM cost_events",
    )
    .await
    .unwrap();
    let renamed = "[database]\ntable = \"spend_at\"\n[source.columns]\ntimestamp = \"at\"\n";
    let (code, out, err) = burnrate(&db.url, renamed, &["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the index for the backfill is not checked: cost_events has no column at"),
        "{out}"
    );
    assert!(out.contains("(tx, id) for the tail: ok"), "{out}");
    drop(c);
    db.drop_db().await;
}

/// A role that may read only some of the mapped columns fails doctor, as it would
/// fail every query, with the GRANT that fixes it.
#[tokio::test]
async fn doctor_checks_select_on_each_mapped_column() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["db", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    let c = db.client().await;
    let role = format!("{}_cols", db.name);
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT SELECT (\"timestamp\", feature_name, id, tx) ON cost_events TO {role}"
    ))
    .await
    .unwrap();
    let (_, rest) = db.url.split_once('@').unwrap();
    let url = format!("postgres://{role}@{rest}");
    let (code, out, err) = burnrate(&url, "", &["doctor"]);
    let (snap_code, _, snap_err) = burnrate(&url, "", &["snapshot", "--json"]);
    // Every mapped column granted, one other column not: fine, except with a
    // tenant, whose queries read the table through `SELECT e.*`.
    c.batch_execute(&format!(
        "ALTER TABLE cost_events ADD COLUMN notes text; \
         GRANT SELECT (cost_usd, user_id, model, region, tenant_id, input_tokens, \
           output_tokens, request_id) ON cost_events TO {role}"
    ))
    .await
    .unwrap();
    let (all_code, all_out, _) = burnrate(&url, "", &["doctor"]);
    let (tenant_code, tenant_out, _) = burnrate(&url, "", &["doctor", "--tenant", "acme"]);
    let (tenant_snap, _, _) = burnrate(&url, "", &["snapshot", "--json", "--tenant", "acme"]);
    c.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
    assert_eq!(all_code, 0, "{all_out}");
    assert_eq!(tenant_code, 1, "{tenant_out}");
    assert!(
        tenant_out.contains("may not SELECT column notes"),
        "{tenant_out}"
    );
    assert_ne!(tenant_snap, 0, "snapshot --tenant fails as doctor said");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("role {role} may not SELECT columns cost_usd")),
        "{out}"
    );
    assert!(out.contains("GRANT SELECT (cost_usd, "), "{out}");
    assert!(out.contains(&format!("ON cost_events TO {role};")), "{out}");
    assert_ne!(snap_code, 0, "snapshot fails where doctor does: {snap_err}");
    drop(c);
    db.drop_db().await;
}

/// burnrate's table from before the tx column: doctor suggests the upgrade.
#[tokio::test]
async fn doctor_without_tx_suggests_the_gap_free_upgrade() {
    let db = TestDb::create().await;
    let (code, out, err) = burnrate(&db.url, "", &["db", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    let c = db.client().await;
    // As before `tx` existed: ordered by id (its index went with tx).
    c.batch_execute("ALTER TABLE cost_events DROP COLUMN tx; CREATE INDEX ON cost_events (id)")
        .await
        .unwrap();
    let (code, out, err) = burnrate(&db.url, "", &["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tail mode  id overlap (best effort)"), "{out}");
    assert!(
        out.contains("hint       run `burnrate db init` to add the tx column"),
        "{out}"
    );
    let (_, json_out, _) = burnrate(&db.url, "", &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert!(v["hints"][0].as_str().unwrap().contains("db init"), "{v:#}");
    // After the upgrade, no hint.
    burnrate(&db.url, "", &["db", "init"]);
    let (code, out, _) = burnrate(&db.url, "", &["doctor"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("hint"), "{out}");
    drop(c);
    db.drop_db().await;
}
