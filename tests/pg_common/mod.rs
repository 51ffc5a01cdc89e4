//! Helpers shared by the PostgreSQL source tests: writers, a store fed from the
//! source's messages, and SQL ground truth to compare it with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burnrate::model::{Agg, Connection, Dim, NONE_NAME, SourceMsg, SourceStatus};
use burnrate::money::Money;
use burnrate::source::{ConnectTarget, PgSource, SourceOptions};
use burnrate::store::{Store, StoreConfig};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_postgres::Client;

pub const TABLE: &str = "cost_events";

/// A throwaway database with an empty `cost_events` (as `burnrate db init` makes
/// it), and a client of it.
pub async fn fresh_table() -> (crate::common::TestDb, Client) {
    let db = crate::common::TestDb::create().await;
    burnrate::source::schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let client = db.client().await;
    (db, client)
}

pub fn target(url: &str) -> ConnectTarget {
    ConnectTarget::from_url(url).expect("test URL parses")
}

pub fn options(store: StoreConfig) -> SourceOptions {
    SourceOptions {
        table: TABLE.into(),
        refresh_interval: Duration::from_millis(100),
        statement_timeout: Duration::from_secs(30),
        tail_batch_rows: 50_000,
        id_gap_settle: Duration::from_secs(60),
        store,
        map: Default::default(),
        tenant: None,
        notify_channel: None,
        rollup: false,
        rollup_every: Duration::from_secs(60),
        // Small pages, so every test's backfill reads chunks in several pages.
        backfill_page_groups: 50,
        primary: None,
        shapes_to: None,
        month_first: false,
    }
}

/// A cost with up to 12 decimals, as numeric text, from picodollars.
pub fn cost_text(picos: i64) -> String {
    format!(
        "{}.{:012}",
        picos / 1_000_000_000_000,
        picos % 1_000_000_000_000
    )
}

/// Inserts one row (in whatever transaction the client is in).
pub async fn insert(
    c: &impl tokio_postgres::GenericClient,
    feature: &str,
    picos: i64,
    input: i64,
    output: i64,
) {
    c.execute(
        "INSERT INTO cost_events (feature_name, user_id, model, cost_usd, input_tokens, output_tokens) \
         VALUES ($1, 'u1', 'gpt-x', $2::text::numeric, $3, $4)",
        &[&feature, &cost_text(picos), &input, &output],
    )
    .await
    .expect("insert");
}

pub async fn insert_at(
    c: &impl tokio_postgres::GenericClient,
    at: DateTime<Utc>,
    feature: &str,
    cost: &str,
) {
    c.execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, cost_usd, input_tokens, output_tokens) \
         VALUES ($1, $2, $3::text::numeric, 1, 2)",
        &[&at, &feature, &cost],
    )
    .await
    .expect("insert_at");
}

/// Per feature: exact sums over the valid rows, from SQL.
pub async fn ground_truth(c: &Client) -> BTreeMap<String, Agg> {
    let rows = c
        .query(
            "SELECT coalesce(feature_name, ''), sum(cost_usd)::text, count(*), \
                    coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8 \
             FROM cost_events \
             WHERE \"timestamp\" IS NOT NULL AND cost_usd < 'Infinity' AND cost_usd > '-Infinity' \
               AND coalesce(input_tokens, 0) >= 0 AND coalesce(output_tokens, 0) >= 0 \
             GROUP BY 1",
            &[],
        )
        .await
        .expect("ground truth");
    named_aggs(&rows)
}

/// Rows of (name, cost text, requests, input tokens, output tokens) as exact
/// aggregates by name; an empty name is "(none)", as the store shows it.
pub fn named_aggs(rows: &[tokio_postgres::Row]) -> BTreeMap<String, Agg> {
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let name = if name.is_empty() {
                NONE_NAME.to_string()
            } else {
                name
            };
            let cost: String = r.get(1);
            let agg = Agg {
                cost: cost.parse::<Money>().expect("sum parses"),
                requests: r.get::<_, i64>(2) as u64,
                input_tokens: r.get::<_, i64>(3) as u64,
                output_tokens: r.get::<_, i64>(4) as u64,
                computed: 0,
            };
            (name, agg)
        })
        .collect()
}

pub fn store_by_feature(store: &Store) -> BTreeMap<String, Agg> {
    store
        .by_dim(Dim::Feature, i64::MIN..=i64::MAX)
        .into_iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(id, a)| (store.name(Dim::Feature, id).to_string(), a))
        .collect()
}

/// What a receiver of source messages saw.
pub struct Collector {
    pub store: Store,
    pub statuses: Vec<SourceStatus>,
    pub backfill_messages: usize,
    pub backfill_done: usize,
    pub tail_messages: usize,
    /// The month's sum the backfill sent first (`SourceMsg::MonthSoFar`).
    pub month_so_far: Option<(chrono::DateTime<Utc>, Agg)>,
    /// The store's total of that month once the history was in.
    pub month_at_backfill_end: Option<Agg>,
}

impl Collector {
    pub fn new(cfg: StoreConfig) -> Collector {
        Collector {
            store: Store::new(cfg, Utc::now()),
            statuses: Vec::new(),
            backfill_messages: 0,
            backfill_done: 0,
            tail_messages: 0,
            month_so_far: None,
            month_at_backfill_end: None,
        }
    }

    pub fn apply(&mut self, msg: SourceMsg) {
        match msg {
            SourceMsg::Status(s) => self.statuses.push(s),
            SourceMsg::MonthSoFar { month_start, agg } => {
                assert!(
                    self.backfill_messages == 0,
                    "the month's sum comes before the history"
                );
                self.month_so_far = Some((month_start, agg));
            }
            SourceMsg::Backfill { batch, done } => {
                self.backfill_messages += 1;
                self.backfill_done += usize::from(done);
                self.store.apply(&batch, Utc::now());
                if let (true, Some((start, _))) = (done, self.month_so_far) {
                    let from = self.store.hour_index(start);
                    self.month_at_backfill_end = Some(self.store.total(from..=i64::MAX));
                }
            }
            SourceMsg::Tail { batch, .. } => {
                self.tail_messages += 1;
                self.store.apply(&batch, Utc::now());
            }
        }
    }

    /// Applies everything already waiting in the channel.
    pub fn drain(&mut self, rx: &mut mpsc::Receiver<SourceMsg>) {
        while let Ok(msg) = rx.try_recv() {
            self.apply(msg);
        }
    }

    pub fn requests(&self) -> u64 {
        self.store.total(i64::MIN..=i64::MAX).requests
    }

    pub fn saw_disconnected(&self) -> bool {
        self.statuses
            .iter()
            .any(|s| matches!(s.connection, Connection::Disconnected { .. }))
    }

    pub fn max_lag(&self) -> i64 {
        self.statuses
            .iter()
            .filter_map(|s| s.watermark_lag_secs)
            .max()
            .unwrap_or(0)
    }
}

/// A collector fed by a background task, for tests that run the source concurrently.
pub fn spawn_collector(
    cfg: StoreConfig,
    mut rx: mpsc::Receiver<SourceMsg>,
) -> (Arc<Mutex<Collector>>, tokio::task::JoinHandle<()>) {
    let shared = Arc::new(Mutex::new(Collector::new(cfg)));
    let c = shared.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            c.lock().expect("collector lock").apply(msg);
        }
    });
    (shared, task)
}

/// Waits until `cond` holds on the collector, or panics after `secs`.
pub async fn wait_for(
    shared: &Arc<Mutex<Collector>>,
    secs: u64,
    what: &str,
    cond: impl Fn(&Collector) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond(&shared.lock().expect("collector lock")) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends the PostgreSQL sessions of burnrate (application_name) in this database.
/// Cuts a held backfill's connection (asserting it had one), then gives the server
/// a moment to end the session before the test writes on.
pub async fn cut_held_backfill(admin: &Client, db: &str) {
    assert!(kill_source_connections(admin, db).await >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

pub async fn kill_source_connections(admin: &Client, db: &str) -> i64 {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'burnrate' AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await
        .expect("terminate");
    rows.len() as i64
}

/// The watermark is cluster-wide: another test's open transaction holds it back for
/// a moment. Waits until every transaction that started before this call has ended.
pub async fn settle(c: &Client) {
    let xmax: String = c
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .await
        .expect("xmax")
        .get(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let passed: bool = c
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
                &[&xmax],
            )
            .await
            .expect("xmin")
            .get(0);
        if passed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watermark did not pass {xmax} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until every transaction that started before this call is read; returns the
/// rows read.
pub async fn catch_up(source: &mut PgSource, tx: &mpsc::Sender<SourceMsg>, c: &Client) -> u64 {
    settle(c).await;
    source.poll(tx).await.expect("poll").rows
}

/// A backfill running on a one-slot channel, so it cannot run ahead of the test:
/// started and held after its first data message, for a test to cut the connection
/// and write rows before letting it fail.
pub struct HeldBackfill {
    task: tokio::task::JoinHandle<(PgSource, Result<(), burnrate::source::SourceError>)>,
    tx: mpsc::Sender<SourceMsg>,
    rx: mpsc::Receiver<SourceMsg>,
}

impl HeldBackfill {
    /// Starts the backfill and returns once `seen` has applied its first chunk.
    pub async fn start(
        mut source: PgSource,
        now: DateTime<Utc>,
        seen: &mut Collector,
    ) -> HeldBackfill {
        let (tx, mut rx) = mpsc::channel(1);
        let task = {
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = source.backfill(&tx, now).await;
                (source, r)
            })
        };
        loop {
            let msg = rx.recv().await.expect("message");
            let is_data = matches!(msg, SourceMsg::Backfill { .. });
            seen.apply(msg);
            if is_data {
                break;
            }
        }
        HeldBackfill { task, tx, rx }
    }

    /// Lets the backfill run on to its failure (the test cut its connection),
    /// applying what it still sends; asserts it failed as a lost connection and is
    /// not done, and hands the source back to be finished on a new connection.
    pub async fn interrupted(self, seen: &mut Collector) -> PgSource {
        let HeldBackfill { task, tx, mut rx } = self;
        let (source, result) = {
            let drain = async {
                while let Some(m) = rx.recv().await {
                    seen.apply(m);
                }
            };
            tokio::select! {
                r = task => r.unwrap(),
                _ = drain => unreachable!("the sender is still held"),
            }
        };
        drop(tx);
        seen.drain(&mut rx);
        let err = result.expect_err("the backfill was interrupted");
        assert!(
            matches!(
                err,
                burnrate::source::SourceError::ConnectionLost { .. }
                    | burnrate::source::SourceError::Query { .. }
            ),
            "{err}"
        );
        assert_eq!(seen.backfill_done, 0);
        assert!(!source.backfill_done());
        source
    }
}
