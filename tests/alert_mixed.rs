//! Copies of burnrate as an on-call team deploys them, through the real binary:
//! some with the Slack webhook, some without, some with their own config, some
//! against another database; one Slack stand-in (tests/common/slack.rs).
//!
//! 1. Copies with and without a webhook: Slack receives each firing message exactly
//!    once, and no copy without a webhook claims a message in `burnrate_alert_log`.
//! 2. A check against another database without the alert tables neither prints nor
//!    resolves the first database's alerts; every message names `host/dbname`.
//! 3. A copy with a budget fires budget alerts; a copy without a budget does not
//!    resolve them, nor send "resolved" for them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::TestDb;
use common::slack::{Received, SlackStandIn};
use serde_json::Value;

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "burnrate-alert-mixed-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn burnrate(url: &str, state: &Path, webhook: Option<&str>, args: &[&str]) -> Command {
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

fn config(dir: &Path, name: &str, toml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_string()
}

/// `db init`, and three days of history when `history`.
async fn fresh_db(state: &Path, history: bool) -> TestDb {
    let db = TestDb::create().await;
    let out = run(burnrate(&db.url, state, None, &["db", "init"]));
    assert!(out.status.success(), "db init: {}", text(&out.stderr));
    if history {
        let args = [
            "simulate",
            "--backfill-days",
            "3",
            "--backfill-rate",
            "0.3",
            "--seed",
            "11",
            "--quiet",
        ];
        let out = run(burnrate(&db.url, state, None, &args));
        assert!(out.status.success(), "simulate: {}", text(&out.stderr));
    }
    db
}

/// A runaway on support_qa over the last four minutes ($0.50 a request, one a
/// second): $120 today, and a spike.
async fn spike(db: &TestDb) {
    db.client()
        .await
        .execute(
            "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, \
             region, cost_usd, input_tokens, output_tokens) \
             SELECT now() - make_interval(secs => s), 'support_qa', 'user_runaway', 'gpt-4o', \
             'acme', 'us-east-1', 0.5, 4000, 900 FROM generate_series(1, 240) AS s",
            &[],
        )
        .await
        .unwrap();
}

async fn drop_alert_tables(db: &TestDb) {
    db.client()
        .await
        .batch_execute("DROP TABLE burnrate_alerts, burnrate_alert_silences, burnrate_alert_log")
        .await
        .unwrap();
}

/// (kind, first line) of every alert section of every Slack message received.
fn alerts_in(received: &[Received]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in received {
        let v = r.json();
        let head = v["blocks"][0]["text"]["text"].as_str().unwrap().to_string();
        for b in v["blocks"].as_array().unwrap() {
            if b["type"] == "section"
                && let Some(first) = b["text"]["text"].as_str().and_then(|t| t.lines().next())
                && first.starts_with("*[")
            {
                out.push((head.clone(), first.to_string()));
            }
        }
    }
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json prints JSON ({e}): {}", text(&out.stdout)))
}

/// Fingerprints of the alerts that page (not info) in `check --json` outputs.
fn paged(outs: &[&Output]) -> BTreeSet<String> {
    outs.iter()
        .flat_map(|o| json_of(o)["firing"].as_array().unwrap().clone())
        .filter(|a| a["severity"] != "info")
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect()
}

fn wait_all(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_without_a_webhook_never_take_the_page() {
    let state = state_dir("hook");
    let db = fresh_db(&state, true).await;
    spike(&db).await;
    let slack = SlackStandIn::start(vec![]).await;
    let c = db.client().await;

    // A copy without a webhook evaluates first: the alerts fire in the shared
    // state, nothing is claimed, and it says what it left.
    let out = run(burnrate(&db.url, &state, None, &["check", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let first = json_of(&out);
    assert!(first["unannounced"].as_u64().unwrap() >= 1, "{first:#}");
    assert!(
        first["messages"].as_array().unwrap().is_empty(),
        "{first:#}"
    );
    let claimed: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alert_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 0, "a copy without a webhook claimed a message");
    let out = run(burnrate(&db.url, &state, None, &["check"]));
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout);
    assert!(said.contains("not announced here"), "{said}");
    assert!(said.contains("BURNRATE_SLACK_WEBHOOK_URL"), "{said}");

    // Then two with a webhook and two without, at once, each with its own local
    // state directory (as on four machines).
    let mut hooked = BTreeSet::new();
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let webhook = (i % 2 == 0).then_some(slack.url.as_str());
            let child = burnrate(
                &db.url,
                &state_dir(&format!("hook{i}")),
                webhook,
                &["check", "--json"],
            )
            .spawn()
            .unwrap();
            if webhook.is_some() {
                hooked.insert(child.id());
            }
            child
        })
        .collect();
    let outs = wait_all(children);
    for out in &outs {
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let refs: Vec<&Output> = outs.iter().collect();
    let paged = paged(&refs);
    assert!(!paged.is_empty());

    // Every paged alert reached Slack exactly once, as a firing message.
    let received = slack.wait_for(1, Duration::from_secs(10)).await;
    // Wait until Slack holds as many alerts as paged (a second message may follow).
    let mut sent = alerts_in(&received);
    for _ in 0..50 {
        if sent.len() >= paged.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sent = alerts_in(&slack.received());
    }
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for (head, line) in &sent {
        assert!(head.contains(" firing"), "{head}");
        *counts.entry(line).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "{sent:#?}");
    assert_eq!(sent.len(), paged.len(), "{sent:#?} vs {paged:?}");
    // A message claimed after the episode began says since when.
    let first_body = &slack.received()[0].body;
    assert!(first_body.contains("Firing since"), "{first_body}");

    // The log: each firing claimed once, sent, and only by copies with a webhook.
    let rows = c
        .query(
            "SELECT fingerprint, kind, status, instance FROM burnrate_alert_log",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), paged.len());
    for r in &rows {
        let (fp, kind, status, instance): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert!(paged.contains(&fp), "{fp}");
        assert_eq!((kind.as_str(), status.as_str()), ("firing", "sent"));
        let pid: u32 = instance.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            hooked.contains(&pid),
            "{instance} claimed a message without a webhook (webhook copies: {hooked:?})"
        );
    }

    // Later, every kind of copy again: nothing more is sent or claimed.
    let before = slack.received().len();
    let outs = wait_all(
        [None, Some(slack.url.as_str())]
            .into_iter()
            .map(|w| burnrate(&db.url, &state, w, &["check"]).spawn().unwrap())
            .collect(),
    );
    for out in &outs {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    }
    let claimed: i64 = c
        .query_one("SELECT count(*) FROM burnrate_alert_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed as usize, paged.len());
    assert_eq!(slack.received().len(), before, "nothing re-sent");

    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_of_another_database_neither_prints_nor_resolves_these_alerts() {
    let state = state_dir("otherdb");
    let dir = tempfile::tempdir().unwrap();
    // Neither database has the alert tables: both use a local state file.
    let db = fresh_db(&state, true).await;
    spike(&db).await;
    drop_alert_tables(&db).await;
    let other = fresh_db(&state, false).await;
    drop_alert_tables(&other).await;
    let slack = SlackStandIn::start(vec![]).await;

    let out = run(burnrate(&db.url, &state, Some(&slack.url), &["check"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    assert!(err.contains("alert state: local file"), "{err}");
    assert!(err.contains("alert tables do not exist"), "{err}");
    let firing = text(&out.stdout);
    assert!(firing.contains("FIRING"), "{firing}");
    let received = slack.wait_for(1, Duration::from_secs(10)).await;
    assert!(!received.is_empty());
    // The messages name the database: host/dbname, no user, no port.
    let named = format!("127.0.0.1/{}", db.name);
    for r in &received {
        let v = r.json();
        assert!(v["text"].as_str().unwrap().contains(&named), "{v:#}");
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains(&named),
            "{v:#}"
        );
        assert!(!r.body.contains("postgres@"), "{}", r.body);
    }
    let sent = slack.received().len();

    // The other database, at once forgetting nothing within 0 s: under the old
    // shared file it printed these alerts and sent them "resolved".
    let quick = config(
        dir.path(),
        "quick.toml",
        "[alerts]\nkeep_firing_for = \"0s\"\n",
    );
    let out = run(burnrate(
        &other.url,
        &state,
        Some(&slack.url),
        &["check", "--json", "--config", &quick],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v = json_of(&out);
    assert!(v["firing"].as_array().unwrap().is_empty(), "{v:#}");
    assert!(v["messages"].as_array().unwrap().is_empty(), "{v:#}");
    assert_eq!(v["database"], format!("127.0.0.1/{}", other.name));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slack.received().len(),
        sent,
        "nothing sent about the other database"
    );
    let out = run(burnrate(&other.url, &state, None, &["check"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("no alerts firing"));

    // The first database's alerts are intact: still firing, not sent again.
    let out = run(burnrate(&db.url, &state, Some(&slack.url), &["check"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("FIRING"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.received().len(), sent);
    assert!(
        alerts_in(&slack.received())
            .iter()
            .all(|(head, _)| !head.contains("resolved")),
        "{:#?}",
        alerts_in(&slack.received())
    );
    // One local file per database.
    let files: Vec<String> = std::fs::read_dir(state.join("burnrate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("alerts-") && n.ends_with(".json"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");

    db.drop_db().await;
    other.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_without_a_budget_does_not_resolve_the_budget_alerts() {
    let state = state_dir("budget");
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(&state, true).await;
    spike(&db).await;
    let slack = SlackStandIn::start(vec![]).await;
    let budget = config(dir.path(), "budget.toml", "[budget]\nmonthly_usd = 1\n");
    let plain = config(
        dir.path(),
        "plain.toml",
        "[alerts]\nkeep_firing_for = \"0s\"\n",
    );

    let out = run(burnrate(
        &db.url,
        &state,
        Some(&slack.url),
        &["check", "--json", "--config", &budget],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // (rule, fingerprint) of the budget alerts.
    let budget_alerts: Vec<(String, String)> = json_of(&out)["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(r, _)| r.contains("budget"))
        .collect();
    assert!(!budget_alerts.is_empty(), "no budget alert fired");
    slack.wait_for(1, Duration::from_secs(10)).await;
    let fired = alerts_in(&slack.received());
    assert!(
        fired.iter().any(|(_, l)| l.contains("budget")),
        "{fired:#?}"
    );
    let sent = slack.received().len();

    // The copy with the budget is gone; one without, forgetting at once, twice.
    for _ in 0..2 {
        let out = run(burnrate(
            &db.url,
            &state,
            Some(&slack.url),
            &["check", "--json", "--config", &plain],
        ));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let v = json_of(&out);
        let still: Vec<&str> = v["firing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap())
            .collect();
        for (rule, fp) in &budget_alerts {
            assert!(
                still.contains(&fp.as_str()),
                "{rule} no longer firing: {v:#}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No "resolved" for them (the spike the copy without a budget also sees is
    // its own to judge).
    let after = alerts_in(&slack.received()[sent..]);
    assert!(
        after
            .iter()
            .all(|(head, line)| !(head.contains("resolved") && line.contains("budget"))),
        "{after:#?}"
    );
    let c = db.client().await;
    for (rule, fp) in &budget_alerts {
        let resolved: i64 = c
            .query_one(
                "SELECT count(*) FROM burnrate_alert_log WHERE kind = 'resolved' \
                 AND fingerprint = $1",
                &[fp],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(resolved, 0, "{rule}");
        let phase: String = c
            .query_one(
                "SELECT phase FROM burnrate_alerts WHERE fingerprint = $1",
                &[fp],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(phase, "firing", "{rule}");
    }
    drop(c);
    db.drop_db().await;
}
