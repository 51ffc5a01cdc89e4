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

/// `snapshot --json --follow` as `watch`: a commit wakes it long before its 30 s
/// interval, and in rollup mode it keeps the rollup up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_follow_is_woken_by_notify_and_rolls_the_rollup() {
    use std::io::BufRead;

    let (db, c) = notifying_table().await;
    insert(&c, "before", 1_000_000_000_000, 1, 1).await;
    common::burnrate_ok(&db.url, &["db", "init", "--rollup"]);
    assert_eq!(rolled(&c, "before").await, 1);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nrefresh_interval = \"30s\"\nnotify_channel = {CHANNEL:?}\n\
             rollup = true\nrollup_every = \"1s\"\n"
        ),
    )
    .unwrap();
    let mut child = common::Reaped(
        std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
            .args(["snapshot", "--json", "--follow"])
            .args(["--database-url", &db.url, "--config"])
            .arg(&config)
            .env("XDG_STATE_HOME", dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("BURNRATE_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str(&line) else {
                break;
            };
            if lines_tx.send(v).is_err() {
                break;
            }
        }
    });
    let requests = |v: &serde_json::Value| v["totals"]["requests"].as_i64().unwrap_or(-1);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("first line");
    assert_eq!(requests(&first), 1, "{first}");

    // Each commit: a line counting it, long before the 30 s interval.
    for i in 1..=3i64 {
        let started = Instant::now();
        insert(&c, "live", 1_000_000_000_000, 1, 1).await;
        loop {
            let v = lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no line for commit {i} after {:?}", started.elapsed()));
            if requests(&v) == 1 + i {
                break;
            }
        }
        let took = started.elapsed();
        eprintln!("snapshot --follow: commit {i} to its line in {took:?}");
        assert!(took < Duration::from_secs(5), "commit {i} took {took:?}");
    }
    // The woken polls rolled what committed (rollup_every is 1 s; only a poll rolls,
    // so one more commit after it comes due).
    let deadline = Instant::now() + Duration::from_secs(20);
    while rolled(&c, "live").await < 3 {
        assert!(Instant::now() < deadline, "snapshot --follow never rolled");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        insert(&c, "nudge", 1, 1, 1).await;
    }
    assert_eq!(rolled(&c, "live").await, 3, "each row rolled once");
    drop(child);
    db.drop_db().await;
}

/// Requests of `feature` in the rollup.
async fn rolled(c: &tokio_postgres::Client, feature: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(requests), 0)::int8 FROM cost_events_rollup WHERE feature_name = $1",
        &[&feature],
    )
    .await
    .unwrap()
    .get(0)
}
