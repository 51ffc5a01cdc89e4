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
