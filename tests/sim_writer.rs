//! The synthetic-event writer against a real PostgreSQL: COPY and INSERT write
//! exactly what the generator drew (to the picodollar), hostile text round-trips,
//! and `simulate` writes what its summary says.

mod common;

use std::borrow::Cow;
use std::time::Duration as StdDuration;

use burnrate::cli::{SimulateArgs, Spike};
use burnrate::commands::simulate::{self, SIMULATE_USERS, SimulateOptions};
use burnrate::money::Money;
use burnrate::sim::{Generator, GeneratorConfig, SimEvent, SpikeSpec};
use burnrate::source::schema::TableName;
use burnrate::source::writer::{WriteStats, copy_events, insert_events};
use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use tokio_postgres::Client;

const DDL: &str = r#"
    id bigserial PRIMARY KEY,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    feature_name text,
    cost_usd numeric,
    user_id text,
    model text,
    region text,
    tenant_id text,
    input_tokens bigint,
    output_tokens bigint,
    request_id text,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id()
"#;

async fn create_table(client: &Client, quoted: &str) {
    client
        .batch_execute(&format!("CREATE TABLE {quoted} ({DDL})"))
        .await
        .expect("create table");
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn events(seed: u64, from: &str, minutes: i64, rate: f64) -> Vec<SimEvent> {
    let mut g = Generator::new(GeneratorConfig {
        seed,
        base_rate: rate,
        ..Default::default()
    })
    .unwrap();
    let from = utc(from);
    g.events_between(from, from + Duration::minutes(minutes))
        .collect()
}

/// (rows, exact sum of cost, input tokens, output tokens) as the database sees them.
async fn totals(client: &Client, table: &str) -> (i64, Money, i64, i64) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(sum(cost_usd), 0)::text, coalesce(sum(input_tokens), 0)::int8, \
                 coalesce(sum(output_tokens), 0)::int8 FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    let sum: String = row.get(1);
    (row.get(0), sum.parse().unwrap(), row.get(2), row.get(3))
}

fn expected(events: &[SimEvent]) -> (i64, Money, i64, i64) {
    (
        events.len() as i64,
        events.iter().map(|e| e.cost).sum(),
        events.iter().map(|e| e.input_tokens as i64).sum(),
        events.iter().map(|e| e.output_tokens as i64).sum(),
    )
}

#[tokio::test]
async fn copy_writes_every_event_exactly() {
    let db = TestDb::create().await;
    let client = db.client().await;
    create_table(&client, "cost_events").await;
    let table = TableName::parse("cost_events").unwrap();
    let evs = events(1, "2026-03-11T12:00:00Z", 120, 10.0);
    assert!(evs.len() > 50_000, "{} events", evs.len());

    let stats = copy_events(&client, &table, evs.clone()).await.unwrap();
    let want = expected(&evs);
    assert_eq!(
        stats,
        WriteStats {
            rows: want.0 as u64,
            cost: want.1
        }
    );
    assert_eq!(totals(&client, "cost_events").await, want);
    // The cost has sub-micro-dollar digits and they all arrived.
    assert_ne!(
        want.1.picos() % 1_000_000,
        0,
        "a sum that tests picodollars"
    );

    // Row by row: timestamps to the microsecond, every column in its place.
    let rows = client
        .query(
            "SELECT \"timestamp\", feature_name, cost_usd::text, user_id, model, region, tenant_id, \
             input_tokens, output_tokens FROM cost_events WHERE request_id = $1",
            &[&evs[17].request_id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let e = &evs[17];
    assert_eq!(r.get::<_, DateTime<Utc>>(0), e.at);
    assert_eq!(r.get::<_, String>(1), e.feature);
    assert_eq!(r.get::<_, String>(2).parse::<Money>().unwrap(), e.cost);
    assert_eq!(
        (
            r.get::<_, String>(3),
            r.get::<_, String>(4),
            r.get::<_, String>(5),
            r.get::<_, String>(6)
        ),
        (
            e.user.clone(),
            e.model.to_string(),
            e.region.to_string(),
            e.tenant.to_string()
        )
    );
    assert_eq!(
        (r.get::<_, i64>(7), r.get::<_, i64>(8)),
        (e.input_tokens as i64, e.output_tokens as i64)
    );
    // id and tx took their defaults: one COPY, one transaction.
    let txs: i64 = client
        .query_one("SELECT count(DISTINCT tx) FROM cost_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(txs, 1);
    db.drop_db().await;
}

#[tokio::test]
async fn insert_writes_a_batch_in_one_transaction_exactly() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    create_table(&client, "cost_events").await;
    let table = TableName::parse("cost_events").unwrap();
    // More than one INSERT statement's worth (1,000 rows each).
    let evs = events(2, "2026-03-11T14:00:00Z", 5, 10.0);
    assert!(evs.len() > 2_000, "{} events", evs.len());

    let stats = insert_events(&mut client, &table, &evs).await.unwrap();
    assert_eq!(stats.rows, evs.len() as u64);
    assert_eq!(totals(&client, "cost_events").await, expected(&evs));
    let txs: i64 = client
        .query_one("SELECT count(DISTINCT tx) FROM cost_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(txs, 1, "one transaction per batch");

    // A second batch adds exactly its own rows.
    let more = events(3, "2026-03-11T14:05:00Z", 1, 10.0);
    insert_events(&mut client, &table, &more).await.unwrap();
    let all: Vec<SimEvent> = evs.iter().chain(&more).cloned().collect();
    assert_eq!(totals(&client, "cost_events").await, expected(&all));
    assert_eq!(
        insert_events(&mut client, &table, &[]).await.unwrap(),
        WriteStats::default()
    );
    db.drop_db().await;
}

const HOSTILE: &str = "we'ird \"quoted\" \ttab\nnewline\r\ncrlf \\backslash \\N \\. \\\\ ünïcødé 日本語 🚀 '); DROP TABLE cost_events; --";

fn hostile_event(request_id: &str) -> SimEvent {
    SimEvent {
        at: utc("2026-03-11T14:00:00.123456Z"),
        feature: Cow::Owned(HOSTILE.to_string()),
        user: format!("user\t{HOSTILE}"),
        model: Cow::Borrowed("gpt-4o"),
        tenant: Cow::Owned("ac\\me".into()),
        region: Cow::Owned("eu\nwest".into()),
        input_tokens: 1234,
        output_tokens: 56,
        cost: "0.000000000001".parse().unwrap(),
        request_id: request_id.to_string(),
    }
}

#[tokio::test]
async fn hostile_text_round_trips_through_copy_and_insert() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    create_table(&client, "cost_events").await;
    let table = TableName::parse("cost_events").unwrap();

    copy_events(&client, &table, vec![hostile_event("via_copy")])
        .await
        .unwrap();
    insert_events(&mut client, &table, &[hostile_event("via_insert")])
        .await
        .unwrap();
    for id in ["via_copy", "via_insert"] {
        let r = client
            .query_one(
                "SELECT feature_name, user_id, tenant_id, region, cost_usd::text, \"timestamp\" \
                 FROM cost_events WHERE request_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        let e = hostile_event(id);
        assert_eq!(r.get::<_, String>(0), HOSTILE, "{id}");
        assert_eq!(r.get::<_, String>(1), e.user, "{id}");
        assert_eq!(r.get::<_, String>(2), "ac\\me", "{id}");
        assert_eq!(r.get::<_, String>(3), "eu\nwest", "{id}");
        assert_eq!(r.get::<_, String>(4), "0.000000000001", "{id}");
        assert_eq!(r.get::<_, DateTime<Utc>>(5), e.at, "{id}");
    }

    // NUL cannot be stored: refused, and the COPY or INSERT it was part of writes nothing.
    let mut bad = hostile_event("nul");
    bad.feature = Cow::Owned("a\0b".into());
    let good = hostile_event("with_bad");
    assert!(
        copy_events(&client, &table, vec![good.clone(), bad.clone()])
            .await
            .is_err()
    );
    assert!(
        insert_events(&mut client, &table, &[good, bad])
            .await
            .is_err()
    );
    assert_eq!(totals(&client, "cost_events").await.0, 2);
    // The connection is still usable after an aborted COPY.
    copy_events(&client, &table, vec![hostile_event("after")])
        .await
        .unwrap();
    assert_eq!(totals(&client, "cost_events").await.0, 3);
    db.drop_db().await;
}

#[tokio::test]
async fn schema_qualified_quoted_table_names_work() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    client
        .batch_execute(r#"CREATE SCHEMA "Sim Data""#)
        .await
        .unwrap();
    create_table(&client, r#""Sim Data"."Cost ""Events""""#).await;
    let table = TableName::parse(r#""Sim Data"."Cost ""Events""""#).unwrap();
    let evs = events(4, "2026-03-11T14:00:00Z", 2, 5.0);
    copy_events(&client, &table, evs[..evs.len() / 2].to_vec())
        .await
        .unwrap();
    insert_events(&mut client, &table, &evs[evs.len() / 2..])
        .await
        .unwrap();
    assert_eq!(
        totals(&client, r#""Sim Data"."Cost ""Events""""#).await,
        expected(&evs)
    );
    // A missing table is an error that names it.
    let missing = TableName::parse("nope").unwrap();
    let err = copy_events(&client, &missing, evs.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    db.drop_db().await;
}

#[tokio::test]
async fn simulate_writes_history_then_live_traffic_with_the_spike() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    create_table(&client, "public.cost_events").await;
    let args = SimulateArgs {
        backfill_days: 1,
        rate: 40.0,
        duration: Some(StdDuration::from_millis(2_500)),
        seed: 7,
        spike: Some(Spike {
            feature: "support_qa".into(),
            factor: 10.0,
        }),
        backfill_rate: Some(0.5),
        flat: true,
        quiet: true,
    };
    let now = Utc::now();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let summary = simulate::execute(
        &args,
        &mut client,
        "public.cost_events",
        SimulateOptions {
            now,
            progress: false,
            stop,
        },
    )
    .await
    .unwrap();
    assert!(!summary.interrupted);
    // ~0.5/s over a day of history, shaped by the daily and weekly rhythm (only
    // the live traffic is flat): a Saturday evening's last day holds about half a
    // weekday's. ~40/s (+ the spike) for 2.5 s of live traffic.
    let expected: f64 = (0..24 * 60)
        .map(|m| 0.5 * 60.0 * burnrate::sim::rhythm(now - Duration::seconds(m * 60 + 30)))
        .sum();
    let rows = summary.backfill.rows as f64;
    assert!(
        (0.6 * expected..1.5 * expected).contains(&rows),
        "{rows} history rows, {expected:.0} expected by the rhythm: {summary:?}"
    );
    assert!(summary.live.rows > 50, "{summary:?}");
    let total = summary.total();
    let (rows, cost, _, _) = totals(&client, "cost_events").await;
    assert_eq!((rows as u64, cost), (total.rows, total.cost));

    let (history_rows, span_hours): (i64, f64) = {
        let r = client
            .query_one(
                "SELECT count(*), extract(epoch FROM max(\"timestamp\") - min(\"timestamp\"))::float8 / 3600 \
                 FROM cost_events WHERE \"timestamp\" < $1",
                &[&now],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(history_rows as u64, summary.backfill.rows);
    assert!(span_hours > 23.0, "history spans {span_hours} h");

    // The runaway: live support_qa traffic is mostly one user on one model.
    let target = Generator::new(GeneratorConfig {
        seed: 7,
        users: SIMULATE_USERS,
        spike: Some(SpikeSpec {
            feature: "support_qa".into(),
            factor: 10.0,
            from: now,
        }),
        ..Default::default()
    })
    .unwrap();
    let target = target.spike_target().unwrap();
    let r = client
        .query_one(
            "SELECT count(*) FILTER (WHERE user_id = $2 AND model = $3), count(*) \
             FROM cost_events WHERE \"timestamp\" >= $1 AND feature_name = 'support_qa'",
            &[&now, &target.user, &target.model],
        )
        .await
        .unwrap();
    let (theirs, all): (i64, i64) = (r.get(0), r.get(1));
    assert!(
        all > 20 && theirs as f64 / all as f64 > 0.7,
        "{theirs} of {all} live support_qa rows"
    );
    // No spike in the history.
    let r = client
        .query_one(
            "SELECT count(*) FROM cost_events WHERE \"timestamp\" < $1 AND user_id = $2 AND model = $3 \
             AND feature_name = 'support_qa'",
            &[&now, &target.user, &target.model],
        )
        .await
        .unwrap();
    assert!(r.get::<_, i64>(0) < 50);
    db.drop_db().await;
}

#[tokio::test]
async fn simulate_stops_on_request_and_rejects_bad_options() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    create_table(&client, "cost_events").await;
    let args = SimulateArgs {
        backfill_days: 0,
        rate: 10.0,
        duration: None,
        seed: 1,
        spike: None,
        backfill_rate: Some(5.0),
        flat: true,
        quiet: true,
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(StdDuration::from_millis(1_200)).await;
        let _ = stop_tx.send(true);
    });
    let opts = SimulateOptions {
        now: Utc::now(),
        progress: false,
        stop,
    };
    let summary = tokio::time::timeout(
        StdDuration::from_secs(10),
        simulate::execute(&args, &mut client, "cost_events", opts),
    )
    .await
    .expect("stops promptly")
    .unwrap();
    assert!(summary.interrupted);
    assert_eq!(
        totals(&client, "cost_events").await.0 as u64,
        summary.live.rows
    );

    let (_tx, stop) = tokio::sync::watch::channel(false);
    let bad_spike = SimulateArgs {
        spike: Some(Spike {
            feature: "nope".into(),
            factor: 2.0,
        }),
        ..args.clone()
    };
    let opts = SimulateOptions {
        now: Utc::now(),
        progress: false,
        stop: stop.clone(),
    };
    let err = simulate::execute(&bad_spike, &mut client, "cost_events", opts)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("support_qa"), "{err:#}");
    let opts = SimulateOptions {
        now: Utc::now(),
        progress: false,
        stop,
    };
    let err = simulate::execute(&args, &mut client, "bad name!", opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad name!"), "{err}");
    db.drop_db().await;
}
