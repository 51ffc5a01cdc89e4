//! `db init --rls`: the database, not our WHERE clause, keeps tenants apart. A
//! tenant's login reads only its own rows (directly and through `burnrate
//! snapshot`, which has no tenant filter at all), and writers are not locked out.

mod common;

use std::process::Command;

use common::{TestDb, admin_url, connect};
use serde_json::Value;

fn burnrate(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("burnrate-rls-state"),
        )
        .env_remove("BURNRATE_CONFIG")
        .output()
        .expect("run burnrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            text
        },
    )
}

/// The test database's URL for another user.
fn url_as(db: &TestDb, user: &str) -> String {
    let rest = db
        .url
        .split_once('@')
        .map(|(_, r)| r)
        .expect("URL has a host part");
    format!("postgres://{user}@{rest}")
}

#[tokio::test]
async fn a_tenant_login_sees_only_its_tenant() {
    let db = TestDb::create().await;
    let (ok, out) = burnrate(&db.url, &["db", "init", "--rls"]);
    assert!(ok, "{out}");
    assert!(out.contains("row-level security is on"), "{out}");
    let (ok, out) = burnrate(&db.url, &["db", "init", "--rls"]);
    assert!(ok, "idempotent: {out}");

    let admin = db.client().await;
    admin
        .batch_execute(
            "INSERT INTO cost_events (feature_name, tenant_id, user_id, model, cost_usd, input_tokens, output_tokens) VALUES
              ('chat', 'acme', 'a1', 'm', 1.25, 10, 1),
              ('chat', 'acme', 'a2', 'm', 2.50, 10, 1),
              ('secret_feature', 'globex', 'g_ceo', 'm', 1000, 10, 1),
              ('chat', NULL, 'nobody', 'm', 7, 10, 1)",
        )
        .await
        .unwrap();

    let suffix = db.name.trim_start_matches("burnrate_t_");
    let acme = format!("acme_mon_{suffix}");
    let stranger = format!("nomap_mon_{suffix}");
    let writer = format!("writer_{suffix}");
    let root = connect(&admin_url()).await;
    for (role, monitor) in [(&acme, true), (&stranger, true), (&writer, false)] {
        let member = if monitor {
            " IN ROLE burnrate_tenant_monitor"
        } else {
            ""
        };
        root.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN{member}; GRANT CONNECT ON DATABASE {} TO {role}",
            db.name
        ))
        .await
        .unwrap();
    }
    admin
        .batch_execute(&format!(
            "INSERT INTO burnrate_tenant_logins VALUES ('{acme}', 'acme');
             GRANT SELECT, INSERT ON cost_events TO {writer};
             GRANT USAGE ON SEQUENCE cost_events_id_seq TO {writer};"
        ))
        .await
        .unwrap();

    // Straight SQL, no filter of ours: the server hands out acme's rows only.
    let c = connect(&url_as(&db, &acme)).await;
    let r = c
        .query_one(
            "SELECT count(*), sum(cost_usd)::text, array_agg(DISTINCT tenant_id) FROM cost_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 2);
    assert_eq!(r.get::<_, String>(1), "3.75");
    assert_eq!(r.get::<_, Vec<String>>(2), vec!["acme".to_string()]);
    assert!(
        c.execute(
            "INSERT INTO cost_events (feature_name, cost_usd) VALUES ('x', 1)",
            &[]
        )
        .await
        .is_err(),
        "monitors cannot write"
    );

    // burnrate itself, as that login: nothing of globex's in any breakdown.
    let (ok, out) = burnrate(&url_as(&db, &acme), &["snapshot", "--json"]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("globex") && !out.contains("secret_feature") && !out.contains("g_ceo"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["cost_usd"], "3.750000");
    assert_eq!(v["by_tenant"].as_array().unwrap().len(), 1);

    // A monitor login without a tenant mapping sees nothing at all.
    let c = connect(&url_as(&db, &stranger)).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM cost_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // A writer that is not the owner still writes and reads every row.
    let w = connect(&url_as(&db, &writer)).await;
    w.execute(
        "INSERT INTO cost_events (feature_name, tenant_id, cost_usd) VALUES ('chat', 'globex', 1)",
        &[],
    )
    .await
    .unwrap();
    let n: i64 = w
        .query_one("SELECT count(*) FROM cost_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);

    drop((c, w, admin));
    db.drop_db().await;
    for role in [&acme, &stranger, &writer] {
        root.batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .unwrap();
    }
}
