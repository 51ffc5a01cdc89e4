//! Recurring jobs against a fresh `burnrate check`, end to end (issue 16, item 0):
//! the real binary backfills 21 days grouped by hour, then reads where within
//! those hours the big names spend (`source::shapes`), so a nightly batch and an
//! hourly digest running now, as every day and every hour before, raise no
//! `spike_*` or `runaway_*` alert; the same jobs at twice their size, or when the
//! history ran them at another minute, do.
//!
//! `check` has no clock to fix: it evaluates at the wall clock. So every row is
//! placed relative to `t0`, the minute the test starts in, read once: the jobs'
//! runs start at the same offsets from `t0` whatever hour or day the test runs in
//! (the batch 10 minutes before it each day, the digest 4 minutes before it
//! each hour: both have just run, or all but its last minute), and `check` runs within seconds of `t0`.

mod common;

use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::TestDb;
use serde_json::Value;
use tokio_postgres::Client;

const BATCH: [&str; 3] = ["extract_entities", "svc_batch", "claude-sonnet-4"];
const DIGEST: [&str; 3] = ["summarize", "svc_digest", "gpt-4o"];

fn check(url: &str, state: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(["check", "--json", "--dry-run", "--database-url", url])
        .env("XDG_STATE_HOME", state)
        .env("RUST_LOG", "burnrate=debug")
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("BURNRATE_SLACK_WEBHOOK_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run burnrate check")
}

/// Past runs of a job: run k (1..=`runs`) starts `k * every` before `start` and
/// sends `per_minute` rows a minute (spread over the minute) for `minutes`
/// minutes, each costing `cost`, on (feature, user, model).
#[allow(clippy::too_many_arguments)]
async fn past_runs(
    c: &Client,
    names: [&str; 3],
    start: DateTime<Utc>,
    minutes: i32,
    per_minute: i32,
    cost: &str,
    every: &str,
    runs: i32,
) {
    c.execute(
        &format!(
            "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, \
               cost_usd, input_tokens, output_tokens) \
             SELECT $1::timestamptz - k * $2::text::interval + make_interval(mins => m) \
                      + make_interval(secs => i * 60.0 / $4::int4), \
                    $5, $6, $7, 'acme', 'eu', {cost}, 800, 200 \
             FROM generate_series(1, $8::int4) AS k, generate_series(0, $3::int4 - 1) AS m, \
                  generate_series(0, $4::int4 - 1) AS i"
        ),
        &[
            &start,
            &every,
            &minutes,
            &per_minute,
            &names[0],
            &names[1],
            &names[2],
            &runs,
        ],
    )
    .await
    .unwrap();
}

/// 22 days of ordinary traffic up to `t0`: chat on gpt-4o-mini ($12 an hour over
/// five users) and a trickle of summarize on gpt-4o ($1.20 an hour), so the jobs'
/// feature and model have baselines besides the jobs.
async fn background(c: &Client, t0: DateTime<Utc>) {
    c.execute(
        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, \
           cost_usd, input_tokens, output_tokens) \
         SELECT $1::timestamptz - make_interval(mins => m) + make_interval(secs => 7), 'chat', \
                'chat_user_' || (m % 5), 'gpt-4o-mini', 'acme', 'eu', 0.2, 500, 100 \
         FROM generate_series(1, 22 * 1440) AS m",
        &[&t0],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, \
           cost_usd, input_tokens, output_tokens) \
         SELECT $1::timestamptz - make_interval(mins => 2 * m) + make_interval(secs => 31), \
                'summarize', 'sum_user_' || (m % 5), 'gpt-4o', 'acme', 'eu', 0.04, 300, 50 \
         FROM generate_series(1, 11 * 1440) AS m",
        &[&t0],
    )
    .await
    .unwrap();
}

/// The history of both jobs, `shift` before their usual times: the nightly batch
/// (1,200 requests, $36 in ten minutes) once a day for 21 days, the digest (60
/// requests, $2.40 in five minutes) once an hour for 21 days.
async fn job_history(c: &Client, t0: DateTime<Utc>, shift: Duration) {
    let batch = t0 - Duration::minutes(10) - shift;
    past_runs(c, BATCH, batch, 10, 120, "0.03", "1 day", 21).await;
    let digest = t0 - Duration::minutes(4) - shift;
    past_runs(c, DIGEST, digest, 5, 12, "0.04", "1 hour", 21 * 24).await;
}

/// Today's runs, started 10 (batch) and 4 (digest) minutes before `t0`, `times`
/// their usual size, up to `t0`. Twice the batch shows once its run is whole:
/// before, its hour's even share can exceed its own usual part of a 60-minute
/// window (baselines never go below an hour's even share).
async fn today(c: &Client, t0: DateTime<Utc>, times: i32) {
    c.execute(
        "DELETE FROM cost_events WHERE timestamp >= $1::timestamptz - interval '10 minutes' \
           AND user_id IN ('svc_batch', 'svc_digest')",
        &[&t0],
    )
    .await
    .unwrap();
    for (names, start, per_minute, cost) in [
        (BATCH, t0 - Duration::minutes(10), 120, "0.03"),
        (DIGEST, t0 - Duration::minutes(4), 12, "0.04"),
    ] {
        c.execute(
            &format!(
                "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, \
                   region, cost_usd, input_tokens, output_tokens) \
                 SELECT $1::timestamptz + make_interval(secs => i * 60.0 / $2::int4), \
                        $3, $4, $5, 'acme', 'eu', {cost}, 800, 200 \
                 FROM generate_series(0, $2::int4 * 10 - 1) AS i \
                 WHERE $1::timestamptz + make_interval(secs => i * 60.0 / $2::int4) < $6::timestamptz"
            ),
            &[
                &start,
                &(per_minute * times),
                &names[0],
                &names[1],
                &names[2],
                &t0,
            ],
        )
        .await
        .unwrap();
    }
}

/// The `spike_*` and `runaway_*` alerts (firing or pending) about any of `names`.
fn alerts_about(out: &Output, names: &[&str]) -> Vec<String> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json prints JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut found = Vec::new();
    for state in ["firing", "pending"] {
        for a in v[state].as_array().unwrap() {
            let rule = a["rule"].as_str().unwrap_or_default();
            if !(rule.starts_with("spike_") || rule.starts_with("runaway_")) {
                continue;
            }
            let labels = a["labels"].as_object().unwrap();
            if labels
                .values()
                .any(|l| names.contains(&l.as_str().unwrap_or_default()))
            {
                found.push(format!("{state} {rule}: {}", a["summary"]));
            }
        }
    }
    found
}

fn state_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("burnrate-pg-shapes-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn db_with(t0: DateTime<Utc>, shift: Duration) -> TestDb {
    let db = TestDb::create().await;
    common::burnrate_ok(&db.url, &["db", "init"]);
    let c = db.client().await;
    background(&c, t0).await;
    job_history(&c, t0, shift).await;
    c.batch_execute("ANALYZE cost_events").await.unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_jobs_are_quiet_after_a_fresh_backfill_and_show_when_they_change() {
    let t0 = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
    let state = state_dir("usual");

    // The jobs at their usual minutes and size: nothing about them.
    let db = db_with(t0, Duration::zero()).await;
    let c = db.client().await;
    today(&c, t0, 1).await;
    let out = check(&db.url, &state);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let quiet = alerts_about(&out, &[&BATCH[..], &DIGEST[..]].concat());
    assert!(quiet.is_empty(), "{quiet:#?}\n{stderr}");

    // Twice the nightly batch: it shows.
    today(&c, t0, 2).await;
    let out = check(&db.url, &state);
    let doubled = alerts_about(&out, &BATCH);
    assert!(
        !doubled.is_empty(),
        "twice the batch shows: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(c);
    db.drop_db().await;

    // A history that ran both jobs 40 minutes earlier: now is a new minute.
    let db = db_with(t0, Duration::minutes(40)).await;
    let c = db.client().await;
    today(&c, t0, 1).await;
    let out = check(&db.url, &state);
    let batch = alerts_about(&out, &BATCH);
    let digest = alerts_about(&out, &DIGEST);
    assert!(
        !batch.is_empty(),
        "the batch at a new time shows: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !digest.is_empty(),
        "the digest at a new minute shows: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_the_shapes_once_after_its_first_poll() {
    use burnrate::model::{Dim, ShapeInbox, SourceMsg};
    use burnrate::source::{ConnectTarget, SourceControl, SourceOptions, run};
    use burnrate::store::StoreConfig;

    let t0 = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
    let db = db_with(t0, Duration::zero()).await;
    let mut opts = SourceOptions::new(&Default::default(), StoreConfig::default());
    let inbox = ShapeInbox::default();
    opts.shapes_to = Some(inbox.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let (control, handle) = SourceControl::new();
    let target = ConnectTarget::from_url(&db.url).unwrap();
    let task = tokio::spawn(run(target, opts, tx, control));
    // The dashboard's side: messages drained; the shapes arrive in the inbox once
    // the backfill and a poll are done.
    let (mut backfilled, mut shapes) = (false, Vec::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while shapes.is_empty() && tokio::time::Instant::now() < deadline {
        if let Ok(Some(msg)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), rx.recv()).await
        {
            backfilled |= matches!(msg, SourceMsg::Backfill { done: true, .. });
        }
        shapes = inbox.take();
    }
    assert!(backfilled, "the backfill comes first");
    let batch: Vec<_> = shapes
        .iter()
        .filter(|s| s.dim == Dim::Feature && s.name == BATCH[0])
        .collect();
    // One shape a night among the hours read: all of it in its own slots.
    assert!(batch.len() >= 20, "{} shapes of the batch", batch.len());
    for s in &batch {
        let total: f64 = s.slots.iter().sum();
        assert!((1.0..=36.0 + 1e-6).contains(&total), "{s:?}");
    }
    // chat's users spend $2.40 an hour each, summarize's $0.24.
    assert!(
        shapes
            .iter()
            .any(|s| s.dim == Dim::User && s.name == "chat_user_0")
    );
    assert!(
        shapes.iter().all(|s| s.name != "sum_user_0"),
        "a user spending under $1 an hour has no shape"
    );
    handle.shutdown();
    let _ = task.await;
    db.drop_db().await;
}
