//! Wake-up on commit (`db init --notify` + `database.notify_channel`): with a
//! 30-second refresh interval, a committed row reaches the aggregates in well under
//! a second; without the channel it waits for the interval. A COPY is one wake-up,
//! and the totals stay exact.

mod common;
mod pg_common;

use std::time::{Duration, Instant};

use burnrate::source::{SourceControl, notify, run, schema};
use burnrate::store::StoreConfig;
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

const CHANNEL: &str = "burnrate events \"test\"";

async fn notifying_table() -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let report = notify::enable_notify(&target(&db.url), TABLE, Some(CHANNEL))
        .await
        .expect("db init --notify");
    assert_eq!(report.channel, CHANNEL);
    // Idempotent, like the rest of db init.
    notify::enable_notify(&target(&db.url), TABLE, Some(CHANNEL))
        .await
        .expect("db init --notify, again");
    let client = db.client().await;
    (db, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_tail_long_before_the_interval() {
    let (db, c) = notifying_table().await;
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.refresh_interval = Duration::from_secs(30);
    opts.notify_channel = Some(CHANNEL.into());
    let (tx, rx) = mpsc::channel(1024);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&db.url), opts, tx, control));
    let (seen, collector) = spawn_collector(cfg, rx);
    wait_for(&seen, 30, "the backfill", |s| s.backfill_done == 1).await;

    // One row at a time: each must arrive long before the 30 s interval would poll.
    let mut latencies = Vec::new();
    for i in 1..=20u64 {
        let started = Instant::now();
        insert(&c, "notified", 1_000_000_000_000, 10, 1).await;
        wait_for(&seen, 10, "the notified row", |s| s.requests() == i).await;
        latencies.push(started.elapsed());
        // Sometimes right after the last poll (the 100 ms gap applies), sometimes not.
        tokio::time::sleep(Duration::from_millis(37 * (i % 4))).await;
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    eprintln!("commit to aggregate over 20 rows: p50 {p50:?}, max {max:?}");
    assert!(
        max < Duration::from_secs(5),
        "a notified row took {max:?} with a 30 s interval"
    );

    // A multi-row COPY-sized insert statement in one transaction: one wake-up, every
    // row counted once.
    c.batch_execute(
        "INSERT INTO cost_events (feature_name, user_id, model, cost_usd, input_tokens, output_tokens) \
         SELECT 'bulk', 'u' || g, 'gpt-x', 0.000001, 1, 1 FROM generate_series(1, 5000) g",
    )
    .await
    .unwrap();
    wait_for(&seen, 10, "the bulk insert", |s| s.requests() == 5020).await;
    let truth = ground_truth(&c).await;
    assert_eq!(store_by_feature(&seen.lock().unwrap().store), truth);

    handle.shutdown();
    task.await.unwrap().unwrap();
    collector.abort();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_channel_a_row_waits_for_the_interval() {
    let (db, c) = notifying_table().await;
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.refresh_interval = Duration::from_secs(30);
    let (tx, rx) = mpsc::channel(1024);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&db.url), opts, tx, control));
    let (seen, collector) = spawn_collector(cfg, rx);
    wait_for(&seen, 30, "the backfill", |s| s.backfill_done == 1).await;

    insert(&c, "not_notified", 1_000_000_000_000, 10, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        seen.lock().unwrap().requests(),
        0,
        "nothing listens, so nothing polls before the interval"
    );
    // "Refresh now" still works, and reads it.
    handle.refresh_now();
    wait_for(&seen, 10, "the row after refresh now", |s| {
        s.requests() == 1
    })
    .await;

    handle.shutdown();
    task.await.unwrap().unwrap();
    collector.abort();
    db.drop_db().await;
}
