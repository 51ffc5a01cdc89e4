//! Every kind of bad row, through the backfill and through the tail, against real
//! PostgreSQL: each is kept, kept as `(none)`, or rejected and counted by reason (the
//! policy table in the README); nothing panics and no bad row poisons a total.

mod common;
mod pg_common;

use std::collections::BTreeMap;

use burnrate::model::{Agg, RejectReason};
use burnrate::source::{PgSource, schema};
use burnrate::store::StoreConfig;
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

/// 64 KB of name.
fn huge_name() -> String {
    "x".repeat(65_536)
}

const HOSTILE: &str = "evil\u{1b}[31mred\u{1b}[0m\u{7}\u{8}\r\n\u{1b}]0;title\u{7}\u{1b}[2J";

/// One of each kind, tagged with `pass` in the user column so the two passes are
/// distinct rows. Returns the rejects this set must add, by reason, and the rows
/// older than the retained history.
async fn insert_bad_rows(c: &tokio_postgres::Client, pass: &str) -> (BTreeMap<String, u64>, u64) {
    let rows: &[(&str, &str, &str, &str)] = &[
        // (timestamp expression, feature expression, cost expression, input tokens)
        ("now()", "'null_cost'", "NULL", "1"),
        ("now()", "'refund'", "-2.5", "1"),
        ("now()", "'nan'", "'NaN'", "1"),
        ("now()", "'inf'", "'Infinity'", "1"),
        ("now()", "'neg_inf'", "'-Infinity'", "1"),
        ("now()", "'million'", "1000000", "1"),
        ("now()", "'absurd'", "1e15", "1"),
        ("now()", "'absurd_credit'", "-1e13", "1"),
        ("now()", "NULL", "0.125", "1"),
        ("now()", "''", "0.25", "1"),
        ("now()", &format!("'{}'", huge_name()), "0.5", "1"),
        ("now()", "$2", "0.75", "1"),
        ("now() + interval '2 days'", "'future'", "1", "1"),
        ("'infinity'", "'future_inf'", "1", "1"),
        ("now() + interval '1 hour'", "'clock_skew'", "0.001", "1"),
        ("now() - interval '20 years'", "'ancient'", "3", "1"),
        ("'-infinity'", "'ancient_inf'", "3", "1"),
        ("NULL", "'null_ts'", "1", "1"),
        ("NULL", "'null_ts_nan'", "'NaN'", "1"),
        ("now()", "'bad_tokens'", "1", "-5"),
        ("now()", "'nan_and_bad_tokens'", "'NaN'", "-5"),
        ("now()", "'tiny'", "0.000000000001", "1"),
    ];
    for (ts, feature, cost, input) in rows {
        let sql = format!(
            "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, cost_usd, input_tokens, output_tokens) \
             VALUES ({ts}, {feature}, $1, NULL, {cost}, {input}, 7)"
        );
        let r = if sql.contains("$2") {
            c.execute(&sql, &[&pass, &HOSTILE]).await
        } else {
            c.execute(&sql, &[&pass]).await
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    (expected_rejects(), 2)
}

/// What one `insert_bad_rows` set adds to the rejects, by reason.
fn expected_rejects() -> BTreeMap<String, u64> {
    [
        ("null_cost", 1),
        ("non_finite_cost", 4),
        ("cost_out_of_range", 2),
        ("future_timestamp", 2),
        ("null_timestamp", 2),
        ("bad_tokens", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The valid rows by feature, as the policy defines them, in SQL.
async fn policy_truth(c: &tokio_postgres::Client) -> BTreeMap<String, Agg> {
    let rows = c
        .query(
            "SELECT coalesce(feature_name, ''), sum(cost_usd)::text, count(*), \
                    coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8 \
             FROM cost_events \
             WHERE \"timestamp\" > now() - interval '10 years' \
               AND \"timestamp\" <= now() + interval '1 day' \
               AND cost_usd < 'Infinity' AND cost_usd > '-Infinity' \
               AND abs(cost_usd) < 1000000000000 \
               AND coalesce(input_tokens, 0) >= 0 AND coalesce(output_tokens, 0) >= 0 \
             GROUP BY 1",
            &[],
        )
        .await
        .expect("policy truth");
    named_aggs(&rows)
}

fn by_reason(map: &BTreeMap<RejectReason, u64>) -> BTreeMap<String, u64> {
    map.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (r.name().to_string(), *n))
        .collect()
}

fn doubled(m: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    m.iter().map(|(k, v)| (k.clone(), v * 2)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_row_kind_through_backfill_and_tail() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    // Tables not made by `db init` can hold NULL timestamps.
    c.batch_execute("ALTER TABLE cost_events ALTER COLUMN \"timestamp\" DROP NOT NULL")
        .await
        .unwrap();
    // Good rows in the same groups as bad ones: a bad row must not poison them.
    for f in ["nan", "absurd", "future", "null_cost"] {
        insert(&c, f, 1_000_000_000_000, 1, 1).await;
    }
    let (expect, _) = insert_bad_rows(&c, "backfill").await;

    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let (tx, mut rx) = mpsc::channel(10_000);
    let mut seen = Collector::new(cfg);
    source
        .backfill(&tx, chrono::Utc::now())
        .await
        .expect("the backfill survives every bad row");
    seen.drain(&mut rx);
    assert_eq!(
        by_reason(&seen.store.intake().rejected),
        expect,
        "backfill rejects"
    );
    assert_eq!(store_by_feature(&seen.store), policy_truth(&c).await);

    let (_, too_old) = insert_bad_rows(&c, "tail").await;
    for f in ["nan", "absurd", "after"] {
        insert(&c, f, 500_000_000_000, 1, 1).await;
    }
    catch_up(&mut source, &tx, &c).await;
    seen.drain(&mut rx);
    assert_eq!(
        by_reason(&seen.store.intake().rejected),
        doubled(&expect),
        "tail rejects, counted like the backfill's"
    );
    assert_eq!(
        seen.store.intake().too_old,
        too_old,
        "rows before the retained history, read by the tail"
    );
    let store = store_by_feature(&seen.store);
    let truth = policy_truth(&c).await;
    assert_eq!(store, truth);

    // What the policy promises, spelled out.
    let cost = |f: &str| store.get(f).map(|a| a.cost.to_string());
    assert_eq!(cost("refund").as_deref(), Some("-5"), "credits kept");
    assert_eq!(
        cost("million").as_deref(),
        Some("2000000"),
        "a million dollars in one row is kept"
    );
    assert_eq!(store["nan"].requests, 2, "good rows beside a NaN count");
    assert!(!store.contains_key("absurd_credit"));
    assert_eq!(store["future"].requests, 1, "only the good row of 'future'");
    assert_eq!(
        store["clock_skew"].requests, 2,
        "clock skew within a day kept"
    );
    assert_eq!(
        store["(none)"].requests, 4,
        "NULL and empty names kept as (none)"
    );
    assert_eq!(store[huge_name().as_str()].requests, 2, "64 KB names kept");
    assert_eq!(
        store[HOSTILE].requests, 2,
        "control characters kept (the screen sanitises them)"
    );
    assert!(!store.contains_key("ancient") && !store.contains_key("future_inf"));
    assert_eq!(
        store["tiny"].cost.picos(),
        2,
        "a picodollar is not rounded away"
    );
    db.drop_db().await;
}

#[test]
fn snapshot_json_counts_rejects_by_reason_and_totals_equal_sql() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(async {
        let db = TestDb::create().await;
        schema::init(&target(&db.url), TABLE)
            .await
            .expect("db init");
        let c = db.client().await;
        c.batch_execute("ALTER TABLE cost_events ALTER COLUMN \"timestamp\" DROP NOT NULL")
            .await
            .unwrap();
        insert_bad_rows(&c, "snapshot").await;
        db
    });
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args([
            "snapshot",
            "--json",
            "--window",
            "30d",
            "--database-url",
            &db.url,
        ])
        .env("XDG_STATE_HOME", state.path())
        .env("XDG_CONFIG_HOME", state.path())
        .env_remove("BURNRATE_CONFIG")
        .output()
        .expect("run snapshot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let source = &v["source"];
    let expect = expected_rejects();
    let got: BTreeMap<String, u64> = source["rejected_by_reason"]
        .as_object()
        .expect("rejected_by_reason is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(got, expect);
    assert_eq!(source["rejected"], expect.values().sum::<u64>());
    assert!(
        source["watermark_lag_secs"].is_i64(),
        "the watermark lag after the poll: {source}"
    );
    let sql_total: String = rt.block_on(async {
        let c = db.client().await;
        c.query_one(
            "SELECT round(sum(cost_usd), 6)::text FROM cost_events \
             WHERE \"timestamp\" > now() - interval '10 years' AND \"timestamp\" <= now() + interval '1 day' \
               AND cost_usd < 'Infinity' AND cost_usd > '-Infinity' AND abs(cost_usd) < 1000000000000 \
               AND coalesce(input_tokens, 0) >= 0 AND coalesce(output_tokens, 0) >= 0",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    });
    assert_eq!(v["totals"]["cost_usd"], sql_total.as_str());
    // The hostile name survives as data, escaped by JSON, never raw on a terminal.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}'), "no raw escape in the JSON output");
    assert!(
        v["by_feature"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == HOSTILE)
    );
    rt.block_on(db.drop_db());
}
