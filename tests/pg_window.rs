//! Window-overlap mode (issue 16, item 17): the seed article's table as written
//! (`timestamp`, `feature_name`, `cost_usd`; no id, no tx, no key) is watched in
//! place. Each poll re-aggregates the overlap window on the server and replaces its
//! previous count, so totals equal SQL's to the micro-dollar, late rows within the
//! overlap included; a row committed later than the overlap is missed, as the
//! status bar and `doctor` say.

mod common;
mod pg_common;

use std::collections::BTreeMap;
use std::time::Duration;

use burnrate::model::{Agg, TailMode};
use burnrate::source::PgSource;
use burnrate::source::columns::{MapSpec, Preset, SourceConfig};
use burnrate::store::StoreConfig;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

/// The article's DDL, without the `id SERIAL` our presets test adds.
const AS_WRITTEN: &str = "CREATE TABLE cost_events (\
    timestamp TIMESTAMP NOT NULL DEFAULT NOW(), \
    feature_name VARCHAR(100), \
    cost_usd DECIMAL(10, 6) NOT NULL)";

async fn add(c: &tokio_postgres::Client, at: DateTime<Utc>, feature: Option<&str>, cost: &str) {
    c.execute(
        "INSERT INTO cost_events (timestamp, feature_name, cost_usd) \
         VALUES (($1::timestamptz AT TIME ZONE 'UTC'), $2, $3::text::numeric)",
        &[&at, &feature, &cost],
    )
    .await
    .expect("insert");
}

/// SQL's totals by feature (NULL and empty are both "(none)").
async fn truth(c: &tokio_postgres::Client) -> BTreeMap<String, Agg> {
    let rows = c
        .query(
            "SELECT coalesce(feature_name, ''), sum(cost_usd)::text, count(*), 0::int8, 0::int8 \
             FROM cost_events GROUP BY 1",
            &[],
        )
        .await
        .expect("truth");
    named_aggs(&rows)
}

fn seed_map(overlap: Duration) -> MapSpec {
    let src = SourceConfig {
        overlap,
        ..Default::default()
    };
    MapSpec::build(&src, Some(Preset::Seed), TABLE).expect("seed map")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_table_as_written_equals_sql_with_late_rows_in_the_overlap() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(AS_WRITTEN).await.unwrap();
    let now = Utc::now();
    for i in 0..60i64 {
        let feature = match i % 4 {
            0 => None,
            1 => Some(""),
            2 => Some("support_qa"),
            _ => Some("search"),
        };
        add(
            &c,
            now - ChronoDuration::minutes(i * 37),
            feature,
            &format!("0.{:06}", (i * 7919) % 1_000_000),
        )
        .await;
    }

    let cfg = StoreConfig::default();
    let opts = options(cfg).with_map(seed_map(Duration::from_secs(600)));
    let mut source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("the seed preset accepts the table as written");
    assert_eq!(source.mode(), Some(TailMode::WindowOverlap));
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    source.poll(&tx).await.expect("first poll");
    seen.drain(&mut rx);
    assert_eq!(
        store_by_feature(&seen.store),
        truth(&c).await,
        "after the backfill"
    );
    let note = source.last_status().and_then(|s| s.note.clone());
    assert_eq!(
        note.as_deref(),
        Some("overlap 10m: rows committed more than 10m late are missed")
    );

    // New rows, late ones within the overlap, and more rows in minutes already
    // counted: each poll sends only the difference.
    let now = Utc::now();
    add(&c, now, Some("chat"), "1.000001").await;
    add(
        &c,
        now - ChronoDuration::minutes(3),
        Some("chat"),
        "0.250000",
    )
    .await;
    add(&c, now - ChronoDuration::minutes(9), None, "0.000007").await;
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 3);
    seen.drain(&mut rx);
    assert_eq!(
        store_by_feature(&seen.store),
        truth(&c).await,
        "new and late rows"
    );

    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "nothing twice"
    );
    add(&c, now, Some("chat"), "2.500000").await;
    add(
        &c,
        now - ChronoDuration::minutes(3),
        Some("support_qa"),
        "0.123456",
    )
    .await;
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 2);
    seen.drain(&mut rx);
    let expected = truth(&c).await;
    assert_eq!(
        store_by_feature(&seen.store),
        expected,
        "rows in counted minutes"
    );
    assert_eq!(
        seen.store.total(i64::MIN..=i64::MAX).cost.to_string_6(),
        c.query_one("SELECT sum(cost_usd)::text FROM cost_events", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "the grand total, to the micro-dollar"
    );

    // Committed 30 minutes behind its timestamp, with a 10-minute overlap: missed,
    // as promised.
    add(
        &c,
        Utc::now() - ChronoDuration::minutes(30),
        Some("too_late"),
        "5.000000",
    )
    .await;
    source.poll(&tx).await.expect("poll");
    seen.drain(&mut rx);
    assert!(!store_by_feature(&seen.store).contains_key("too_late"));
    assert_eq!(store_by_feature(&seen.store), expected);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_doctor_take_the_seed_table_as_written() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(AS_WRITTEN).await.unwrap();
    let now = Utc::now();
    for i in 0..30i64 {
        add(
            &c,
            now - ChronoDuration::minutes(i * 11),
            Some(["chat", "search"][i as usize % 2]),
            &format!("0.{:06}", 1 + i * 31_337),
        )
        .await;
    }
    let out = common::burnrate_ok(&db.url, &["snapshot", "--json", "--preset", "seed"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON");
    let sql: (String, i64) = {
        let r = c
            .query_one("SELECT sum(cost_usd)::text, count(*) FROM cost_events", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(v["totals"]["cost_usd"], sql.0);
    assert_eq!(v["totals"]["requests"], sql.1);
    assert_eq!(v["source"]["mode"], "window_overlap");

    // The one index this mode needs (doctor would say so otherwise).
    c.batch_execute("CREATE INDEX ON cost_events (timestamp)")
        .await
        .unwrap();
    let out = common::burnrate_ok(&db.url, &["doctor", "--preset", "seed"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("overlap 2m: rows committed more than 2m late are missed"),
        "{text}"
    );
    db.drop_db().await;
}
