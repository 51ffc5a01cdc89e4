//! Keyset mode (no tx, no id column): a backfill interrupted by a lost connection is
//! finished on a new one without losing rows written between the two snapshots or
//! counting any twice, and the tail takes over from there exactly.

mod common;
mod pg_common;
mod presets_common;

use std::time::Duration;

use burnrate::model::TailMode;
use burnrate::source::PgSource;
use burnrate::source::columns::{MapSpec, Preset, SourceConfig};
use burnrate::store::StoreConfig;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use common::TestDb;
use pg_common::*;
use presets_common::*;
use tokio::sync::mpsc;

/// A fresh database with LiteLLM's spend table: the test's client and an admin one.
async fn litellm_db() -> (TestDb, tokio_postgres::Client, tokio_postgres::Client) {
    let db = TestDb::create().await;
    let c = db.client().await;
    let admin = db.client().await;
    c.batch_execute(LITELLM_DDL).await.unwrap();
    (db, c, admin)
}

/// The test's "now": the clock, or 15 minutes past the hour when the clock is earlier,
/// so that today's rows (up to 14 minutes old) all fall in the backfill's newest chunk
/// (the current hour) at any time of day. Up to 15 minutes in the future, well inside
/// the tolerance for future timestamps.
fn past_the_quarter_hour() -> DateTime<Utc> {
    let now = Utc::now();
    let quarter =
        now.duration_trunc(ChronoDuration::hours(1)).unwrap() + ChronoDuration::minutes(15);
    now.max(quarter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_keyset_backfill_is_finished_exactly() {
    let (db, c, admin) = litellm_db().await;
    let now = past_the_quarter_hour();
    let shift = now - Utc::now();
    // Rows over ten days (one backfill query per day); the newest is five minutes old,
    // so the first overlap window is [now - 7 min, now - 5 min].
    let mut next_id = 0u32;
    for day in 0..10 {
        for k in 0..4 {
            let at = now - ChronoDuration::days(day) - ChronoDuration::minutes(5 + 3 * k);
            litellm_row(&c, next_id, at).await;
            next_id += 1;
        }
    }
    let cfg = StoreConfig::default();
    let map = MapSpec::build(&SourceConfig::default(), Some(Preset::Litellm), "unused").unwrap();
    let overlap = map.overlap;
    assert_eq!(
        overlap,
        Duration::from_secs(120),
        "the test's window assumes it"
    );
    let source = PgSource::connect(target(&db.url), options(cfg).with_map(map))
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::KeysetOverlap));

    let mut seen = Collector::new(cfg);
    let held = HeldBackfill::start(source, now, &mut seen).await;
    // Today's chunk is sent. Cut the connection, then write rows the first snapshot
    // did not see: into today inside the first overlap window, newer than its newest
    // row, and into days still to come.
    cut_held_backfill(&admin, &db.name).await;
    let late = [
        now - ChronoDuration::minutes(6),
        now - ChronoDuration::seconds(330),
        now - ChronoDuration::minutes(1),
        now - ChronoDuration::days(5) - ChronoDuration::minutes(1),
        now - ChronoDuration::days(9) - ChronoDuration::minutes(1),
    ];
    for at in late {
        litellm_row(&c, next_id, at).await;
        next_id += 1;
    }
    let mut source = held.interrupted(&mut seen).await;

    // Finish on a new connection, then let the tail take over.
    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("second backfill");
    assert!(source.backfill_done());
    let tail_rows = source.poll(&tx).await.expect("poll").rows;
    assert_eq!(
        tail_rows, 3,
        "the tail counts exactly the late rows of today's chunk, sent before they came"
    );
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "nothing twice"
    );
    // A row arriving now, inside the window, is still counted once.
    litellm_row(
        &c,
        next_id,
        Utc::now() + shift - ChronoDuration::seconds(20),
    )
    .await;
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 1);
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 0);
    seen.drain(&mut rx);
    assert_eq!(seen.backfill_done, 1);
    let truth = litellm_by_feature(&c).await;
    let total: u64 = truth.values().map(|a| a.requests).sum();
    assert_eq!(total, u64::from(next_id) + 1);
    assert_eq!(store_by_feature(&seen.store), truth);
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyset_backfill_cut_inside_a_chunk_counts_each_late_row_once() {
    let (db, c, admin) = litellm_db().await;
    let now = Utc::now();
    // 40 rows of many groups (names vary with the row number), all inside the first
    // overlap window [newest - 2 min, newest]: far more groups than a page (3).
    let mut next_id = 0u32;
    for k in 0..40 {
        let at = now - ChronoDuration::minutes(5) - ChronoDuration::seconds(k);
        litellm_row(&c, next_id, at).await;
        next_id += 1;
    }
    let cfg = StoreConfig::default();
    let map = MapSpec::build(&SourceConfig::default(), Some(Preset::Litellm), "unused").unwrap();
    let mut opts = options(cfg).with_map(map);
    opts.backfill_page_groups = 3;
    let source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::KeysetOverlap));
    let mut seen = Collector::new(cfg);
    let held = HeldBackfill::start(source, now, &mut seen).await;
    cut_held_backfill(&admin, &db.name).await;
    // Late rows in the window, in groups on both sides of wherever the cut fell.
    for k in 0..16 {
        let at = now - ChronoDuration::minutes(5) - ChronoDuration::seconds(k * 2 + 1);
        litellm_row(&c, next_id, at).await;
        next_id += 1;
    }
    let mut source = held.interrupted(&mut seen).await;
    let sent_before: u64 = store_by_feature(&seen.store)
        .values()
        .map(|a| a.requests)
        .sum();
    assert!(
        (1..40).contains(&sent_before),
        "the cut fell inside the chunk: {sent_before} of 40 rows sent"
    );

    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("second backfill");
    assert!(source.backfill_done());
    source.poll(&tx).await.expect("poll");
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "nothing twice"
    );
    seen.drain(&mut rx);
    let truth = litellm_by_feature(&c).await;
    let total: u64 = truth.values().map(|a| a.requests).sum();
    assert_eq!(total, u64::from(next_id));
    assert_eq!(store_by_feature(&seen.store), truth);
    drop(c);
    db.drop_db().await;
}
