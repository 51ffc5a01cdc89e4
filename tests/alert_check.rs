//! `burnrate check` end to end, through the real binary, against a throwaway
//! database with simulated history and a spike, and a Slack stand-in: several
//! checks at once and again later send exactly one message per alert; exit codes
//! 0 / 1 / 2; `--dry-run` sends and stores nothing; a read-only role falls back to
//! a local state file and says so.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::TestDb;
use common::slack::{Received, SlackStandIn};
use serde_json::Value;

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "burnrate-alert-check-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn burnrate(url: &str, state: &PathBuf, webhook: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(args)
        .args(["--database-url", url])
        .env("XDG_STATE_HOME", state)
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("BURNRATE_SLACK_WEBHOOK_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(w) = webhook {
        cmd.env("BURNRATE_SLACK_WEBHOOK_URL", w);
    }
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run burnrate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// db init, three days of history, and a runaway on support_qa over the last four
/// minutes ($0.50 a request, one a second).
async fn spiked_db(state: &PathBuf) -> TestDb {
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
            "11",
            "--quiet",
        ][..],
    ] {
        let out = run(burnrate(&db.url, state, None, args));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let c = db.client().await;
    c.execute(
        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, \
         cost_usd, input_tokens, output_tokens) \
         SELECT now() - make_interval(secs => s), 'support_qa', 'user_runaway', 'gpt-4o', 'acme', \
         'us-east-1', 0.5, 4000, 900 FROM generate_series(1, 240) AS s",
        &[],
    )
    .await
    .unwrap();
    db
}

/// Subject lines of every alert in every Slack message received.
fn alerts_in(received: &[Received]) -> Vec<String> {
    let mut out = Vec::new();
    for r in received {
        let v = r.json();
        for b in v["blocks"].as_array().unwrap() {
            if b["type"] == "section"
                && let Some(t) = b["text"]["text"].as_str()
                && let Some(first) = t.lines().next()
                && first.starts_with("*[")
            {
                out.push(first.to_string());
            }
        }
    }
    out
}

fn firing_of(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json prints JSON ({e}): {}", text(&out.stdout)));
    v["firing"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_repeated_checks_send_one_message_per_alert() {
    let state = state_dir("dedupe");
    let db = spiked_db(&state).await;
    let slack = SlackStandIn::start(vec![]).await;

    // Three checks at once, each with its own local state directory (as on three
    // machines): only the shared state in PostgreSQL can dedupe them.
    let children: Vec<_> = (0..3)
        .map(|i| {
            let dir = state_dir(&format!("dedupe{i}"));
            burnrate(&db.url, &dir, Some(&slack.url), &["check", "--json"])
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert_eq!(
            out.status.code(),
            Some(1),
            "alerts fire: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("local file"),
            "{}",
            text(&out.stderr)
        );
    }
    let firing = firing_of(&outs[0]);
    assert!(
        firing
            .iter()
            .any(|a| a["rule"].as_str().unwrap().starts_with("spike_")
                && a["labels"]["feature"] == "support_qa"),
        "{firing:#?}"
    );
    // Alerts any of the three paged, by fingerprint: a check that runs across
    // midnight can see one more or one fewer "today" alert than another.
    let paged = outs
        .iter()
        .flat_map(firing_of)
        .filter(|a| a["severity"] != "info")
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();

    let received = slack.wait_for(1, Duration::from_secs(5)).await;
    let sent = alerts_in(&received);
    // Exactly one message per alert: no alert in two messages, every paged alert in one.
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for s in &sent {
        *counts.entry(s).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "{sent:#?}");
    assert_eq!(sent.len(), paged, "{sent:#?} vs {firing:#?}");
    assert!(
        received.len() <= 2,
        "grouped: one message (rarely two) for {} alerts, got {}",
        paged,
        received.len()
    );

    // The log says each was claimed once and sent.
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT fingerprint, count(*), min(status) FROM burnrate_alert_log \
             WHERE kind = 'firing' GROUP BY fingerprint",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), paged);
    for r in &rows {
        assert_eq!(r.get::<_, i64>(1), 1);
        assert_eq!(r.get::<_, String>(2), "sent");
    }

    // Again, later (a restart, the next cron run): still firing, nothing re-sent.
    let out = run(burnrate(&db.url, &state, Some(&slack.url), &["check"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FIRING critical spike_"), "{stdout}");
    assert!(!stdout.contains("sent to Slack"), "{stdout}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.received().len(), received.len(), "nothing re-sent");

    // --dry-run neither sends nor stores.
    let out = run(burnrate(
        &db.url,
        &state,
        Some(&slack.url),
        &["check", "--json", "--dry-run"],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(slack.received().len(), received.len());

    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_on_a_fresh_spike_says_what_it_would_send() {
    let state = state_dir("dry");
    let db = spiked_db(&state).await;
    let slack = SlackStandIn::start(vec![]).await;
    let out = run(burnrate(
        &db.url,
        &state,
        Some(&slack.url),
        &["check", "--json", "--dry-run"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    let messages = v["messages"].as_array().unwrap();
    assert!(!messages.is_empty(), "{v:#}");
    assert!(messages.iter().all(|m| m["status"] == "dry_run"));
    assert!(slack.received().is_empty());
    let c = db.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alert_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a dry run claims nothing");
    let n: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alerts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a dry run stores nothing");
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes() {
    let state = state_dir("codes");
    let db = TestDb::create().await;
    let out = run(burnrate(&db.url, &state, None, &["db", "init"]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // 0: nothing firing.
    let out = run(burnrate(&db.url, &state, None, &["check"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no alerts firing"));

    // 2: the database cannot be reached.
    let out = run(burnrate(
        "postgres://postgres@127.0.0.1:1/nowhere",
        &state,
        None,
        &["check"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );

    // 2: a webhook that is not a URL; the value never shows.
    let out = run(burnrate(
        &db.url,
        &state,
        Some("hooks.slack.com/services/T0/B0/supersecret"),
        &["check"],
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("BURNRATE_SLACK_WEBHOOK_URL"), "{err}");
    assert!(!err.contains("supersecret"), "{err}");

    // 2: the command line has no webhook option at all.
    let out = run(burnrate(
        &db.url,
        &state,
        None,
        &["check", "--slack-webhook-url", "https://x"],
    ));
    assert_eq!(out.status.code(), Some(2));

    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_webhook_is_an_error_and_a_read_only_role_uses_a_local_file() {
    let state = state_dir("ro");
    let db = spiked_db(&state).await;
    let admin = db.client().await;

    // A read-only role: SELECT on everything, no writes.
    let role = format!("burnrate_ro_{}", db.name.trim_start_matches("burnrate_t_"));
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let ro_url = db.url.replace("postgres@", &format!("{role}@"));

    let slack = SlackStandIn::start(vec![]).await;
    let out = run(burnrate(&ro_url, &state, Some(&slack.url), &["check"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    assert!(err.contains("alert state: local file"), "{err}");
    assert!(err.contains("may not write the alert tables"), "{err}");
    // One local file per database, table and tenant.
    let files: Vec<String> = std::fs::read_dir(state.join("burnrate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("alerts-") && n.ends_with(".json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let first = slack.wait_for(1, Duration::from_secs(5)).await.len();
    assert!(first >= 1);
    // The local file dedupes too: a second run sends nothing more.
    let out = run(burnrate(&ro_url, &state, Some(&slack.url), &["check"]));
    assert_eq!(out.status.code(), Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.received().len(), first);

    // A revoked webhook (404 no_service) is a configuration error: exit 2, said so.
    let dead = SlackStandIn::start(vec![common::slack::Reply::Status(404, "no_service"); 5]).await;
    let out = run(burnrate(
        &db.url,
        &state_dir("dead"),
        Some(&dead.url),
        &["check"],
    ));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no_service"), "{err}");
    assert!(!err.contains("secret-token"), "{err}");
    assert_eq!(dead.received().len(), 1, "not retried");

    drop(admin);
    db.drop_db().await;
    let admin = common::connect(&common::admin_url()).await;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}
