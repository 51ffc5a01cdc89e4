//! `snapshot --json` names the most expensive requests behind an anomaly (their
//! request ids), read from PostgreSQL for the first few anomalies.

mod common;

use std::process::{Command, Stdio};

use common::TestDb;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_in_the_snapshot_carries_the_request_ids_behind_it() {
    let db = TestDb::create().await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_burnrate"))
            .args(args)
            .args(["--database-url", &db.url])
            .env(
                "XDG_STATE_HOME",
                std::env::temp_dir().join("burnrate-anomaly-requests-state"),
            )
            .env_remove("BURNRATE_CONFIG")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run burnrate")
    };
    let init = run(&["db", "init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let c = db.client().await;
    // 14 days of support_qa at $1 every 10 minutes from ordinary users, then in the
    // last 5 minutes a loop from one user: 60 requests of $2 each.
    c.batch_execute(
        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, input_tokens, output_tokens, cost_usd, request_id)
         SELECT now() - (i * 10 || ' minutes')::interval - interval '6 minutes', 'support_qa', 'user_' || (i % 40), 'gpt-4o', 'acme', 500, 50, 1, 'req_steady_' || i
           FROM generate_series(0, 14 * 24 * 6) i;
         INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, input_tokens, output_tokens, cost_usd, request_id)
         SELECT now() - (i * 4 || ' seconds')::interval, 'support_qa', 'user_4812', 'gpt-4o', 'acme', 9000, 900, 2 + i / 1000.0, 'req_loop_' || i
           FROM generate_series(1, 60) i;",
    )
    .await
    .expect("insert rows");
    let out = run(&["snapshot", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let anomalies = v["anomalies"].as_array().unwrap();
    let spike = anomalies
        .iter()
        .find(|a| a["name"] == "support_qa" && a["rule"].as_str().unwrap().starts_with("spike_"))
        .unwrap_or_else(|| panic!("no spike on support_qa: {v:#}"));
    let requests = spike["top_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{spike:#}");
    // The most expensive first: the loop's last three (2.060, 2.059, 2.058).
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["req_loop_60", "req_loop_59", "req_loop_58"]);
    assert_eq!(requests[0]["cost_usd"], "2.060000");
    assert_eq!(requests[0]["user"], "user_4812");
    assert_eq!(requests[0]["model"], "gpt-4o");
    assert_eq!(requests[0]["input_tokens"], 9000);
    drop(c);
    db.drop_db().await;
}
