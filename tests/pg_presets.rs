//! Presets against tables made by other products, with those products' own DDL and
//! rows shaped as they write them: `snapshot --json` equals SQL on the raw table, the
//! keyset tail counts late batches once, and bad maps are refused clearly.

mod common;
mod pg_common;
mod presets_common;

use std::collections::BTreeMap;

use burnrate::model::{Dim, TailMode};
use burnrate::source::PgSource;
use burnrate::source::columns::{MapSpec, Preset, SourceConfig};
use burnrate::store::StoreConfig;
use chrono::{Duration, Utc};
use common::TestDb;
use pg_common::*;
use presets_common::*;
use serde_json::Value;
use tokio::sync::mpsc;

/// Per name from the snapshot's breakdown: (cost text, requests).
fn breakdown(v: &Value, key: &str) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["cost_usd"].as_str().unwrap().to_string(),
                b["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The same from SQL: name expression over the table, NULL or empty as "(none)".
async fn sql_breakdown(
    c: &tokio_postgres::Client,
    table: &str,
    name: &str,
    cost: &str,
) -> Vec<(String, String, u64)> {
    let rows = c
        .query(
            &format!(
                "SELECT coalesce(nullif({name}, ''), '(none)'), round(sum({cost}), 6)::text, count(*) \
                 FROM {table} GROUP BY 1"
            ),
            &[],
        )
        .await
        .expect("sql breakdown");
    let mut out: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_snapshot_equals_sql_on_the_spend_log() {
    let db = TestDb::create().await;
    let c = db.client().await;
    // The database's own time zone is not UTC: naive startTime must still read as UTC.
    c.batch_execute(&format!(
        "ALTER DATABASE {} SET timezone = 'America/New_York'",
        db.name
    ))
    .await
    .unwrap();
    c.batch_execute(LITELLM_DDL).await.unwrap();
    let now = Utc::now();
    for i in 0..400u32 {
        litellm_row(&c, i, now - Duration::seconds(i64::from(i) * 613)).await;
    }

    let (code, out, err) = burnrate(&db.url, "", &["snapshot", "--json", "--preset", "litellm"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    let t = r#""LiteLLM_SpendLogs""#;
    let total: (String, i64, i64, i64) = {
        let r = c
            .query_one(
                &format!(
                    "SELECT round(sum(spend::numeric), 6)::text, count(*), sum(prompt_tokens)::int8, \
                     sum(completion_tokens)::int8 FROM {t}"
                ),
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert_eq!(v["totals"]["cost_usd"], total.0);
    assert_eq!(v["totals"]["requests"], total.1);
    assert_eq!(v["totals"]["input_tokens"], total.2);
    assert_eq!(v["totals"]["output_tokens"], total.3);
    assert_eq!(v["source"]["mode"], "keyset_overlap");
    assert_eq!(v["source"]["rejected"], 0);

    let cost = "spend::numeric";
    assert_eq!(
        breakdown(&v, "by_feature"),
        sql_breakdown(&c, t, "request_tags ->> 0", cost).await,
        "feature = the first tag; none for NULL or []"
    );
    assert_eq!(
        breakdown(&v, "by_tenant"),
        sql_breakdown(&c, t, "team_id", cost).await
    );
    assert_eq!(
        breakdown(&v, "by_model"),
        sql_breakdown(&c, t, "model", cost).await,
        "mixed-case model names kept as written"
    );
    assert_eq!(
        breakdown(&v, "by_region"),
        vec![("(none)".to_string(), total.0.clone(), total.1 as u64)],
        "LiteLLM has no region: everything under (none)"
    );

    // A column map on top of the preset: the feature from the JSON metadata.
    let (code, out, err) = burnrate(
        &db.url,
        "[source]\npreset = \"litellm\"\n[source.columns]\nfeature = \"metadata -> 'feature'\"\n",
        &["snapshot", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    assert_eq!(
        breakdown(&v, "by_feature"),
        sql_breakdown(&c, t, "metadata ->> 'feature'", cost).await
    );
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_tail_counts_late_batches_once() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(LITELLM_DDL).await.unwrap();
    let now = Utc::now();
    for i in 0..50u32 {
        litellm_row(&c, i, now - Duration::seconds(i64::from(i) * 30)).await;
    }
    let cfg = StoreConfig::default();
    let map = MapSpec::build(&SourceConfig::default(), Some(Preset::Litellm), "unused").unwrap();
    let opts = options(cfg).with_map(map);
    let mut source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::KeysetOverlap));
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "rows of the backfill's overlap window are not read twice"
    );

    // LiteLLM writes its spend logs in batches, up to a minute late.
    let batch_start = Utc::now() - Duration::seconds(55);
    for i in 100..120u32 {
        litellm_row(&c, i, batch_start + Duration::seconds(i64::from(i - 100))).await;
    }
    let stats = source.poll(&tx).await.expect("poll");
    assert_eq!(stats.rows, 20, "a late batch inside the overlap is read");
    for i in 120..125u32 {
        litellm_row(&c, i, batch_start - Duration::seconds(5)).await;
    }
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 5);
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "nothing twice"
    );

    seen.drain(&mut rx);
    assert_eq!(store_by_feature(&seen.store), litellm_by_feature(&c).await);
    assert!(
        seen.statuses
            .iter()
            .any(|s| s.mode == TailMode::KeysetOverlap && s.mode.label().contains("best effort")),
        "the status says which guarantee holds"
    );
    // Names from columns the table lacks show as (none).
    let regions: Vec<String> = seen
        .store
        .by_dim(Dim::Region, i64::MIN..=i64::MAX)
        .into_keys()
        .map(|id| seen.store.name(Dim::Region, id).to_string())
        .collect();
    assert_eq!(regions, ["(none)"]);
    drop(c);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_preset_reads_the_articles_table_in_place() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(SEED_DDL).await.unwrap();
    let now = Utc::now();
    for i in 0..120i64 {
        let feature: Option<String> = match i % 5 {
            0 => None,
            1 => Some(String::new()),
            2 => Some("Support_QA".into()),
            _ => Some(format!("feature_{}", i % 3)),
        };
        c.execute(
            "INSERT INTO cost_events (timestamp, feature_name, cost_usd) \
             VALUES (($1::timestamptz AT TIME ZONE 'UTC'), $2, $3::text::numeric)",
            &[
                &(now - Duration::minutes(i * 37)),
                &feature,
                &format!("0.{:06}", (i * 7919) % 1_000_000),
            ],
        )
        .await
        .unwrap();
    }
    let columns_before: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'cost_events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let (code, out, err) = burnrate(&db.url, "", &["snapshot", "--json", "--preset", "seed"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    let truth: (String, i64) = {
        let r = c
            .query_one(
                "SELECT round(sum(cost_usd), 6)::text, count(*) FROM cost_events",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(v["totals"]["cost_usd"], truth.0);
    assert_eq!(v["totals"]["requests"], truth.1);
    assert_eq!(v["source"]["mode"], "id_overlap");
    // The article's table has no user, model, tenant or region column: said.
    assert_eq!(
        v["source"]["absent_names"],
        serde_json::json!(["user", "model", "tenant", "region"])
    );
    assert_eq!(
        breakdown(&v, "by_feature"),
        sql_breakdown(&c, "cost_events", "feature_name", "cost_usd").await
    );
    assert_eq!(
        breakdown(&v, "by_user"),
        vec![("(none)".to_string(), truth.0.clone(), truth.1 as u64)]
    );
    let columns_after: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'cost_events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns_before, columns_after, "read-only: no schema change");

    // The burnrate preset (the default) still insists on its own schema.
    let (code, out, err) = burnrate(&db.url, "", &["snapshot", "--json"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("timestamp without time zone"), "{err}");
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn hostile_and_mistyped_maps_are_refused_clearly() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(LITELLM_DDL).await.unwrap();
    c.batch_execute("CREATE TABLE victims (x int); INSERT INTO victims VALUES (1)")
        .await
        .unwrap();
    let lite = "[source]\npreset = \"litellm\"\n[source.columns]\n";

    // SQL in a map is refused when the config is read (exit code 2), naming the key.
    for (key, value) in [
        ("cost", "spend); DROP TABLE victims; --"),
        ("feature", "metadata ->> 'a' || (SELECT 1)"),
        ("user", "coalesce(end_user, 'x')"),
        ("model", "model::text"),
        ("feature", "metadata -> 'it''s' -> 'back\\slash'"),
        ("cost", "metadata -> 'cost'"),
    ] {
        // A JSON string is a TOML basic string, escapes and all.
        let config = format!("{lite}{key} = {}\n", serde_json::to_string(value).unwrap());
        let (code, out, err) = burnrate(&db.url, &config, &["snapshot", "--json"]);
        assert_eq!(code, 2, "{config}: {out}{err}");
        assert!(err.contains(&format!("source.columns.{key}")), "{err}");
    }

    // Mistyped names: the column that is not there, and the ones that are.
    let (code, _, err) = burnrate(
        &db.url,
        &format!("{lite}user = \"end_usr\"\n"),
        &["snapshot", "--json"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("source.columns.user")
            && err.contains("no column end_usr")
            && err.contains("end_user (text)")
            && err.contains("\"startTime\" (timestamp(3) without time zone)"),
        "{err}"
    );
    let (code, _, err) = burnrate(
        &db.url,
        &format!("{lite}timestamp = \"starttime\"\n"),
        &["snapshot", "--json"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("did you mean \"startTime\""), "{err}");
    // The wrong type: expected and found.
    let (code, _, err) = burnrate(
        &db.url,
        &format!("{lite}cost = \"model\"\n"),
        &["snapshot", "--json"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("has type text") && err.contains("expected numeric, double precision"),
        "{err}"
    );
    let (code, _, err) = burnrate(
        &db.url,
        &format!("{lite}feature = \"metadata\"\n"),
        &["snapshot", "--json"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("needs a key path"), "{err}");
    // An unknown preset is refused by the CLI.
    let (code, _, err) = burnrate(&db.url, "", &["snapshot", "--json", "--preset", "prisma"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("burnrate, seed, litellm"), "{err}");

    let victims: i64 = c
        .query_one("SELECT count(*) FROM victims", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 1);
    drop(c);
    db.drop_db().await;
}

#[tokio::test]
async fn the_overlap_is_configurable_and_bounded() {
    let db = TestDb::create().await;
    let (code, _, err) = burnrate(
        &db.url,
        "[source]\noverlap = \"0s\"\n",
        &["snapshot", "--json"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("source.overlap"), "{err}");
    db.drop_db().await;
}

const PRICES: &str = r#"
[prices]
"gpt-4o" = [
  { from = "2024-05-13", input_per_mtok = "5.00", output_per_mtok = "15.00" },
  { from = "2024-08-06", input_per_mtok = "2.50", output_per_mtok = "10.00" },
  { from = "2099-01-01", input_per_mtok = "99", output_per_mtok = "99" },
]
"GPT-4o-Mini" = [{ from = "2024-07-18", input_per_mtok = "0.15", output_per_mtok = "0.60" }]
"#;

#[tokio::test]
async fn prices_fill_in_zero_and_missing_costs_exactly() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(LITELLM_DDL).await.unwrap();
    let now = Utc::now();
    for i in 0..90u32 {
        litellm_row(&c, i, now - Duration::seconds(i64::from(i) * 301)).await;
    }
    let (code, out, err) = burnrate(
        &db.url,
        PRICES,
        &["snapshot", "--json", "--preset", "litellm"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    let priced = "CASE model WHEN 'gpt-4o' THEN prompt_tokens * 0.0000025 + completion_tokens * 0.00001 \
                  WHEN 'GPT-4o-Mini' THEN prompt_tokens * 0.00000015 + completion_tokens * 0.0000006 END";
    let r = c
        .query_one(
            &format!(
                "SELECT round(sum(CASE WHEN spend <> 0 THEN spend::numeric ELSE coalesce({priced}, 0) END), 6)::text, \
                 count(*) FILTER (WHERE spend = 0 AND {priced} IS NOT NULL), \
                 count(*) FILTER (WHERE spend = 0) FROM \"LiteLLM_SpendLogs\""
            ),
            &[],
        )
        .await
        .unwrap();
    let (truth, computed, zero): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert!(
        computed > 0 && zero > computed,
        "some zero costs priced, some not"
    );
    assert_eq!(v["totals"]["cost_usd"], truth);
    assert_eq!(v["source"]["computed_cost_rows"], computed);
    // Per feature and per model: how many requests' costs came from the price list.
    for (key, name) in [("by_feature", "request_tags ->> 0"), ("by_model", "model")] {
        let rows = c
            .query(
                &format!(
                    "SELECT coalesce(nullif({name}, ''), '(none)'), \
                     count(*) FILTER (WHERE spend = 0 AND {priced} IS NOT NULL) \
                     FROM \"LiteLLM_SpendLogs\" GROUP BY 1"
                ),
                &[],
            )
            .await
            .unwrap();
        let sql: BTreeMap<String, u64> = rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        let json: BTreeMap<String, u64> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["computed_cost_requests"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(json, sql, "{key}");
        assert!(json.values().any(|n| *n > 0) && json.values().any(|n| *n == 0));
    }

    // A table with no cost column at all: every cost from the price list; rows of an
    // unpriced model have no cost and are rejected as such.
    c.batch_execute(
        "CREATE TABLE llm_calls (id bigserial PRIMARY KEY, at timestamptz NOT NULL, \
         model text, tokens_in int, tokens_out int)",
    )
    .await
    .unwrap();
    for i in 0..40i64 {
        let model = ["gpt-4o", "GPT-4o-Mini", "llama-3"][(i % 3) as usize];
        c.execute(
            "INSERT INTO llm_calls (at, model, tokens_in, tokens_out) VALUES ($1, $2, $3, $4)",
            &[
                &(now - Duration::minutes(i * 7)),
                &model,
                &((i * 37 % 5000) as i32),
                &((i * 11 % 700) as i32),
            ],
        )
        .await
        .unwrap();
    }
    let config = format!(
        "[source]\npreset = \"seed\"\ntable = \"llm_calls\"\n[source.columns]\ntimestamp = \"at\"\n\
         cost = \"\"\nmodel = \"model\"\ninput_tokens = \"tokens_in\"\noutput_tokens = \"tokens_out\"\n{PRICES}"
    );
    let (code, out, err) = burnrate(&db.url, &config, &["snapshot", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("snapshot JSON");
    let priced = priced
        .replace("prompt_tokens", "tokens_in")
        .replace("completion_tokens", "tokens_out");
    let r = c
        .query_one(
            &format!(
                "SELECT round(sum({priced}), 6)::text, count({priced}), count(*) - count({priced}) FROM llm_calls"
            ),
            &[],
        )
        .await
        .unwrap();
    let (truth, computed, unpriced): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(v["totals"]["cost_usd"], truth);
    assert_eq!(v["totals"]["requests"], computed);
    assert_eq!(v["source"]["computed_cost_rows"], computed);
    assert_eq!(v["source"]["rejected_by_reason"]["null_cost"], unpriced);

    // The tail prices rows as they come, the same way.
    let cfg = burnrate::config::Config::from_toml(PRICES, std::path::Path::new("p.toml")).unwrap();
    let map = MapSpec::build(&SourceConfig::default(), Some(Preset::Litellm), "unused")
        .unwrap()
        .with_prices(cfg.prices);
    let store_cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(store_cfg).with_map(map))
        .await
        .expect("connect");
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(store_cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    let before = source.computed_cost_rows();
    assert_eq!(before as i64, computed_litellm(&c).await);
    for i in 900..918u32 {
        litellm_row(&c, i, Utc::now() - Duration::seconds(2)).await;
    }
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 18);
    assert_eq!(
        source.computed_cost_rows() as i64,
        computed_litellm(&c).await
    );
    assert!(
        source.computed_cost_rows() > before,
        "new zero-cost rows were priced"
    );
    seen.drain(&mut rx);
    assert_eq!(
        seen.store.total(i64::MIN..=i64::MAX).computed as i64,
        computed_litellm(&c).await,
        "the backfill's groups and the tail's rows carry their computed counts"
    );
    let total = seen.store.total(i64::MIN..=i64::MAX).cost;
    let truth: String = c
        .query_one(
            &format!(
                "SELECT sum(CASE WHEN spend <> 0 THEN spend::numeric ELSE coalesce({LITE_PRICED}, 0) END)::text \
                 FROM \"LiteLLM_SpendLogs\""
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total,
        truth.parse::<burnrate::money::Money>().unwrap(),
        "exact to the picodollar"
    );
    drop(c);
    db.drop_db().await;
}

const LITE_PRICED: &str = "CASE model WHEN 'gpt-4o' THEN prompt_tokens * 0.0000025 + completion_tokens * 0.00001 \
                           WHEN 'GPT-4o-Mini' THEN prompt_tokens * 0.00000015 + completion_tokens * 0.0000006 END";

async fn computed_litellm(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        &format!("SELECT count(*) FROM \"LiteLLM_SpendLogs\" WHERE spend = 0 AND {LITE_PRICED} IS NOT NULL"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_map_over_a_table_without_ids_counts_keyless_rows_too() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE SCHEMA \"Billing\"; CREATE TABLE \"Billing\".\"LlmCalls\" (\"At\" timestamptz NOT NULL, \
         \"Cost\" numeric, \"Rid\" text, meta jsonb); CREATE INDEX ON \"Billing\".\"LlmCalls\" (\"At\")",
    )
    .await
    .unwrap();
    let insert = |rid: Option<&'static str>, feature: &'static str| {
        let c = &c;
        async move {
            c.execute(
                "INSERT INTO \"Billing\".\"LlmCalls\" VALUES (now(), 0.125, $1, jsonb_build_object('f', $2::text))",
                &[&rid, &feature],
            )
            .await
            .unwrap();
        }
    };
    insert(Some("r1"), "chat").await;
    insert(None, "chat").await;
    let src: SourceConfig = toml::from_str(
        "table = '\"Billing\".\"LlmCalls\"'\n[columns]\ntimestamp = '\"At\"'\ncost = '\"Cost\"'\n\
         request_id = '\"Rid\"'\nfeature = \"meta -> 'f'\"\n",
    )
    .unwrap();
    let map = MapSpec::build(&src, Some(Preset::Seed), "unused").unwrap();
    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg).with_map(map))
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::KeysetOverlap));
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    assert_eq!(source.poll(&tx).await.expect("poll").rows, 0);
    insert(None, "search").await;
    insert(None, "search").await;
    insert(Some("r2"), "search").await;
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        3,
        "rows without a key are rows too"
    );
    assert_eq!(
        source.poll(&tx).await.expect("poll").rows,
        0,
        "and are read once"
    );
    seen.drain(&mut rx);
    let by_feature = store_by_feature(&seen.store);
    assert_eq!(by_feature["chat"].requests, 2);
    assert_eq!(by_feature["search"].requests, 3);
    assert_eq!(by_feature["search"].cost, "0.375".parse().unwrap());
    drop(c);
    db.drop_db().await;
}
