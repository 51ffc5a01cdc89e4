//! The "database unreachable" alert reaches Slack although the shared alert state
//! lives in the unreachable database: `burnrate watch` (in a pseudo-terminal) talks
//! to PostgreSQL through the fault proxy (tests/common/proxy.rs); the proxy goes
//! down, the round falls back to the local state file and the health alert is
//! delivered to the Slack stand-in; when the database is back, what was sent is
//! merged into the shared state and not sent again.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::proxy::FaultProxy;
use common::pty::PtyApp;
use common::slack::SlackStandIn;

fn unreachable_messages(slack: &SlackStandIn) -> usize {
    slack
        .received()
        .iter()
        .filter(|r| r.body.contains("unreachable for"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_unreachable_alert_reaches_slack_once() {
    let db = TestDb::create().await;
    for args in [
        &["db", "init"][..],
        &[
            "simulate",
            "--backfill-days",
            "1",
            "--backfill-rate",
            "0.05",
            "--seed",
            "5",
            "--quiet",
        ][..],
    ] {
        common::burnrate_ok(&db.url, args);
    }
    let proxy = FaultProxy::start();
    let url = proxy.url(&db.url);
    let slack = SlackStandIn::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    std::fs::write(&config, "[alerts]\ndatabase_unreachable_for = \"1m\"\n").unwrap();

    let mut m = PtyApp::spawn_env(
        &["watch", "--config", config.to_str().unwrap()],
        &[
            ("BURNRATE_SLACK_WEBHOOK_URL", slack.url.as_str()),
            ("DATABASE_URL", url.as_str()),
        ],
        320,
        40,
    );
    // Backfilled, and the first alert round ran on the shared state.
    m.wait_until(
        "history loaded and alerts running",
        Duration::from_secs(120),
        |t| t.contains("alerts: 0 firing") && !t.contains("Loading history"),
    );
    // One alert round on the shared state (every 10-30 s).
    let settle = Instant::now() + Duration::from_secs(32);
    while Instant::now() < settle {
        m.pump(Duration::from_millis(300));
    }
    let c = db.client().await;
    let shared: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alerts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shared, 0);

    // The database goes away.
    let down = Instant::now();
    proxy.outage();
    m.wait_for("DISCONNECTED", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(150);
    while unreachable_messages(&slack) == 0 {
        assert!(
            Instant::now() < deadline,
            "no database-unreachable alert reached Slack; screen:\n{}",
            m.text()
        );
        m.pump(Duration::from_millis(500));
    }
    eprintln!(
        "the alert reached Slack {:.0} s after the outage began",
        down.elapsed().as_secs_f64()
    );
    let body = slack
        .received()
        .into_iter()
        .find(|r| r.body.contains("unreachable for"))
        .unwrap()
        .body;
    assert!(body.contains("database_unreachable"), "{body}");
    // Said in the status bar (beside the disconnection message, on a wide enough
    // terminal) and in the log.
    m.wait_for("alert state in the local file", Duration::from_secs(10));
    let log = std::fs::read_to_string(m.state_dir().join("burnrate").join("burnrate.log")).unwrap();
    assert!(
        log.contains("shared state unreachable, using the local file"),
        "{log}"
    );

    // Back: the shared state takes in what the local file sent.
    proxy.pass();
    let deadline = Instant::now() + Duration::from_secs(90);
    let notifications = loop {
        m.pump(Duration::from_millis(500));
        let row = c
            .query_opt(
                "SELECT (state->>'notifications')::int FROM burnrate_alerts \
                 WHERE rule = 'database_unreachable'",
                &[],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            break r.get::<_, i32>(0);
        }
        assert!(
            Instant::now() < deadline,
            "the outage was not merged into the shared state; screen:\n{}",
            m.text()
        );
    };
    assert_eq!(notifications, 1);
    // Another round or two on the shared state: not sent again.
    let settle = Instant::now() + Duration::from_secs(35);
    while Instant::now() < settle {
        m.pump(Duration::from_millis(500));
    }
    assert_eq!(unreachable_messages(&slack), 1, "sent twice");
    let text = m.text();
    assert!(
        !text.contains("alert state in the local file"),
        "still on the local file after the database came back:\n{text}"
    );

    m.press(b"q");
    m.wait_exit(Duration::from_secs(20));
    drop(c);
    drop(proxy);
    db.drop_db().await;
}
