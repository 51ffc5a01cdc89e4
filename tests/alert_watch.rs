//! The done-when of the alerts issue, through the real binary: a spike in a
//! throwaway database, three `burnrate watch` dashboards (in pseudo-terminals) and a
//! cron-style `burnrate check` against it, one Slack stand-in: each alert reaches
//! Slack exactly once. Then, from one dashboard's keyboard, `a` selects an alert,
//! `A` acknowledges it and `z` silences it, and the shared state says so.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestDb;
use common::pty::PtyApp;
use common::slack::{Received, SlackStandIn};

fn burnrate(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(args)
        .args(["--database-url", url])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join(format!("burnrate-alert-watch-{}", std::process::id())),
        )
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    cmd
}

fn alerts_in(received: &[Received]) -> Vec<String> {
    let mut out = Vec::new();
    for r in received {
        for b in r.json()["blocks"].as_array().unwrap() {
            if b["type"] == "section"
                && let Some(first) = b["text"]["text"].as_str().and_then(|t| t.lines().next())
                && first.starts_with("*[")
            {
                out.push(first.to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_monitors_and_a_cron_check_send_one_message_per_alert() {
    let db = TestDb::create().await;
    for args in [
        &["db", "init"][..],
        &[
            "simulate",
            "--backfill-days",
            "3",
            "--backfill-rate",
            "0.3",
            "--seed",
            "12",
            "--quiet",
        ][..],
    ] {
        let out = burnrate(&db.url, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A runaway: four minutes of it already, and it goes on while the test runs.
    let c = db.client().await;
    let spike = "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, \
                 region, cost_usd, input_tokens, output_tokens) \
                 SELECT now() - make_interval(secs => s), 'support_qa', 'user_runaway', 'gpt-4o', \
                 'acme', 'us-east-1', 0.5, 4000, 900 FROM generate_series($1::int, $2::int) AS s";
    c.execute(spike, &[&1i32, &240i32]).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, c2) = (stop.clone(), db.client().await);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = c2
                    .execute(
                        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, \
                         tenant_id, region, cost_usd, input_tokens, output_tokens) VALUES \
                         (now(), 'support_qa', 'user_runaway', 'gpt-4o', 'acme', 'us-east-1', \
                         0.5, 4000, 900)",
                        &[],
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let slack = SlackStandIn::start(vec![]).await;
    let env = [
        ("BURNRATE_SLACK_WEBHOOK_URL", slack.url.as_str()),
        ("DATABASE_URL", db.url.as_str()),
    ];
    let mut monitors: Vec<PtyApp> = (0..3)
        .map(|_| PtyApp::spawn_env(&["watch"], &env, 200, 40))
        .collect();
    // The cron check, while the monitors start.
    let check = burnrate(&db.url, &["check"])
        .env("BURNRATE_SLACK_WEBHOOK_URL", &slack.url)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Every monitor shows the alerts firing in its status bar (from the shared
    // state at first: the check has already announced them).
    let deadline = Instant::now() + Duration::from_secs(200);
    let mut firing = [false; 3];
    while !firing.iter().all(|f| *f) {
        assert!(
            Instant::now() < deadline,
            "monitors did not show firing alerts; screens:\n{}",
            monitors
                .iter()
                .map(|m| m.text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        for (i, m) in monitors.iter_mut().enumerate() {
            m.pump(Duration::from_millis(100));
            let t = m.text();
            firing[i] = t.contains("alerts: ") && !t.contains("alerts: 0 firing");
        }
    }
    // Long enough for every monitor's own detector to confirm the spike (two
    // evaluation minutes) and run its rounds against the shared state.
    let settle = Instant::now() + Duration::from_secs(130);
    while Instant::now() < settle {
        for m in monitors.iter_mut() {
            m.pump(Duration::from_millis(200));
        }
    }

    let received = slack.received();
    let sent = alerts_in(&received);
    assert!(!sent.is_empty(), "nothing reached Slack");
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for s in &sent {
        *counts.entry(s).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "an alert was sent twice: {sent:#?}"
    );
    let log = c
        .query(
            "SELECT fingerprint, kind, count(*) FROM burnrate_alert_log \
             GROUP BY 1, 2 HAVING count(*) > 1",
            &[],
        )
        .await
        .unwrap();
    assert!(log.is_empty(), "claimed twice");
    eprintln!(
        "{} Slack messages, {} alerts: {sent:#?}",
        received.len(),
        sent.len()
    );

    // From the keyboard of one monitor: select the first alert, acknowledge it,
    // silence it.
    let m = &mut monitors[0];
    m.press(b"a");
    m.pump(Duration::from_millis(500));
    m.press(b"A");
    m.wait_for("acknowledged", Duration::from_secs(20));
    m.press(b"z");
    // The answer names the silence's matchers in key order ("silenced
    // feature=support_qa, rule=spike_15m for 1h, until ..." or "silenced
    // rule=runaway_user, user=..."), whichever anomaly `a` opened first.
    m.wait_until("the silence's answer", Duration::from_secs(20), |t| {
        t.contains("silenced ") && t.contains(" for 1h, until ")
    });
    let silences: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alert_silences", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(silences, 1);
    let acked: i64 = c
        .query_one(
            "SELECT count(*) FROM burnrate_alerts WHERE state->'acked' IS NOT NULL \
             AND state->>'acked' <> 'null'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(acked, 1);
    m.press(b"L");
    m.wait_for("silences: ", Duration::from_secs(20));
    m.press(b"U");
    m.wait_for("lifted the silence", Duration::from_secs(20));

    for m in monitors.iter_mut() {
        m.press(b"q");
    }
    for m in monitors.iter_mut() {
        m.wait_exit(Duration::from_secs(20));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = writer.await;
    drop(c);
    db.drop_db().await;
}
