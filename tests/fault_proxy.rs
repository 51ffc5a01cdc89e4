//! The source through database faults, with a TCP proxy between it and PostgreSQL
//! (tests/common/proxy.rs): an outage, a restart, a connection cut in the middle of
//! the backfill, a hung network, a hung query and a long transaction. After every
//! recovery the totals must equal SQL exactly: nothing missed, nothing twice.

mod common;
mod pg_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burnrate::model::{Connection, SourceMsg};
use burnrate::source::{SourceControl, run};
use burnrate::store::StoreConfig;
use common::proxy::FaultProxy;
use pg_common::*;
use tokio::sync::mpsc;

fn is_live(c: &Collector) -> bool {
    c.statuses
        .last()
        .is_some_and(|s| s.connection == Connection::Live)
}

fn last_error(c: &Collector) -> Option<String> {
    c.statuses.iter().rev().find_map(|s| match &s.connection {
        Connection::Disconnected { error, .. } => Some(error.clone()),
        _ => None,
    })
}

fn disconnected_count(c: &Collector) -> usize {
    c.statuses
        .iter()
        .filter(|s| matches!(s.connection, Connection::Disconnected { .. }))
        .count()
}

/// Waits for the source to have read every committed row, then checks the store
/// against SQL, feature by feature, to the picodollar.
async fn assert_exact(shared: &Arc<Mutex<Collector>>, c: &tokio_postgres::Client, what: &str) {
    settle(c).await;
    let truth = ground_truth(c).await;
    let rows: u64 = truth.values().map(|a| a.requests).sum();
    wait_for(shared, 60, what, |s| s.requests() >= rows).await;
    // A few more polls must add nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = shared.lock().unwrap();
    assert_eq!(store_by_feature(&seen.store), truth, "{what}");
}

struct Running {
    shared: Arc<Mutex<Collector>>,
    handle: burnrate::source::SourceHandle,
    task: tokio::task::JoinHandle<Result<(), burnrate::source::SourceError>>,
    collector: tokio::task::JoinHandle<()>,
}

fn start(url: &str, opts: burnrate::source::SourceOptions) -> Running {
    let cfg = opts.store;
    let (tx, rx) = mpsc::channel(10_000);
    let (shared, collector) = spawn_collector(cfg, rx);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(url), opts, tx, control));
    Running {
        shared,
        handle,
        task,
        collector,
    }
}

impl Running {
    async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the source stops promptly")
            .unwrap()
            .expect("clean shutdown");
        self.collector.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_reported_within_a_refresh_retried_with_backoff_and_caught_up_exactly() {
    let (db, c) = fresh_table().await;
    let proxy = FaultProxy::start();
    for i in 0..10 {
        insert(&c, "before", 1_000_000_007 * (i + 1), 5, 5).await;
    }
    let opts = options(StoreConfig::default());
    let refresh = opts.refresh_interval;
    let run = start(&proxy.url(&db.url), opts);
    wait_for(&run.shared, 20, "the backfill", |s| {
        s.requests() == 10 && is_live(s)
    })
    .await;

    // The server goes away: live sessions cut, new ones refused.
    let down_at = Instant::now();
    proxy.outage();
    wait_for(&run.shared, 5, "Disconnected", |s| {
        last_error(s).is_some() && !is_live(s)
    })
    .await;
    let noticed = down_at.elapsed();
    eprintln!("measured: outage reported after {noticed:?}");
    assert!(
        noticed <= refresh + Duration::from_secs(1),
        "the outage showed after {noticed:?} (refresh {refresh:?})"
    );
    let error = last_error(&run.shared.lock().unwrap()).unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{}", proxy.port)) && !error.contains("password"),
        "the error names the server: {error}"
    );

    // Rows written while the monitor cannot see the database.
    for i in 0..7 {
        insert(&c, "during", 3_000_000 + i, 1, 1).await;
    }
    // Capped exponential backoff: about 0.5 + 1 + 2 + 4 s of waits in 8 s, so a
    // handful of attempts, not one per 100 ms refresh.
    let attempts_before = proxy.accepted();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let attempts = proxy.accepted() - attempts_before;
    eprintln!("measured: {attempts} reconnect attempts in 8 s of outage");
    assert!(
        (2..=7).contains(&attempts),
        "{attempts} reconnect attempts in 8 s of outage"
    );
    assert!(!is_live(&run.shared.lock().unwrap()));

    proxy.pass();
    // The next attempt is at most 8 s away (the 5th wait is drawn from 4-8 s).
    wait_for(&run.shared, 20, "live again", is_live).await;
    for i in 0..3 {
        insert(&c, "after", 17 + i, 1, 1).await;
    }
    assert_exact(&run.shared, &c, "catch-up after the outage").await;
    {
        let seen = run.shared.lock().unwrap();
        assert_eq!(seen.backfill_done, 1, "the backfill is not repeated");
        assert_eq!(seen.requests(), 20);
    }
    run.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_nothing() {
    let (db, c) = fresh_table().await;
    let admin = db.client().await;
    let proxy = FaultProxy::start();
    for i in 0..5 {
        insert(&c, "before", 1_000 * (i + 1), 5, 5).await;
    }
    let run = start(&proxy.url(&db.url), options(StoreConfig::default()));
    wait_for(&run.shared, 20, "live", |s| s.requests() == 5 && is_live(s)).await;

    // A restart as the client sees it: every session ends (the backends are
    // terminated, as a shutdown does), and the server refuses for a while.
    proxy.refuse();
    let killed = kill_source_connections(&admin, &db.name).await;
    assert!(killed >= 1, "the source had a session");
    proxy.cut();
    // Writers on the other side of the restart keep going (they reconnect first).
    let writer = db.client().await;
    for i in 0..9 {
        insert(&writer, "across_restart", 77 + i, 2, 3).await;
    }
    wait_for(&run.shared, 10, "Disconnected", |s| {
        disconnected_count(s) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.pass();
    wait_for(&run.shared, 20, "live again", is_live).await;
    insert(&c, "after", 5, 1, 1).await;
    assert_exact(&run.shared, &c, "catch-up after the restart").await;
    assert_eq!(run.shared.lock().unwrap().backfill_done, 1);
    run.stop().await;
    db.drop_db().await;
}

/// Enough history that the backfill (one query per day) takes a while.
async fn big_history(c: &tokio_postgres::Client, rows_per_day: i64) {
    c.batch_execute(&format!(
        "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, tenant_id, region, \
                                  cost_usd, input_tokens, output_tokens) \
         SELECT now() - (g * interval '1 second' * (34 * 86400 / {total})), \
                'f' || (g % 13), 'u' || (g % 997), 'm' || (g % 7), 't' || (g % 5), 'r' || (g % 3), \
                ((g % 1000) * 0.000123456789)::numeric, g % 500, g % 300 \
         FROM generate_series(1, {total}) g",
        total = rows_per_day * 34
    ))
    .await
    .expect("history");
    c.batch_execute("ANALYZE cost_events").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_in_the_middle_of_the_backfill_is_finished_exactly() {
    let (db, c) = fresh_table().await;
    big_history(&c, 6_000).await;
    let proxy = FaultProxy::start();
    let cfg = StoreConfig::default();
    let (tx, mut rx) = mpsc::channel(100_000);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&proxy.url(&db.url)), options(cfg), tx, control));
    let mut seen = Collector::new(cfg);

    // Stop the wire as soon as the backfill is under way: with the proxy stalled it
    // cannot finish, so the cut below lands in its middle, every time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cut_at_step = loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("backfill progress")
            .expect("message");
        let step = match &msg {
            SourceMsg::Status(s) => match s.connection {
                Connection::Backfilling {
                    done_steps,
                    total_steps,
                    ..
                } if done_steps >= 2 => Some((done_steps, total_steps)),
                _ => None,
            },
            _ => None,
        };
        seen.apply(msg);
        if let Some(step) = step {
            proxy.stall();
            break step;
        }
        assert!(Instant::now() < deadline);
    };
    assert!(cut_at_step.0 < cut_at_step.1, "{cut_at_step:?}");
    eprintln!(
        "measured: backfill stalled and cut after step {} of {}",
        cut_at_step.0, cut_at_step.1
    );
    // Rows land in days already sent, days still to come, and now.
    let now = chrono::Utc::now();
    for day in [0i64, 1, 2, 15, 30] {
        insert_at(
            &c,
            now - chrono::Duration::days(day) - chrono::Duration::minutes(3),
            "late_write",
            "0.250000000001",
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.drain(&mut rx);
    assert_eq!(seen.backfill_done, 0, "the backfill was stopped midway");
    proxy.cut();
    proxy.pass();

    let shared = Arc::new(Mutex::new(seen));
    let s2 = shared.clone();
    let collector = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            s2.lock().unwrap().apply(m);
        }
    });
    wait_for(&shared, 60, "the backfill to finish", |s| {
        s.backfill_done == 1 && is_live(s)
    })
    .await;
    insert(&c, "after", 123, 1, 1).await;
    assert_exact(&shared, &c, "backfill finished after a cut").await;
    {
        let seen = shared.lock().unwrap();
        assert!(
            disconnected_count(&seen) >= 1,
            "the cut showed as Disconnected"
        );
        assert_eq!(seen.backfill_done, 1);
        // Issue 17: where the history is in from, newest first; the retry starts
        // from the chunks the first attempt sent whole, never from nothing.
        let progress: Vec<(u64, Option<chrono::DateTime<chrono::Utc>>)> = seen
            .statuses
            .iter()
            .filter_map(|s| match s.connection {
                Connection::Backfilling {
                    done_steps,
                    loaded_from,
                    ..
                } => Some((done_steps, loaded_from)),
                _ => None,
            })
            .collect();
        // Split into attempts at their first status (0 steps done).
        let mut attempts: Vec<Vec<(u64, Option<chrono::DateTime<chrono::Utc>>)>> = Vec::new();
        for p in &progress {
            if p.0 == 0 || attempts.is_empty() {
                attempts.push(Vec::new());
            }
            attempts.last_mut().unwrap().push(*p);
        }
        assert!(attempts.len() >= 2, "{progress:?}");
        assert_eq!(
            attempts[0][0],
            (0, None),
            "nothing in before the first step"
        );
        for (k, attempt) in attempts.iter().enumerate() {
            let from: Vec<_> = attempt[1..].iter().map(|(_, f)| f.expect("in")).collect();
            assert!(
                from.windows(2).all(|w| w[1] < w[0]),
                "newest first: {progress:?}"
            );
            if k > 0 {
                // A retry starts from what the attempts before sent whole.
                let before = attempts[k - 1][1..].iter().filter_map(|(_, f)| *f).min();
                assert!(
                    attempt[0].1.is_some() && attempt[0].1 >= before,
                    "{progress:?}"
                );
            }
        }
        let oldest = progress.last().and_then(|(_, f)| *f).unwrap();
        assert!(
            oldest <= chrono::Utc::now() - chrono::Duration::days(34),
            "the last step reaches the history's start: {oldest}"
        );
    }
    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
    collector.await.unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_network_hits_the_client_deadline_and_recovers_exactly() {
    let (db, c) = fresh_table().await;
    let proxy = FaultProxy::start();
    insert(&c, "before", 10, 1, 1).await;
    let mut opts = options(StoreConfig::default());
    // The server cannot cancel what it never receives: the client-side deadline
    // (statement_timeout + 10 s) has to notice.
    opts.statement_timeout = Duration::from_secs(1);
    let run = start(&proxy.url(&db.url), opts);
    wait_for(&run.shared, 20, "live", |s| s.requests() == 1 && is_live(s)).await;

    let stalled_at = Instant::now();
    proxy.stall();
    insert(&c, "while_hung", 20, 1, 1).await;
    wait_for(&run.shared, 20, "the deadline", |s| last_error(s).is_some()).await;
    let after = stalled_at.elapsed();
    eprintln!("measured: hung network noticed after {after:?}");
    let error = last_error(&run.shared.lock().unwrap()).unwrap();
    assert!(
        error.contains("no answer") && error.contains(&format!("127.0.0.1:{}", proxy.port)),
        "{error}"
    );
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(15),
        "the client deadline fired after {after:?}"
    );
    proxy.cut();
    proxy.pass();
    wait_for(&run.shared, 30, "live again", is_live).await;
    assert_exact(&run.shared, &c, "catch-up after a hung network").await;
    run.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_query_hits_statement_timeout_and_recovers_exactly() {
    let (db, c) = fresh_table().await;
    insert(&c, "before", 10, 1, 1).await;
    let mut opts = options(StoreConfig::default());
    opts.statement_timeout = Duration::from_millis(800);
    let run = start(&db.url, opts);
    wait_for(&run.shared, 20, "live", |s| s.requests() == 1 && is_live(s)).await;

    // A lock the tail's query must wait for: it hangs on the server until
    // statement_timeout cancels it.
    let mut locker = db.client().await;
    let txn = locker.transaction().await.unwrap();
    txn.batch_execute("LOCK TABLE cost_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    wait_for(&run.shared, 10, "the statement timeout", |s| {
        last_error(s).is_some()
    })
    .await;
    let error = last_error(&run.shared.lock().unwrap()).unwrap();
    assert!(
        error.contains("statement_timeout") && error.contains("cost_events"),
        "{error}"
    );
    txn.commit().await.unwrap();
    insert(&c, "after_lock", 30, 1, 1).await;
    wait_for(&run.shared, 20, "live again", is_live).await;
    assert_exact(&run.shared, &c, "catch-up after a hung query").await;
    run.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transaction_holds_back_only_its_own_rows_and_is_named() {
    let (db, c) = fresh_table().await;
    insert(&c, "before", 10, 1, 1).await;
    let run = start(&db.url, options(StoreConfig::default()));
    wait_for(&run.shared, 20, "live", |s| s.requests() == 1 && is_live(s)).await;

    // A writer that inserted rows and does not commit.
    let mut slow = db.client().await;
    let txn = slow.transaction().await.unwrap();
    for i in 0..4 {
        insert(&txn, "slow_txn", 1_000 + i, 1, 1).await;
    }
    // Rows committed after it are read at once: the tail waits for no one.
    for i in 0..6 {
        insert(&c, "behind_it", 2_000 + i, 1, 1).await;
    }
    wait_for(&run.shared, 10, "the rows behind it", |s| s.requests() == 7).await;
    // Held open for seconds, it is named in the status.
    wait_for(&run.shared, 20, "the open transaction named", |s| {
        s.statuses
            .last()
            .and_then(|st| st.note.as_deref())
            .is_some_and(|n| n.starts_with("open tx "))
    })
    .await;
    {
        let seen = run.shared.lock().unwrap();
        assert!(is_live(&seen), "an open transaction is not an outage");
        assert_eq!(seen.requests(), 7, "its own rows wait for its commit");
    }
    txn.commit().await.unwrap();
    assert_exact(&run.shared, &c, "its rows once it commits").await;
    run.stop().await;
    db.drop_db().await;
}
