//! `db init` and the column check at source start, against a real PostgreSQL.

mod common;
mod pg_common;

use burnrate::model::TailMode;
use burnrate::source::schema::{self, TableName};
use burnrate::source::{PgSource, SourceError};
use burnrate::store::StoreConfig;
use chrono::Utc;
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

const ADDED_TO_SEED: [&str; 9] = [
    "user_id",
    "model",
    "region",
    "tenant_id",
    "input_tokens",
    "output_tokens",
    "request_id",
    "id",
    "tx",
];

async fn seed_rows(c: &tokio_postgres::Client) {
    // The seed article's rows: a spread of days, features and exact costs.
    c.batch_execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, cost_usd) \
         SELECT now() - (i % 72) * interval '1 hour', 'f' || (i % 5), (i * 0.000137)::numeric \
         FROM generate_series(1, 500) AS i",
    )
    .await
    .unwrap();
}

async fn count_and_sum(c: &tokio_postgres::Client) -> (i64, String) {
    let r = c
        .query_one("SELECT count(*), sum(cost_usd)::text FROM cost_events", &[])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_init_upgrades_the_seed_table_without_losing_rows_and_is_idempotent() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE cost_events (timestamp timestamptz, feature_name text, cost_usd numeric)",
    )
    .await
    .unwrap();
    seed_rows(&c).await;
    let before = count_and_sum(&c).await;

    let report = schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    assert!(!report.created_table);
    assert_eq!(report.added_columns, ADDED_TO_SEED);
    assert_eq!(
        report.created_indexes,
        ["cost_events_tx_id_idx", "cost_events_timestamp_idx"]
    );
    assert!(
        report.to_string().contains("existing rows kept"),
        "{report}"
    );
    assert_eq!(count_and_sum(&c).await, before, "no row lost or changed");
    let r = c
        .query_one(
            "SELECT count(DISTINCT id), count(id), count(DISTINCT tx), count(tx) FROM cost_events",
            &[],
        )
        .await
        .unwrap();
    let (ids, id_rows, txs, tx_rows): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!((ids, id_rows), (500, 500), "every old row got its own id");
    assert_eq!((txs, tx_rows), (1, 500), "old rows share the upgrade's xid");

    let again = schema::init(&target(&db.url), TABLE)
        .await
        .expect("second db init");
    assert!(!again.changed(), "{again}");
    assert!(again.to_string().contains("up to date"));
    assert_eq!(count_and_sum(&c).await, before);

    // The upgraded table is read gap-free, old rows included, exactly.
    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::TxWatermark));
    let (tx, mut rx) = mpsc::channel(10_000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    insert(&c, "f1", 42, 1, 1).await;
    catch_up(&mut source, &tx, &c).await;
    seen.drain(&mut rx);
    assert_eq!(store_by_feature(&seen.store), ground_truth(&c).await);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_init_keeps_a_serial_id_and_a_schema_qualified_name_works() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE SCHEMA analytics; \
         CREATE TABLE analytics.cost_events (id serial, timestamp timestamptz, feature_name text, cost_usd numeric)",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO analytics.cost_events (timestamp, feature_name, cost_usd) VALUES (now(), 'x', 1.25)")
        .await
        .unwrap();
    let report = schema::init(&target(&db.url), "Analytics.Cost_Events")
        .await
        .expect("db init");
    assert_eq!(report.table, "analytics.cost_events");
    assert!(!report.added_columns.contains(&"id".to_string()));
    assert!(report.added_columns.contains(&"tx".to_string()));

    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.table = "analytics.cost_events".into();
    let mut source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    assert_eq!(source.mode(), Some(TailMode::TxWatermark));
    let (tx, mut rx) = mpsc::channel(1000);
    let mut seen = Collector::new(cfg);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    c.batch_execute("INSERT INTO analytics.cost_events (timestamp, feature_name, cost_usd) VALUES (now(), 'x', 0.75)")
        .await
        .unwrap();
    // The new row, read by an int4 id. The old row too when a transaction elsewhere
    // on the server (a parallel test) held the backfill's snapshot horizon below
    // the xid db init's ALTER stamped it with: the backfill then leaves it to the
    // tail. Either way each row counts once, as the totals below show.
    let read = catch_up(&mut source, &tx, &c).await;
    assert!((1..=2).contains(&read), "read with an int4 id: {read} rows");
    seen.drain(&mut rx);
    let by_feature = store_by_feature(&seen.store);
    assert_eq!(by_feature["x"].cost.to_string(), "2");
    assert_eq!(by_feature["x"].requests, 2);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_db_inits_serialise() {
    let db = TestDb::create().await;
    let t = target(&db.url);
    let (a, b) = tokio::join!(schema::init(&t, TABLE), schema::init(&t, TABLE));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(
        u8::from(a.created_table) + u8::from(b.created_table),
        1,
        "{a}\n{b}"
    );
    assert!(!a.changed() || !b.changed());
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_and_columns_name_the_fix() {
    let db = TestDb::create().await;
    let c = db.client().await;
    let cfg = StoreConfig::default();

    let err = PgSource::connect(target(&db.url), options(cfg))
        .await
        .err()
        .expect("no table");
    assert!(matches!(err, SourceError::TableMissing { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cost_events") && text.contains("burnrate db init"),
        "{text}"
    );

    c.batch_execute(
        "CREATE TABLE cost_events (timestamp timestamptz, feature_name text, id bigserial)",
    )
    .await
    .unwrap();
    let err = PgSource::connect(target(&db.url), options(cfg))
        .await
        .err()
        .expect("no cost column");
    let text = err.to_string();
    assert!(
        text.contains("cost_events")
            && text.contains("cost_usd")
            && text.contains("burnrate db init"),
        "{text}"
    );

    c.batch_execute(
        "DROP TABLE cost_events; CREATE TABLE cost_events (timestamp timestamp, cost_usd numeric)",
    )
    .await
    .unwrap();
    let err = PgSource::connect(target(&db.url), options(cfg))
        .await
        .err()
        .expect("naive timestamp");
    let text = err.to_string();
    assert!(
        text.contains("timestamp without time zone") && text.contains("ALTER TABLE"),
        "{text}"
    );

    c.batch_execute("DROP TABLE cost_events; CREATE TABLE cost_events (timestamp timestamptz, cost_usd numeric)")
        .await
        .unwrap();
    let err = PgSource::connect(target(&db.url), options(cfg))
        .await
        .err()
        .expect("no id");
    assert!(
        matches!(err, SourceError::ColumnMissing { ref column, .. } if column == "id"),
        "{err}"
    );

    // Names are validated before any SQL is built.
    assert!(TableName::parse("cost_events; DROP TABLE x").is_err());
    db.drop_db().await;
}

/// `db init --partitioned` over a plain table says plainly that it refuses and why.
#[tokio::test]
async fn partitioning_a_plain_table_is_refused_in_plain_words() {
    use burnrate::source::partitions;
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let err = partitions::init_partitioned(&target(&db.url), TABLE, Utc::now())
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.starts_with("`db init --partitioned` refuses table cost_events in ")
            && text.contains("it is a plain table (not partitioned)"),
        "{text}"
    );
    assert!(!text.contains("unexpected data"), "{text}");
    db.drop_db().await;
}

/// A role without CREATE on the schema is told to grant that, not SELECT.
#[tokio::test]
async fn db_init_without_create_on_the_schema_asks_for_create() {
    let db = TestDb::create().await;
    let c = db.client().await;
    let role = format!("{}_nocreate", db.name);
    c.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO {role}"
    ))
    .await
    .unwrap();
    let (_, rest) = db.url.split_once('@').unwrap();
    let url = format!("postgres://{role}@{rest}");
    let err = schema::init(&target(&url), "app.cost_events")
        .await
        .expect_err("no CREATE on schema app");
    c.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
    let text = err.to_string();
    assert!(
        matches!(err, SourceError::PermissionDenied { .. }),
        "{text}"
    );
    assert!(text.contains("GRANT CREATE ON SCHEMA app TO"), "{text}");
    assert!(!text.contains("GRANT SELECT"), "{text}");
    db.drop_db().await;
}
