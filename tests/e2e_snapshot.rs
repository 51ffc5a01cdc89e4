//! End to end, through the real binary: a database filled by `burnrate simulate`
//! while other writers commit out of order (one transaction held open for seconds,
//! some rolled back); `snapshot --json` and `snapshot --json --follow` must then
//! equal SQL to the micro-dollar, in total and per feature, model and tenant.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TestDb;
use serde_json::Value;

fn burnrate(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(args)
        .args(["--database-url", url])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("burnrate-e2e-state"),
        )
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(url: &str, args: &[&str]) -> String {
    let out = burnrate(url, args).output().expect("run burnrate");
    assert!(
        out.status.success(),
        "burnrate {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// name -> (cost with 6 decimals, requests, input tokens, output tokens)
type Groups = BTreeMap<String, (String, i64, i64, i64)>;

async fn sql_groups(c: &tokio_postgres::Client, column: &str, from: DateTime<Utc>) -> Groups {
    let sql = format!(
        "SELECT coalesce(nullif({column}, ''), '(none)'), round(sum(cost_usd), 6)::text, count(*), \
         coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint \
         FROM cost_events WHERE timestamp >= $1 GROUP BY 1"
    );
    c.query(&sql, &[&from])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

fn json_groups(v: &Value, key: &str) -> Groups {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"))
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                (
                    g["cost_usd"].as_str().unwrap().to_string(),
                    g["requests"].as_i64().unwrap(),
                    g["input_tokens"].as_i64().unwrap(),
                    g["output_tokens"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

async fn sql_totals(c: &tokio_postgres::Client, from: DateTime<Utc>) -> (String, i64) {
    let r = c
        .query_one(
            "SELECT coalesce(round(sum(cost_usd), 6), 0)::text, count(*) FROM cost_events WHERE timestamp >= $1",
            &[&from],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn window_start(v: &Value) -> DateTime<Utc> {
    v["window_start"].as_str().unwrap().parse().unwrap()
}

async fn assert_equals_sql(c: &tokio_postgres::Client, v: &Value) {
    let from = window_start(v);
    let (cost, requests) = sql_totals(c, from).await;
    assert_eq!(v["totals"]["cost_usd"], cost, "total cost");
    assert_eq!(v["totals"]["requests"], requests, "total requests");
    for (key, column) in [
        ("by_feature", "feature_name"),
        ("by_model", "model"),
        ("by_tenant", "tenant_id"),
    ] {
        assert_eq!(
            json_groups(v, key),
            sql_groups(c, column, from).await,
            "{key} equals SQL"
        );
    }
}

/// Reads JSON Lines from a `--follow` child on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_matches_sql_with_out_of_order_writers() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    run_ok(&url, &["db", "init"]);
    run_ok(
        &url,
        &[
            "simulate",
            "--backfill-days",
            "3",
            "--backfill-rate",
            "0.3",
            "--seed",
            "7",
            "--quiet",
        ],
    );

    let mut follow = common::Reaped(
        burnrate(&url, &["snapshot", "--json", "--follow", "--window", "7d"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut follow);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a first JSON line");
    let first: Value = serde_json::from_str(&first).expect("each line is one JSON object");
    assert_eq!(first["source"]["mode"], "tx_watermark");

    // Live simulated traffic with a runaway, while hand-made transactions commit
    // out of order: one held open 3 s, one rolled back, one committing at once.
    let live = burnrate(
        &url,
        &[
            "simulate",
            "--rate",
            "100",
            "--duration",
            "4s",
            "--seed",
            "8",
            "--spike",
            "support_qa:6",
            "--quiet",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut slow = db.client().await;
    let mut rolled_back = db.client().await;
    let fast = db.client().await;
    let insert = "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, cost_usd, input_tokens, output_tokens) \
                  VALUES (now() - $1::text::interval, $2, 'writer', 'gpt-4o', 'acme', 'eu-west-1', $3::text::numeric, 100, 10)";
    let slow_tx = slow.transaction().await.unwrap();
    slow_tx
        .execute(insert, &[&"0 hours", &"held_open", &"1.000000000001"])
        .await
        .unwrap();
    let rb = rolled_back.transaction().await.unwrap();
    rb.execute(insert, &[&"0 hours", &"rolled_back", &"999"])
        .await
        .unwrap();
    fast.execute(insert, &[&"0 hours", &"fast", &"0.333333333333"])
        .await
        .unwrap();
    // A late event: committed now, happened five hours ago.
    fast.execute(insert, &[&"5 hours", &"late", &"2.5"])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    rb.rollback().await.unwrap();
    slow_tx.commit().await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let mut live = live;
        live.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "live simulate failed");

    let c = db.client().await;
    // --follow converges to SQL exactly after the writers are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut converged = None;
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) else {
            continue;
        };
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        let (cost, requests) = sql_totals(&c, window_start(&v)).await;
        if v["totals"]["cost_usd"] == cost && v["totals"]["requests"] == requests {
            converged = Some(v);
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let followed = converged.expect("snapshot --follow caught up with SQL within 60 s");
    assert_equals_sql(&c, &followed).await;
    let names: Vec<String> = json_groups(&followed, "by_feature").into_keys().collect();
    assert!(
        names.contains(&"held_open".to_string()) && names.contains(&"late".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"rolled_back".to_string()),
        "rolled-back rows never count"
    );

    // A one-shot snapshot from scratch agrees too.
    let out = run_ok(
        &url,
        &["snapshot", "--json", "--window", "30d", "--top", "5"],
    );
    let v: Value = serde_json::from_str(&out).expect("snapshot prints one JSON document");
    assert_equals_sql(&c, &v).await;
    assert_eq!(v["by_user"].as_array().unwrap().len(), 5);
    for key in ["month", "anomalies", "source"] {
        assert!(!v[key].is_null(), "{key}");
    }
    let money = v["totals"]["cost_usd"].as_str().unwrap();
    assert_eq!(
        money.split('.').nth(1).map(str::len),
        Some(6),
        "money has exactly 6 decimals: {money}"
    );

    drop((slow, rolled_back, fast, c));
    db.drop_db().await;
}
