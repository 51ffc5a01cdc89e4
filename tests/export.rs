//! `burnrate export`: per-group totals equal SQL to the micro-dollar and the
//! dashboard's month-to-date; CSV via a CSV library with hostile names defused.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::Utc;
use common::TestDb;
use serde_json::Value;

/// The test reads "this month" several times, in SQL and in two processes: a run
/// across the end of a month would compare two months. Starts after it instead.
async fn clear_of_the_month_end() {
    use chrono::{Datelike, Months, Utc};
    let now = Utc::now();
    let first = now.date_naive().with_day(1).unwrap() + Months::new(1);
    let next_month = first.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let left = next_month - now;
    if left < chrono::Duration::minutes(2) {
        tokio::time::sleep((left + chrono::Duration::seconds(1)).to_std().unwrap()).await;
    }
}

fn burnrate(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url])
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("burnrate-export-state"),
        )
        .env_remove("BURNRATE_CONFIG")
        .output()
        .expect("run burnrate");
    assert!(
        out.status.success(),
        "burnrate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn export_equals_sql_and_the_dashboard() {
    clear_of_the_month_end().await;
    let db = TestDb::create().await;
    let url = db.url.clone();
    burnrate(&url, &["db", "init"]);
    let c = db.client().await;
    // Rows in the first minutes of this month (in the month whatever today is), with
    // hostile and missing names, a rejected NaN, and a row of last month.
    c.batch_execute(
        "INSERT INTO cost_events (timestamp, tenant_id, feature_name, model, user_id, cost_usd, input_tokens, output_tokens) VALUES
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '1 minutes', 'acme', 'chat', 'gpt-4o', 'u1', 0.000001234567, 100, 10),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '2 minutes', 'acme', 'chat', 'gpt-4o', 'u2', 1.1, 200, 20),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '3 minutes', 'acme', 'search', 'mini', 'u1', 2.000000000001, 300, 30),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '4 minutes', 'globex', '=HYPERLINK(\"http://x\")', 'mini', 'u3', 3.3, 1, 1),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '5 minutes', NULL, 'chat', 'mini', 'u4', -0.5, 5, 5),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' + interval '6 minutes', 'acme', 'chat', 'mini', 'u5', 'NaN', 5, 5),
          (date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' - interval '1 second', 'acme', 'chat', 'mini', 'u6', 100, 1, 1)",
    )
    .await
    .unwrap();
    let month: String = c
        .query_one("SELECT to_char(now() at time zone 'UTC', 'YYYY-MM')", &[])
        .await
        .unwrap()
        .get(0);

    let csv_text = burnrate(
        &url,
        &[
            "export",
            "--month",
            &month,
            "--by",
            "tenant,feature",
            "--format",
            "csv",
        ],
    );
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "month",
            "tenant",
            "feature",
            "cost_usd",
            "requests",
            "input_tokens",
            "output_tokens"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let (total_row, records) = records.split_last().expect("a grand-total row");
    assert_eq!(
        (&total_row[0], &total_row[1], &total_row[2]),
        (format!("{month} total").as_str(), "", ""),
        "{total_row:?}"
    );
    let exported: BTreeMap<(String, String), (String, i64)> = records
        .iter()
        .map(|r| {
            (
                (r[1].to_string(), r[2].to_string()),
                (r[3].to_string(), r[4].parse().unwrap()),
            )
        })
        .collect();
    let truth: BTreeMap<(String, String), (String, i64)> = c
        .query(
            "SELECT coalesce(nullif(tenant_id, ''), '(none)'), feature_name, round(sum(cost_usd), 6)::text, count(*)
             FROM cost_events
             WHERE timestamp >= date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
               AND cost_usd <> 'NaN'
             GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let feature: String = r.get(1);
            let feature = if feature.starts_with('=') { format!("'{feature}") } else { feature };
            ((r.get(0), feature), (r.get(2), r.get(3)))
        })
        .collect();
    assert_eq!(exported, truth, "CSV equals SQL per group");
    assert!(
        exported.contains_key(&("globex".into(), "'=HYPERLINK(\"http://x\")".into())),
        "formula defused"
    );
    let keys: Vec<_> = exported.keys().cloned().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "stable ordering");

    // JSON, one tenant, to a file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acme.json");
    burnrate(
        &url,
        &[
            "export",
            "--month",
            &month,
            "--by",
            "feature,model",
            "--format",
            "json",
            "--tenant",
            "acme",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        v["totals"]["cost_usd"], "3.100001",
        "acme: 0.000001234567 + 1.1 + 2.000000000001"
    );
    assert_eq!(v["totals"]["requests"], 3);
    assert!(
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["feature"] != "=HYPERLINK(\"http://x\")")
    );

    // The whole month's export equals the dashboard's month-to-date.
    let all = burnrate(
        &url,
        &[
            "export", "--month", &month, "--by", "tenant", "--format", "json",
        ],
    );
    let all: Value = serde_json::from_str(&all).unwrap();
    let snap: Value = serde_json::from_str(&burnrate(&url, &["snapshot", "--json"])).unwrap();
    assert_eq!(
        all["totals"]["cost_usd"], snap["month"]["spend_usd"],
        "export equals the dashboard's month"
    );
    assert_eq!(all["totals"]["cost_usd"], "5.900001");
    // The CSV's grand-total row says the same.
    assert_eq!(&total_row[3], "5.900001");

    // Any range by day, both days included: the last day of the previous month
    // holds only the row one second before this month.
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap();
    let eve = first.pred_opt().unwrap().to_string();
    let range = burnrate(
        &url,
        &[
            "export", "--from", &eve, "--to", &eve, "--by", "tenant", "--format", "json",
        ],
    );
    let range: Value = serde_json::from_str(&range).unwrap();
    assert_eq!(range["totals"]["cost_usd"], "100.000000", "{range:#}");
    assert_eq!(range["month"], format!("{eve}..{eve}"));
    // From the eve through the first of the month: both.
    let two = burnrate(
        &url,
        &[
            "export",
            "--from",
            &eve,
            "--to",
            &first.to_string(),
            "--by",
            "tenant",
            "--format",
            "json",
        ],
    );
    let two: Value = serde_json::from_str(&two).unwrap();
    assert_eq!(two["totals"]["cost_usd"], "105.900001");

    drop(c);
    db.drop_db().await;
}

/// Rows the dashboard rejects (three days ahead, NaN, negative tokens) stay out of
/// the export too, and NULL, empty and literal `(none)` tenants are one group, as on
/// the dashboard; a feature named `(total)` is a group like any other.
#[tokio::test]
async fn export_counts_what_the_dashboard_counts_and_groups_names_alike() {
    let db = TestDb::create().await;
    let url = db.url.clone();
    burnrate(&url, &["db", "init"]);
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO cost_events (timestamp, tenant_id, feature_name, cost_usd, input_tokens, output_tokens) VALUES
          (now() - interval '10 minutes', 'acme', 'chat', 1.5, 1, 1),
          (now() - interval '10 minutes', NULL, 'chat', 0.25, 1, 1),
          (now() - interval '9 minutes', '', 'chat', 0.125, 1, 1),
          (now() - interval '8 minutes', '(none)', '(total)', 2, 1, 1),
          (now() + interval '3 days', 'acme', 'chat', 1000, 1, 1),
          (now() - interval '7 minutes', 'acme', 'chat', 'NaN', 1, 1),
          (now() - interval '6 minutes', 'acme', 'chat', 500, -1, 1)",
    )
    .await
    .unwrap();
    let today = Utc::now().date_naive();
    let (from, to) = (
        (today - chrono::Duration::days(2)).to_string(),
        (today + chrono::Duration::days(5)).to_string(),
    );
    let export = |by: &'static str| {
        let (url, from, to) = (url.clone(), from.clone(), to.clone());
        move || -> Value {
            serde_json::from_str(&burnrate(
                &url,
                &[
                    "export", "--from", &from, "--to", &to, "--by", by, "--format", "json",
                ],
            ))
            .unwrap()
        }
    };
    let by_tenant = export("tenant")();
    let snap: Value =
        serde_json::from_str(&burnrate(&url, &["snapshot", "--json", "--window", "24h"])).unwrap();
    assert_eq!(snap["window"], "24h", "the window as asked");
    assert_eq!(snap["source"]["rejected"], 3, "{:#}", snap["source"]);
    assert_eq!(by_tenant["totals"]["cost_usd"], "3.875000", "{by_tenant:#}");
    assert_eq!(by_tenant["totals"]["cost_usd"], snap["totals"]["cost_usd"]);
    assert_eq!(by_tenant["totals"]["requests"], snap["totals"]["requests"]);
    let as_map = |rows: &Value, name: &str| -> BTreeMap<String, String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g[name].as_str().unwrap().to_string(),
                    g["cost_usd"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let exported = as_map(&by_tenant["groups"], "tenant");
    assert_eq!(
        exported,
        BTreeMap::from([
            ("(none)".to_string(), "2.375000".to_string()),
            ("acme".to_string(), "1.500000".to_string()),
        ])
    );
    assert_eq!(
        by_tenant["groups"].as_array().unwrap().len(),
        2,
        "one (none) group"
    );
    let dashboard: BTreeMap<String, String> = snap["by_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let cost: burnrate::money::Money = b["cost_usd"].as_str().unwrap().parse().unwrap();
            (b["name"].as_str().unwrap().to_string(), cost.to_string_6())
        })
        .collect();
    assert_eq!(exported, dashboard, "export groups equal the dashboard's");

    // CSV by feature: `(total)` is a group; the total row is the one named "... total".
    let csv_text = burnrate(
        &url,
        &["export", "--from", &from, "--to", &to, "--by", "feature"],
    );
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv_text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    let feature_rows: Vec<(&str, &str)> = rows.iter().map(|r| (&r[1], &r[2])).collect();
    assert_eq!(
        feature_rows,
        [
            ("(total)", "2.000000"),
            ("chat", "1.875000"),
            ("", "3.875000")
        ],
        "{csv_text}"
    );
    assert_eq!(&rows[2][0], format!("{from}..{to} total").as_str());
    db.drop_db().await;
}
