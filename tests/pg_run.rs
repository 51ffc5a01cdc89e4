//! The long-running source task: reconnects resume exactly, an interrupted backfill
//! is finished without double counting, and "refresh now" polls at once.

mod common;
mod pg_common;

use std::time::Duration;

use burnrate::model::Connection;
use burnrate::source::{PgSource, SourceControl, run};
use burnrate::store::StoreConfig;
use chrono::{Duration as ChronoDuration, Utc};
use pg_common::*;
use tokio::sync::mpsc;

async fn source_pids(admin: &tokio_postgres::Client, db: &str) -> Vec<i32> {
    let rows = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'burnrate'",
            &[&db],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_resumes_after_a_lost_connection_without_double_counting() {
    let (db, c) = fresh_table().await;
    let admin = db.client().await;
    for i in 0..10 {
        insert(&c, "chat", 1_000_000_007 * (i + 1), 5, 5).await;
    }
    let cfg = StoreConfig::default();
    let (tx, rx) = mpsc::channel(1000);
    let (shared, collector) = spawn_collector(cfg, rx);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&db.url), options(cfg), tx, control));

    wait_for(&shared, 20, "the backfill", |s| s.requests() == 10).await;
    for i in 0..5 {
        insert(&c, "search", 3_000_000 + i, 1, 1).await;
    }
    wait_for(&shared, 20, "the first tail rows", |s| s.requests() == 15).await;

    let before = source_pids(&admin, &db.name).await;
    assert!(kill_source_connections(&admin, &db.name).await >= 1);
    for i in 0..5 {
        insert(&c, "after_loss", 11 + i, 2, 2).await;
    }
    wait_for(&shared, 30, "rows written while disconnected", |s| {
        s.requests() == 20
    })
    .await;
    for i in 0..3 {
        insert(&c, "after_reconnect", 17 + i, 1, 1).await;
    }
    wait_for(&shared, 20, "rows after the reconnect", |s| {
        s.requests() == 23
    })
    .await;
    let after = source_pids(&admin, &db.name).await;
    assert!(
        !after.is_empty() && after.iter().all(|p| !before.contains(p)),
        "a new session: {before:?} -> {after:?}"
    );
    // A few more polls must not add anything.
    tokio::time::sleep(Duration::from_millis(500)).await;

    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
    collector.await.unwrap();
    let truth = ground_truth(&c).await;
    {
        let seen = shared.lock().unwrap();
        // (Whether a Disconnected status shows depends on whether the kill hit a query in
        // flight or an idle session, which is reconnected silently.)
        assert!(matches!(
            seen.statuses.last().map(|s| &s.connection),
            Some(Connection::Live)
        ));
        assert_eq!(
            seen.backfill_done, 1,
            "a completed backfill is not repeated"
        );
        assert_eq!(store_by_feature(&seen.store), truth);
    }
    db.drop_db().await;
}

/// Finishes an interrupted backfill on a new connection, lets the tail catch up, and
/// checks the store against SQL.
async fn finish_exactly(
    mut source: PgSource,
    mut seen: Collector,
    c: &tokio_postgres::Client,
    now: chrono::DateTime<Utc>,
) {
    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("second backfill");
    catch_up(&mut source, &tx, c).await;
    seen.drain(&mut rx);
    assert_eq!(seen.backfill_done, 1);
    assert_eq!(store_by_feature(&seen.store), ground_truth(c).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_is_finished_exactly() {
    let (db, c) = fresh_table().await;
    let admin = db.client().await;
    let now = Utc::now();
    // Rows spread over ten days: one backfill query per day, so there is a middle.
    for day in 0..10 {
        for k in 0..3 {
            let at = now - ChronoDuration::days(day) - ChronoDuration::minutes(5 + k);
            insert_at(
                &c,
                at,
                &format!("day{day}"),
                &format!("0.{:012}", 1000 * day + k + 1),
            )
            .await;
        }
    }
    let cfg = StoreConfig::default();
    let source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let mut seen = Collector::new(cfg);
    let held = HeldBackfill::start(source, now, &mut seen).await;
    // Cut the connection mid-backfill, then write rows into days already sent and
    // days still to come.
    cut_held_backfill(&admin, &db.name).await;
    for day in [0, 5, 9] {
        insert_at(
            &c,
            now - ChronoDuration::days(day) - ChronoDuration::minutes(1),
            "late_write",
            "0.5",
        )
        .await;
    }
    let source = held.interrupted(&mut seen).await;

    // Finish on a new connection: increments for sent days, full reads for the rest.
    finish_exactly(source, seen, &c, now).await;
    db.drop_db().await;
}

/// Names whose byte order differs from most locales' order: the resume key must be
/// compared as the database sorted it.
fn mixed_case_feature(i: usize) -> String {
    let prefix = ["a", "B", "b", "Z", "_", "é", "É", "z"][i % 8];
    format!("{prefix}{:02}", i / 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_cut_inside_a_chunk_resumes_after_the_last_page_sent() {
    let (db, c) = fresh_table().await;
    let admin = db.client().await;
    // A collation that sorts unlike bytes ("a" < "B" < "b"), where the server has it.
    if let Err(e) = c
        .batch_execute(
            "ALTER TABLE cost_events ALTER COLUMN feature_name TYPE text COLLATE \"en-US-x-icu\"",
        )
        .await
    {
        eprintln!("no ICU collation here ({e}); the names sort by the database's default");
    }
    let now = Utc::now();
    // 48 groups in the newest minutes and 48 three hours back: whichever chunk holds
    // them, one chunk has far more groups than a page (7).
    for i in 0..48 {
        let feature = mixed_case_feature(i);
        for back in [ChronoDuration::seconds(3), ChronoDuration::hours(3)] {
            insert_at(&c, now - back, &feature, &format!("0.{:012}", i + 1)).await;
        }
    }
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.backfill_page_groups = 7;
    let source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    let mut seen = Collector::new(cfg);
    let held = HeldBackfill::start(source, now, &mut seen).await;
    cut_held_backfill(&admin, &db.name).await;
    // Late rows for groups on both sides of wherever the cut falls, and new groups.
    for i in (0..48).step_by(5) {
        let feature = mixed_case_feature(i);
        insert_at(&c, now - ChronoDuration::seconds(2), &feature, "0.25").await;
        insert_at(&c, now - ChronoDuration::hours(3), &feature, "0.5").await;
    }
    for feature in ["AA_late", "zz_late", "é_late"] {
        insert_at(&c, now - ChronoDuration::seconds(2), feature, "0.75").await;
    }
    let source = held.interrupted(&mut seen).await;
    let features_before_retry = store_by_feature(&seen.store).len();
    assert!(
        (1..48).contains(&features_before_retry),
        "the cut fell inside the first chunk: {features_before_retry} of 48 features sent"
    );

    finish_exactly(source, seen, &c, now).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_now_polls_without_waiting_for_the_interval() {
    let (db, c) = fresh_table().await;
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.refresh_interval = Duration::from_secs(3600);
    let (tx, rx) = mpsc::channel(1000);
    let (shared, collector) = spawn_collector(cfg, rx);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&db.url), opts, tx, control));
    wait_for(&shared, 20, "live", |s| {
        s.statuses
            .last()
            .is_some_and(|st| st.connection == Connection::Live)
            && s.tail_messages >= 1
    })
    .await;
    insert(&c, "now", 5, 1, 1).await;
    // The watermark is cluster-wide: a write in flight in a test running alongside
    // would hold the row above the poll's horizon, and the next poll is an hour away.
    settle(&c).await;
    handle.refresh_now();
    wait_for(&shared, 5, "the row after refresh_now", |s| {
        s.requests() == 1
    })
    .await;
    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
    collector.await.unwrap();
    db.drop_db().await;
}
