//! Schema trouble, at start and under a running source: a missing table, a missing
//! column, a column of the wrong type and a role without SELECT each give a message
//! that names the table, the column (where there is one) and the fix; a running
//! source reports the change and recovers once it is fixed.

mod common;
mod pg_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use burnrate::model::Connection;
use burnrate::source::{SourceControl, run, schema};
use burnrate::store::StoreConfig;
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

/// `burnrate snapshot --json` against `url`: (success, stderr).
fn snapshot(url: &str) -> (bool, String) {
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(["snapshot", "--json", "--database-url", url])
        .env("XDG_STATE_HOME", state.path())
        .env("XDG_CONFIG_HOME", state.path())
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run snapshot");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_says(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing from: {stderr}");
    }
}

/// A login role that can connect but has no privilege on the table (roles are
/// cluster-wide: the name is unique to this test run).
async fn role_without_select(admin: &tokio_postgres::Client, db: &TestDb) -> (String, String) {
    let role = format!("{}_noselect", db.name);
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .expect("create role");
    let (_, rest) = db.url.split_once('@').expect("a URL with a user");
    (role.clone(), format!("postgres://{role}@{rest}"))
}

async fn drop_role(role: &str) {
    let admin = common::connect(&common::admin_url()).await;
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[test]
fn at_start_each_kind_of_trouble_names_table_column_and_fix() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, c) = rt.block_on(async {
        let db = TestDb::create().await;
        let c = db.client().await;
        (db, c)
    });

    let (ok, err) = snapshot(&db.url);
    assert!(!ok);
    assert_says(&err, &["cost_events", "does not exist", "burnrate db init"]);

    rt.block_on(c.batch_execute(
        "CREATE TABLE cost_events (\"timestamp\" timestamptz, feature_name text, id bigserial)",
    ))
    .unwrap();
    let (ok, err) = snapshot(&db.url);
    assert!(!ok);
    assert_says(&err, &["cost_events", "cost_usd", "burnrate db init"]);

    rt.block_on(c.batch_execute("ALTER TABLE cost_events ADD COLUMN cost_usd text"))
        .unwrap();
    let (ok, err) = snapshot(&db.url);
    assert!(!ok);
    assert_says(
        &err,
        &[
            "cost_events",
            "cost_usd",
            "text",
            "ALTER COLUMN cost_usd TYPE numeric",
        ],
    );

    rt.block_on(c.batch_execute("DROP TABLE cost_events"))
        .unwrap();
    rt.block_on(schema::init(&target(&db.url), TABLE))
        .expect("db init");
    let (ok, err) = snapshot(&db.url);
    assert!(ok, "{err}");

    let (role, url) = rt.block_on(role_without_select(&c, &db));
    let (ok, err) = snapshot(&url);
    rt.block_on(drop_role(&role));
    assert!(!ok);
    assert_says(&err, &["permission denied", "cost_events", "GRANT SELECT"]);
    assert!(!err.contains("password"), "{err}");
    rt.block_on(db.drop_db());
}

fn last_error(shared: &Arc<Mutex<Collector>>) -> Option<String> {
    let s = shared.lock().unwrap();
    match &s.statuses.last()?.connection {
        Connection::Disconnected { error, .. } => Some(error.clone()),
        _ => None,
    }
}

fn live(s: &Collector) -> bool {
    s.statuses
        .last()
        .is_some_and(|st| st.connection == Connection::Live)
}

/// Waits for a Disconnected status whose error says every one of `needles`.
async fn wait_error(shared: &Arc<Mutex<Collector>>, secs: u64, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(e) = last_error(shared)
            && needles.iter().all(|n| e.contains(n))
        {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error saying {needles:?} within {secs} s; last: {:?}",
            last_error(shared)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_a_running_source_are_reported_and_recovered_from() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    insert(&c, "first", 1_000, 1, 1).await;
    let cfg = StoreConfig::default();
    let (tx, rx) = mpsc::channel(10_000);
    let (shared, collector) = spawn_collector(cfg, rx);
    let (control, handle) = SourceControl::new();
    // refresh 100 ms: the columns are checked again every 3 s.
    let task = tokio::spawn(run(target(&db.url), options(cfg), tx, control));
    wait_for(&shared, 20, "live", |s| s.requests() == 1 && live(s)).await;

    // A column dropped: the next poll fails; the message names the column and fix.
    c.batch_execute("ALTER TABLE cost_events DROP COLUMN cost_usd")
        .await
        .unwrap();
    wait_error(
        &shared,
        10,
        &["cost_events", "cost_usd", "burnrate db init"],
    )
    .await;
    c.batch_execute("ALTER TABLE cost_events ADD COLUMN cost_usd numeric")
        .await
        .unwrap();
    wait_for(&shared, 20, "live after re-adding the column", live).await;

    // A column retyped: no query fails (costs are read as text), but the periodic
    // check of the columns notices.
    c.batch_execute("ALTER TABLE cost_events ALTER COLUMN cost_usd TYPE text")
        .await
        .unwrap();
    wait_error(
        &shared,
        15,
        &["cost_events", "cost_usd", "text", "ALTER TABLE"],
    )
    .await;
    c.batch_execute(
        "ALTER TABLE cost_events ALTER COLUMN cost_usd TYPE numeric USING cost_usd::numeric",
    )
    .await
    .unwrap();
    wait_for(&shared, 20, "live after the type is fixed", live).await;

    // The table dropped, then made again.
    c.batch_execute("DROP TABLE cost_events").await.unwrap();
    wait_error(
        &shared,
        10,
        &["cost_events", "does not exist", "burnrate db init"],
    )
    .await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    insert(&c, "second_table", 2_000, 1, 1).await;
    wait_for(&shared, 30, "rows of the new table", |s| {
        live(s) && s.requests() == 2
    })
    .await;

    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
    collector.await.unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_revoked_under_a_running_source_is_reported_and_recovered_from() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    insert(&c, "first", 1_000, 1, 1).await;
    let (role, url) = role_without_select(&c, &db).await;
    c.batch_execute(&format!("GRANT SELECT ON cost_events TO {role}"))
        .await
        .unwrap();
    let cfg = StoreConfig::default();
    let (tx, rx) = mpsc::channel(10_000);
    let (shared, collector) = spawn_collector(cfg, rx);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target(&url), options(cfg), tx, control));
    wait_for(&shared, 20, "live", |s| s.requests() == 1 && live(s)).await;

    c.batch_execute(&format!("REVOKE SELECT ON cost_events FROM {role}"))
        .await
        .unwrap();
    wait_error(
        &shared,
        10,
        &["permission denied", "cost_events", "GRANT SELECT"],
    )
    .await;
    insert(&c, "while_revoked", 2_000, 1, 1).await;
    c.batch_execute(&format!("GRANT SELECT ON cost_events TO {role}"))
        .await
        .unwrap();
    wait_for(&shared, 30, "live with the row written meanwhile", |s| {
        live(s) && s.requests() == 2
    })
    .await;

    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
    collector.await.unwrap();
    db.drop_db().await;
    drop_role(&role).await;
}
