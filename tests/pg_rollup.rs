//! Rollup mode: the hourly rollup equals SQL over the raw rows, a transaction open
//! across a roll is rolled once when it commits, rejected rows are rolled by
//! reason, and a backfill that reads the rollup gives exactly what a raw backfill
//! gives.

mod common;
mod pg_common;

use burnrate::source::columns::MapSpec;
use burnrate::source::rollup;
use burnrate::source::{PgSource, schema};
use burnrate::store::StoreConfig;
use chrono::{Duration as ChronoDuration, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

/// Rows at `hours_ago`, for `tenant`, with a cost given as SQL text.
async fn insert_row(
    c: &impl tokio_postgres::GenericClient,
    hours_ago: i64,
    feature: &str,
    tenant: &str,
    cost: &str,
) {
    let at = Utc::now() - ChronoDuration::hours(hours_ago) - ChronoDuration::minutes(7);
    c.execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, tenant_id, cost_usd, \
         input_tokens, output_tokens) VALUES ($1, $2, 'u-' || $2, 'gpt-x', $3, $4::text::numeric, 10, 20)",
        &[&at, &feature, &tenant, &cost],
    )
    .await
    .expect("insert");
}

/// The rollup as text rows, and the same aggregation from the raw table.
async fn rollup_vs_sql(c: &tokio_postgres::Client) -> (Vec<String>, Vec<String>) {
    let rolled = c
        .query(
            "SELECT concat_ws('|', hour, feature_name, user_id, model, tenant_id, region, \
               cost_usd, requests, input_tokens, output_tokens) FROM cost_events_rollup ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let truth = c
        .query(
            "SELECT concat_ws('|', date_trunc('hour', \"timestamp\"), coalesce(feature_name, ''), \
               coalesce(user_id, ''), coalesce(model, ''), coalesce(tenant_id, ''), coalesce(region, ''), \
               sum(cost_usd), count(*), sum(input_tokens), sum(output_tokens)) \
             FROM cost_events WHERE cost_usd IS NOT NULL AND cost_usd < 'Infinity' AND cost_usd > '-Infinity' \
             GROUP BY date_trunc('hour', \"timestamp\"), feature_name, user_id, model, tenant_id, region \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let text = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect();
    (text(rolled), text(truth))
}

async fn rejected_in_rollup(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(rows), 0)::int8 FROM cost_events_rollup_rejects",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_equals_sql_and_rolls_a_late_commit_once() {
    let db = TestDb::create().await;
    let url_target = target(&db.url);
    schema::init(&url_target, TABLE).await.expect("db init");
    let c = db.client().await;
    for h in 0..30 {
        insert_row(&c, h, &format!("f{}", h % 3), "acme", "0.000123456789").await;
        insert_row(
            &c,
            h,
            "shared",
            if h % 2 == 0 { "acme" } else { "globex" },
            "1.5",
        )
        .await;
    }
    // Rejected: no cost, and NaN.
    insert_row(&c, 2, "broken", "acme", "NaN").await;
    c.execute(
        "INSERT INTO cost_events (feature_name, tenant_id, cost_usd) VALUES ('nocost', 'acme', NULL)",
        &[],
    )
    .await
    .unwrap();

    // The watermark is the cluster's: let transactions of other tests end first.
    settle(&c).await;
    let report = rollup::init_rollup(&url_target, TABLE, &MapSpec::default(), 0, false)
        .await
        .expect("db init --rollup");
    assert!(report.created);
    assert_eq!(report.first_roll.rows, 62);
    let (rolled, truth) = rollup_vs_sql(&c).await;
    assert_eq!(rolled, truth);
    assert_eq!(rejected_in_rollup(&c).await, 2);

    // A transaction open across a roll: not rolled while open, rolled once after.
    let mut held = db.client().await;
    let open = held.transaction().await.unwrap();
    insert_row(&open, 1, "late", "acme", "7").await;
    insert_row(&c, 0, "f0", "acme", "0.25").await;
    let step = rollup::roll_once(&url_target, TABLE, &MapSpec::default())
        .await
        .expect("roll");
    assert_eq!(
        step.rows, 0,
        "the open transaction holds the watermark back"
    );
    open.commit().await.unwrap();
    settle(&c).await;
    let mut total = 0;
    for _ in 0..3 {
        total += rollup::roll_once(&url_target, TABLE, &MapSpec::default())
            .await
            .expect("roll")
            .rows;
    }
    assert_eq!(total, 2, "both rows, once");
    let (rolled, truth) = rollup_vs_sql(&c).await;
    assert_eq!(rolled, truth);

    // A second `db init --rollup` keeps what is there.
    settle(&c).await;
    let again = rollup::init_rollup(&url_target, TABLE, &MapSpec::default(), 0, false)
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.first_roll.rows, 0);
    let (rolled, truth) = rollup_vs_sql(&c).await;
    assert_eq!(rolled, truth);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_the_rollup_equals_a_raw_backfill() {
    let db = TestDb::create().await;
    let url_target = target(&db.url);
    schema::init(&url_target, TABLE).await.expect("db init");
    let c = db.client().await;
    // Ten days of rows, rolled; then rows the rollup has not seen yet: new ones, a
    // late one dated days ago, and rejected ones.
    for h in (0..240).step_by(5) {
        insert_row(&c, h, &format!("f{}", h % 4), "acme", "0.010000000001").await;
    }
    insert_row(&c, 100, "bad", "acme", "Infinity").await;
    rollup::init_rollup(&url_target, TABLE, &MapSpec::default(), 0, false)
        .await
        .expect("db init --rollup");
    insert_row(&c, 0, "f1", "acme", "2").await;
    insert_row(&c, 170, "late", "acme", "3").await;
    insert_row(&c, 50, "bad", "acme", "NaN").await;

    let cfg = StoreConfig::default();
    let backfill = |rollup_on: bool| {
        let db_url = db.url.clone();
        async move {
            let mut opts = options(cfg);
            opts.rollup = rollup_on;
            let mut source = PgSource::connect(target(&db_url), opts)
                .await
                .expect("connect");
            let (tx, mut rx) = mpsc::channel(10_000);
            source.backfill(&tx, Utc::now()).await.expect("backfill");
            // Rows above the backfill's horizon (a transaction open elsewhere on the
            // server, as the other tests here hold, keeps it low) are the first
            // poll's: the dashboard's first picture is the backfill and one poll.
            source.poll(&tx).await.expect("poll");
            let mut seen = Collector::new(cfg);
            seen.drain(&mut rx);
            (source.read_rollup(), seen)
        }
    };
    let (used_raw, raw) = backfill(false).await;
    let (used_rollup, rolled) = backfill(true).await;
    assert!(!used_raw);
    assert!(used_rollup, "the rollup was read");
    assert_eq!(
        store_by_feature(&rolled.store),
        store_by_feature(&raw.store)
    );
    assert_eq!(store_by_feature(&rolled.store), ground_truth(&c).await);
    assert_eq!(rolled.store.intake().rejected, raw.store.intake().rejected);
    assert_eq!(rolled.store.intake().rejected_total(), 2);
    db.drop_db().await;
}

/// Two dashboards in rollup mode: exactly one rolls (the session lock), and what it
/// rolls while tailing keeps the rollup equal to SQL. The CLI's `db init --rollup`
/// and `db rollup` drive the same code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_tailing_instances_keeps_the_rollup_up_to_date() {
    use burnrate::source::{SourceControl, run};
    use std::time::Duration;

    let db = TestDb::create().await;
    let c = db.client().await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
            .args(["--database-url", &db.url])
            .args(args)
            .env_remove("BURNRATE_CONFIG")
            .env_remove("DATABASE_URL")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "burnrate {args:?}: {text}");
        text
    };
    cli(&["db", "init"]);
    for h in 0..6 {
        insert_row(&c, h, "before", "acme", "0.5").await;
    }
    settle(&c).await;
    let text = cli(&["db", "init", "--rollup"]);
    assert!(text.contains("6 rows rolled"), "{text}");
    insert_row(&c, 0, "cron", "acme", "0.25").await;
    settle(&c).await;
    let text = cli(&["db", "rollup"]);
    assert!(text.contains("rolled 1 rows"), "{text}");

    let cfg = StoreConfig::default();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut opts = options(cfg);
        opts.rollup = true;
        opts.rollup_every = Duration::from_millis(100);
        let (tx, rx) = mpsc::channel(1024);
        let (control, handle) = SourceControl::new();
        tasks.push(tokio::spawn(run(target(&db.url), opts, tx, control)));
        let (seen, collector) = spawn_collector(cfg, rx);
        wait_for(&seen, 30, "the backfill", |s| s.backfill_done == 1).await;
        handles.push((handle, collector));
    }
    for k in 0..20 {
        insert_row(
            &c,
            k % 3,
            "live",
            if k % 2 == 0 { "acme" } else { "globex" },
            "0.1",
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (rolled, truth) = rollup_vs_sql(&c).await;
        if rolled == truth {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollup did not catch up:\n{rolled:#?}\n{truth:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holders: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holders, 1, "exactly one instance rolls");
    for (handle, collector) in handles {
        handle.shutdown();
        collector.abort();
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    db.drop_db().await;
}
