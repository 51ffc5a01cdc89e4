//! `--tenant ID` (and `database.tenant`) scopes every query: the snapshot holds one
//! tenant's rows and names only, in the backfill and in the tail, in both tail modes,
//! and a map without a tenant column is refused with the fix.

mod common;

use std::process::{Command, Stdio};

use common::TestDb;
use serde_json::Value;

fn burnrate(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("burnrate-tenant-scope-state"),
        )
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run burnrate")
}

fn snapshot(url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["snapshot", "--json", "--window", "24h"];
    args.extend_from_slice(extra);
    let out = burnrate(url, &args);
    assert!(
        out.status.success(),
        "snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("snapshot prints JSON")
}

/// Two tenants with distinct names for everything, so a leak shows by name.
async fn fill(c: &tokio_postgres::Client, suffix: &str) {
    c.batch_execute(&format!(
        "INSERT INTO cost_events (timestamp, feature_name, user_id, model, region, tenant_id, input_tokens, output_tokens, cost_usd)
         SELECT now() - (i || ' minutes')::interval, 'acme_feature{suffix}', 'acme_user_' || (i % 7), 'gpt-4o', 'eu', 'acme', 100, 10, 0.012345
           FROM generate_series(1, 300) i;
         INSERT INTO cost_events (timestamp, feature_name, user_id, model, region, tenant_id, input_tokens, output_tokens, cost_usd)
         SELECT now() - (i || ' minutes')::interval, 'globex_secret{suffix}', 'globex_user_' || (i % 5), 'claude', 'us', 'globex', 50, 5, 1.5
           FROM generate_series(1, 200) i;"
    ))
    .await
    .expect("insert rows");
}

async fn acme_totals(c: &tokio_postgres::Client) -> (String, i64) {
    let r = c
        .query_one(
            "SELECT round(sum(cost_usd), 6)::text, count(*) FROM cost_events
              WHERE tenant_id = 'acme' AND timestamp >= date_trunc('hour', now()) - interval '23 hours'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn assert_only_acme(v: &Value, (cost, requests): &(String, i64)) {
    assert_eq!(
        v["totals"]["cost_usd"].as_str(),
        Some(cost.as_str()),
        "{v:#}"
    );
    assert_eq!(v["totals"]["requests"].as_i64(), Some(*requests));
    let text = v.to_string();
    assert!(
        !text.contains("globex"),
        "another tenant's names reached the snapshot: {text}"
    );
    let tenants: Vec<&str> = v["by_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_flag_scopes_backfill_and_tail_in_both_tail_modes() {
    let db = TestDb::create().await;
    let init = burnrate(&db.url, &["db", "init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let c = db.client().await;
    fill(&c, "").await;

    // The tx-watermark table (ours): the flag, and the config key.
    let v = snapshot(&db.url, &["--tenant", "acme"]);
    assert_only_acme(&v, &acme_totals(&c).await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("burnrate.toml");
    std::fs::write(&cfg, "[database]\ntenant = \"acme\"\n").unwrap();
    let v = snapshot(&db.url, &["--config", cfg.to_str().unwrap()]);
    assert_only_acme(&v, &acme_totals(&c).await);
    // Without the scope both tenants are there (the filter is ours, not the data's).
    let all = snapshot(&db.url, &[]);
    assert!(all.to_string().contains("globex"));

    // Rows committed while following are read by the tail through the same scope.
    let mut follow = common::Reaped(
        Command::new(env!("CARGO_BIN_EXE_burnrate"))
            .args([
                "snapshot", "--json", "--window", "24h", "--follow", "--tenant", "acme",
            ])
            .args(["--database-url", &db.url])
            .env_remove("BURNRATE_CONFIG")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_only_acme(&first, &acme_totals(&c).await);
    fill(&c, "_later").await;
    let want = acme_totals(&c).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = first;
    while last["totals"]["requests"].as_i64() != Some(want.1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail never caught up: {last:#}"
        );
        let line = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        last = serde_json::from_str(&line).unwrap();
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_only_acme(&last, &want);

    // A table without our tx column is tailed by id overlap: the same scope.
    c.batch_execute("ALTER TABLE cost_events DROP COLUMN tx")
        .await
        .unwrap();
    let v = snapshot(&db.url, &["--tenant", "acme"]);
    assert_eq!(v["source"]["mode"].as_str(), Some("id_overlap"), "{v:#}");
    assert_only_acme(&v, &acme_totals(&c).await);
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_flag_on_a_table_without_a_tenant_column_says_how_to_fix_it() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE cost_events (id bigserial PRIMARY KEY, timestamp timestamptz NOT NULL DEFAULT now(),
                                   feature_name text, cost_usd numeric)",
    )
    .await
    .unwrap();
    let out = burnrate(
        &db.url,
        &["snapshot", "--json", "--preset", "seed", "--tenant", "acme"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tenant") && err.contains("source.columns.tenant"),
        "{err}"
    );
    drop(c);
    db.drop_db().await;
}
