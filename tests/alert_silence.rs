//! Silencing from the keyboard stops the repeats, through the real binary: a
//! monitor-health alert ("no new events" while the same minute on previous days had
//! traffic) fires at once in `burnrate watch` (in a pseudo-terminal), repeats every
//! minute (`alerts.repeat_interval = "1m"`, the documented floor) on the Slack
//! stand-in, and after `z` no further message arrives.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::pty::PtyApp;
use common::slack::SlackStandIn;

fn messages(slack: &SlackStandIn) -> usize {
    slack
        .received()
        .iter()
        .filter(|r| r.body.contains("no_events"))
        .count()
}

fn wait_messages(m: &mut PtyApp, slack: &SlackStandIn, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while messages(slack) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages; screen:\n{}",
            messages(slack),
            m.text()
        );
        m.pump(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silencing_from_the_keyboard_stops_the_repeats() {
    let db = TestDb::create().await;
    for args in [
        &["db", "init"][..],
        &[
            "simulate",
            "--backfill-days",
            "4",
            "--backfill-rate",
            "0.5",
            "--seed",
            "9",
            "--quiet",
        ][..],
    ] {
        common::burnrate_ok(&db.url, args);
    }
    // The writers went quiet two minutes ago.
    let c = db.client().await;
    c.execute(
        "DELETE FROM cost_events WHERE timestamp > now() - interval '2 minutes'",
        &[],
    )
    .await
    .unwrap();

    let slack = SlackStandIn::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    std::fs::write(
        &config,
        // The history keeps the daily and weekly rhythm: a weekend night holds about
        // 6 requests a minute, under the default minimum of 10, so the minimum goes
        // down to keep the test independent of the clock. For the same reason the
        // detector is quieted: on a Monday, today against a week of mostly weekend
        // days is an anomaly, and `z` would silence that instead.
        "[alerts]\nrepeat_interval = \"1m\"\nno_events_for = \"1m\"\nno_events_min_requests = 2\n\
         [detect]\nmin_excess_usd = \"1000000\"\nrunaway_min_excess_usd = \"1000000\"\n\
         runaway_min_requests = 1000000.0\n",
    )
    .unwrap();
    let start = Instant::now();
    let mut m = PtyApp::spawn_env(
        &["watch", "--config", config.to_str().unwrap()],
        &[
            ("BURNRATE_SLACK_WEBHOOK_URL", slack.url.as_str()),
            ("DATABASE_URL", db.url.as_str()),
        ],
        200,
        40,
    );
    // Fires, then repeats a minute later.
    wait_messages(&mut m, &slack, 1, Duration::from_secs(90));
    let first = Instant::now();
    wait_messages(&mut m, &slack, 2, Duration::from_secs(100));
    eprintln!(
        "first message {:.0} s after start, the repeat {:.0} s after it",
        (first - start).as_secs_f64(),
        first.elapsed().as_secs_f64()
    );

    // `z` on the dashboard: the most severe firing alert (no anomaly is open).
    m.press(b"z");
    m.wait_for("1 silenced", Duration::from_secs(20));
    let at_silence = messages(&slack);
    let silences: Vec<String> = c
        .query("SELECT silence::text FROM burnrate_alert_silences", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert!(silences[0].contains("no_events"), "{silences:?}");

    // Well over a repeat interval (and the evaluation cadence) later: nothing more.
    let quiet = Instant::now() + Duration::from_secs(80);
    while Instant::now() < quiet {
        m.pump(Duration::from_millis(300));
    }
    assert_eq!(messages(&slack), at_silence, "a repeat after the silence");
    let firing: i64 = c
        .query_one(
            "SELECT count(*) FROM burnrate_alerts WHERE rule = 'no_events' AND phase = 'firing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(firing, 1, "still firing (silenced, not resolved)");
    eprintln!("whole test {:.0} s", start.elapsed().as_secs_f64());

    m.press(b"q");
    m.wait_exit(Duration::from_secs(20));
    drop(c);
    db.drop_db().await;
}
