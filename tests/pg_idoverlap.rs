//! Id-overlap mode (a table without the tx column) against a real PostgreSQL.

mod common;
mod pg_common;

use std::time::Duration;

use burnrate::model::TailMode;
use burnrate::source::PgSource;
use burnrate::store::StoreConfig;
use chrono::Utc;
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

async fn table_without_tx() -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE cost_events (id bigserial PRIMARY KEY, \"timestamp\" timestamptz NOT NULL DEFAULT now(), \
         feature_name text, user_id text, model text, cost_usd numeric, input_tokens bigint, output_tokens bigint)",
    )
    .await
    .unwrap();
    (db, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_commits_within_the_settle_time_are_caught_and_rollbacks_given_up() {
    let (db, c) = table_without_tx().await;
    for i in 0..10 {
        insert(&c, "before", 1000 + i, 1, 1).await;
    }
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.id_gap_settle = Duration::from_secs(2);
    let mut source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::IdOverlap));
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");

    let mut a = db.client().await;
    let ta = a.transaction().await.unwrap();
    insert(&ta, "a", 5_000_000, 10, 1).await; // takes id 11
    insert(&c, "b", 7_000_000, 20, 2).await; // id 12, committed first
    let stats = source.poll(&tx).await.expect("poll");
    assert_eq!(stats.rows, 1, "b is read; 11 is awaited");
    ta.commit().await.unwrap();
    let stats = source.poll(&tx).await.expect("poll");
    assert_eq!(stats.rows, 1, "a is caught within the settle time");
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "nothing twice"
    );

    // A rolled-back id is awaited, then given up after the settle time.
    let mut r = db.client().await;
    let tr = r.transaction().await.unwrap();
    insert(&tr, "never", 9, 9, 9).await; // id 13
    tr.rollback().await.unwrap();
    insert(&c, "d", 3, 3, 3).await; // id 14
    let stats = source.poll(&tx).await.expect("poll");
    assert_eq!((stats.rows, stats.given_up_ids), (1, 0));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let stats = source.poll(&tx).await.expect("poll");
    assert_eq!(
        (stats.rows, stats.given_up_ids, stats.watermark_lag_secs),
        (0, 1, Some(0))
    );

    seen.drain(&mut rx);
    assert_eq!(store_by_feature(&seen.store), ground_truth(&c).await);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_across_the_backfill_is_awaited() {
    let (db, c) = table_without_tx().await;
    insert(&c, "before", 1, 1, 1).await;
    let mut a = db.client().await;
    let ta = a.transaction().await.unwrap();
    insert(&ta, "open", 2, 2, 2).await; // id 2, invisible to the backfill
    insert(&c, "after", 3, 3, 3).await; // id 3, the backfill's max id

    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 0);
    ta.commit().await.unwrap();
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        1,
        "the gap seen at backfill time is filled"
    );
    seen.drain(&mut rx);
    assert_eq!(store_by_feature(&seen.store), ground_truth(&c).await);
    db.drop_db().await;
}
