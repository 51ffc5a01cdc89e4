//! `db init --partitioned`: a monthly-partitioned cost_events that burnrate reads
//! exactly like a plain one, whose backfill day-queries read one partition only,
//! that a second run leaves alone, and that refuses to "partition" a plain table.

mod common;
mod pg_common;

use burnrate::source::PgSource;
use burnrate::source::partitions::{self, MONTHS_AHEAD, MONTHS_BEHIND};
use burnrate::source::schema::{self, TableName};
use burnrate::store::StoreConfig;
use chrono::{Duration as ChronoDuration, DurationRound, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_is_read_exactly_and_pruned_per_day() {
    let db = TestDb::create().await;
    let now = Utc::now();
    let (init, parts) = partitions::init_partitioned(&target(&db.url), TABLE, now)
        .await
        .expect("db init --partitioned");
    assert!(init.created_table);
    assert_eq!(init.created_indexes.len(), 2, "{init:?}");
    let expected = (MONTHS_BEHIND + 1 + MONTHS_AHEAD) as usize + 1;
    assert_eq!(parts.created.len(), expected, "{parts:?}");
    assert_eq!(parts.total, expected);
    assert!(parts.created.contains(&"cost_events_pdefault".to_string()));
    let this_month = format!("cost_events_p{}", now.format("%Y%m"));
    assert!(parts.created.contains(&this_month), "{parts:?}");

    // Again: nothing to do.
    let (again, parts_again) = partitions::init_partitioned(&target(&db.url), TABLE, now)
        .await
        .expect("second db init --partitioned");
    assert!(!again.changed(), "{again:?}");
    assert!(parts_again.created.is_empty(), "{parts_again:?}");
    assert_eq!(parts_again.total, expected);

    let c = db.client().await;
    let kind: String = c
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'cost_events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "p");
    // Every partition got the indexes the queries need.
    let unindexed: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'cost_events'::regclass \
             AND (SELECT count(*) FROM pg_index x WHERE x.indrelid = i.inhrelid) < 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unindexed, 0);

    // Rows over 34 days (two month partitions, within the store's 35 days), and one from two years
    // ago, which only the default partition can take.
    for day in 0..34 {
        let at = now - ChronoDuration::days(day) - ChronoDuration::minutes(3);
        insert_at(
            &c,
            at,
            &format!("f{}", day % 4),
            &format!("0.{:06}", day + 1),
        )
        .await;
    }
    insert_at(&c, now - ChronoDuration::days(730), "ancient", "5").await;
    let home: String = c
        .query_one(
            "SELECT tableoid::regclass::text FROM cost_events WHERE feature_name = 'ancient'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(home, "cost_events_pdefault");

    // Backfill, then a tail poll of rows committed after it: totals equal SQL.
    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("backfill");
    for k in 0..5 {
        insert(&c, "after_backfill", 1_000_000 * (k + 1), 3, 4).await;
    }
    catch_up(&mut source, &tx, &c).await;
    let mut seen = Collector::new(cfg);
    seen.drain(&mut rx);
    let mut truth = ground_truth(&c).await;
    // Two years back is outside what the store keeps (counted as too old).
    truth.remove("ancient");
    assert_eq!(store_by_feature(&seen.store), truth);

    // One backfill day-query: only that day's month partition is read.
    let day_end = now.duration_trunc(ChronoDuration::days(1)).unwrap();
    let day = day_end - ChronoDuration::days(1);
    let plan =
        partitions::explain_backfill_day(&c, &TableName::parse(TABLE).unwrap(), "test", day_end)
            .await
            .expect("explain");
    eprintln!("{plan}");
    let wanted = format!("cost_events_p{}", day.format("%Y%m"));
    assert!(plan.contains(&wanted), "{plan}");
    let partitions_in_plan = plan
        .match_indices("cost_events_p")
        .map(|(i, _)| &plan[i..i + "cost_events_p".len() + 6])
        .filter(|name| *name != wanted)
        .count();
    assert_eq!(
        partitions_in_plan, 0,
        "other partitions are scanned:\n{plan}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_plain_table_is_not_partitioned_in_place() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let err = partitions::init_partitioned(&target(&db.url), TABLE, Utc::now())
        .await
        .expect_err("a plain table cannot be partitioned in place");
    let text = err.to_string();
    assert!(
        text.contains("not partitioned") && text.contains("INSERT ... SELECT"),
        "{text}"
    );
    db.drop_db().await;
}
