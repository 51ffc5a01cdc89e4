//! Table names come from the config, so they are validated and quoted, never pasted:
//! a name built to inject SQL is just an odd table name, end to end.

mod common;

use std::process::Command;

use common::TestDb;
use serde_json::Value;

fn burnrate(url: &str, config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url, "--config", config.to_str().unwrap()])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("burnrate-hostile-state"),
        )
        .output()
        .expect("run burnrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn injection_shaped_table_names_stay_names() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE victims (x int); INSERT INTO victims VALUES (1)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    // In TOML: table = "\"cost\"\"; DROP TABLE victims; --\""; in SQL a quoted name.
    std::fs::write(
        &config,
        "[database]\ntable = '\"cost\"\"; DROP TABLE victims; --\"'\n",
    )
    .unwrap();

    let (ok, out) = burnrate(&db.url, &config, &["db", "init"]);
    assert!(ok, "{out}");
    let (ok, out) = burnrate(
        &db.url,
        &config,
        &[
            "simulate",
            "--backfill-days",
            "1",
            "--backfill-rate",
            "0.05",
            "--quiet",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = burnrate(&db.url, &config, &["snapshot", "--json", "--window", "2d"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    let truth: String = c
        .query_one(
            "SELECT round(sum(cost_usd), 6)::text FROM \"cost\"\"; DROP TABLE victims; --\"",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v["totals"]["cost_usd"], truth);
    let victims: i64 = c
        .query_one("SELECT count(*) FROM victims", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 1, "the victim table is untouched");

    // Unquoted names must be plain identifiers; anything else is refused before SQL.
    std::fs::write(
        &config,
        "[database]\ntable = 'cost_events; DROP TABLE victims'\n",
    )
    .unwrap();
    let (ok, out) = burnrate(&db.url, &config, &["snapshot", "--json"]);
    assert!(
        !ok && out.contains("invalid table name") && out.contains("double quotes"),
        "{out}"
    );

    drop(c);
    db.drop_db().await;
}
