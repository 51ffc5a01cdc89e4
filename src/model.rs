//! The data that flows from a source into the store: facts (aggregated or single
//! rows), the counts of rows read and rejected, and the source's health.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::money::Money;

/// The dimensions every cost event is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    #[default]
    Feature,
    User,
    Model,
    Tenant,
    Region,
}

impl Dim {
    pub const ALL: [Dim; 5] = [
        Dim::Feature,
        Dim::User,
        Dim::Model,
        Dim::Tenant,
        Dim::Region,
    ];

    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Dim::Feature => "feature",
            Dim::User => "user",
            Dim::Model => "model",
            Dim::Tenant => "tenant",
            Dim::Region => "region",
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a name is shown as when the column is NULL or empty.
pub const NONE_NAME: &str = "(none)";

/// Additive measures of a set of events. Every field sums exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Agg {
    pub cost: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `requests`, those whose cost was computed from the price list (`[prices]`)
    /// because the table logged none or zero: the views flag such costs.
    pub computed: u64,
}

impl Agg {
    pub fn one(cost: Money, input_tokens: u64, output_tokens: u64) -> Self {
        Agg {
            cost,
            requests: 1,
            input_tokens,
            output_tokens,
            computed: 0,
        }
    }
    pub fn add(&mut self, o: &Agg) {
        self.cost += o.cost;
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.computed += o.computed;
    }
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.cost.is_zero()
    }
    pub fn cost_per_request(&self) -> Option<Money> {
        self.cost.div_count(self.requests)
    }
    /// Cost per 1,000 tokens.
    pub fn cost_per_1k_tokens(&self) -> Option<Money> {
        let t = self.tokens();
        if t == 0 {
            None
        } else {
            Some(Money::from_picos(self.cost.picos() * 1000 / t as i128))
        }
    }
}

impl std::ops::AddAssign<&Agg> for Agg {
    fn add_assign(&mut self, o: &Agg) {
        self.add(o)
    }
}

/// One row, or one server-side group of rows, as it leaves the source.
///
/// `at` is the event timestamp for a single row, or the start of the group's bucket
/// for aggregated backfill (an hour or a minute, aligned as the store aligns them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub at: DateTime<Utc>,
    /// Names indexed by `Dim::index()`; empty means NULL/empty in the source.
    pub names: [String; 5],
    pub agg: Agg,
}

/// A total of one name of one dimension (or of everything, `dim` None) over the
/// hour starting at `at`; a user's is over the coarse hours of the billing day
/// starting at `at` (see `Store::detail_floor`).
#[derive(Debug, Clone, PartialEq)]
pub struct DimFact {
    pub at: DateTime<Utc>,
    pub dim: Option<Dim>,
    /// Empty means NULL/empty in the source.
    pub name: String,
    pub agg: Agg,
}

/// One (feature, user) pair's spend over the hour starting at `at` (names empty
/// for NULL in the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFact {
    pub at: DateTime<Utc>,
    pub feature: String,
    pub user: String,
    pub cost: Money,
}

impl Fact {
    pub fn name(&self, dim: Dim) -> &str {
        &self.names[dim.index()]
    }
}

/// A cost at or beyond this many dollars in one row (either sign) is rejected as
/// `cost_out_of_range`: no single request costs a trillion dollars, and such a row
/// would otherwise make a server-side sum unreadable and poison its whole group.
/// A million dollars in one row is kept (and shows up as an anomaly).
pub const MAX_ROW_COST_USD: i64 = 1_000_000_000_000;

/// Rows dated more than this far ahead of the reader's clock are rejected as
/// `future_timestamp` (clock skew within it is kept and lands in its own hour).
pub const FUTURE_TOLERANCE_SECS: i64 = 86_400;

/// Why a row was not counted. Rows are classified in this order (a row with several
/// faults counts once, under the first), by the tail in Rust and by the backfill in
/// SQL alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    NullCost,
    NonFiniteCost,
    NullTimestamp,
    BadTokens,
    /// Beyond `MAX_ROW_COST_USD`.
    CostOutOfRange,
    /// More than `FUTURE_TOLERANCE_SECS` ahead (or `infinity`).
    FutureTimestamp,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::NullTimestamp,
        RejectReason::FutureTimestamp,
        RejectReason::NullCost,
        RejectReason::NonFiniteCost,
        RejectReason::CostOutOfRange,
        RejectReason::BadTokens,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::NullCost => "null_cost",
            RejectReason::NonFiniteCost => "non_finite_cost",
            RejectReason::NullTimestamp => "null_timestamp",
            RejectReason::BadTokens => "bad_tokens",
            RejectReason::CostOutOfRange => "cost_out_of_range",
            RejectReason::FutureTimestamp => "future_timestamp",
        }
    }
}

/// A batch of facts from one backfill chunk or one tail poll.
#[derive(Debug, Clone, Default)]
pub struct FactBatch {
    pub facts: Vec<Fact>,
    /// Per-dimension totals of hours read without their combinations (history
    /// older than the store's detail hours).
    pub coarse: Vec<DimFact>,
    /// The biggest users of coarse hours (`dim` User, `at` the hour), each at
    /// least `Store::SHAPE_MIN_COST` and at most
    /// `Store::SHAPE_MAX_NAMES` an hour: what a user's baselines read
    /// for an hour whose users are kept per day only. Never shown as a figure.
    pub hour_users: Vec<DimFact>,
    /// The biggest (feature, user) pairs of coarse hours, chosen as `hour_users`
    /// are: what a user's usual share of a feature reads there. Never shown.
    pub hour_pairs: Vec<PairFact>,
    /// Source rows this batch stands for (a backfill group counts all its rows).
    pub rows: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl FactBatch {
    /// A batch of facts that are one source row each (no rejects).
    pub fn of_rows(facts: Vec<Fact>) -> FactBatch {
        FactBatch {
            coarse: Vec::new(),
            hour_users: Vec::new(),
            hour_pairs: Vec::new(),
            rows: facts.len() as u64,
            facts,
            rejected: BTreeMap::new(),
        }
    }
}

/// Where within one past hour one name spent, read from the server for hours the
/// store holds only by their total (see `store::subhour`): the name's spend in each
/// five-minute slot of the billing hour starting at `hour_start`. Only the shape
/// counts (a baseline's optimisation, never money shown), so the slots are floats.
#[derive(Debug, Clone, PartialEq)]
pub struct NameShape {
    pub hour_start: DateTime<Utc>,
    /// Feature, model or user.
    pub dim: Dim,
    /// As the column holds it; empty for NULL or empty.
    pub name: String,
    pub slots: [f64; 12],
}

/// Hour shapes on their way from a source task to the store of a dashboard, which
/// takes them on its next `apply` (the store lives in the dashboard's state; the
/// source task cannot reach it otherwise). Clones share the same box.
#[derive(Debug, Clone, Default)]
pub struct ShapeInbox(std::sync::Arc<std::sync::Mutex<Vec<NameShape>>>);

impl ShapeInbox {
    /// Adds shapes for the store to take.
    pub fn put(&self, shapes: Vec<NameShape>) {
        if shapes.is_empty() {
            return;
        }
        let mut inbox = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inbox.is_empty() {
            *inbox = shapes;
        } else {
            inbox.extend(shapes);
        }
    }

    /// Takes every shape put so far (without waiting on a writer that holds it).
    pub fn take(&self) -> Vec<NameShape> {
        match self.0.try_lock() {
            Ok(mut inbox) => std::mem::take(&mut *inbox),
            Err(std::sync::TryLockError::Poisoned(e)) => std::mem::take(&mut *e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Vec::new(),
        }
    }
}

/// How the source reads new rows, and so what it can promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TailMode {
    /// Transaction-id watermark: gap-free, exactly once.
    TxWatermark,
    /// Re-read an id overlap and deduplicate; loses a row whose transaction outlives
    /// the settle time.
    IdOverlap,
    /// No id or tx column: re-read a time window by (timestamp, key) and deduplicate
    /// by key; loses a row committed later than the overlap behind the newest row.
    KeysetOverlap,
    /// No id, tx or key column: each poll re-aggregates the rows of a time window
    /// on the server and replaces its previous count; loses a row committed later
    /// than the overlap behind its timestamp.
    WindowOverlap,
    /// The built-in synthetic stream of `burnrate demo`.
    Demo,
}

impl TailMode {
    pub fn label(self) -> &'static str {
        match self {
            TailMode::TxWatermark => "tx watermark (gap-free)",
            TailMode::IdOverlap => "id overlap (best effort)",
            TailMode::KeysetOverlap => "time overlap (best effort)",
            TailMode::WindowOverlap => "window re-aggregated (best effort)",
            TailMode::Demo => "demo stream",
        }
    }
    pub fn json_name(self) -> &'static str {
        match self {
            TailMode::TxWatermark => "tx_watermark",
            TailMode::IdOverlap => "id_overlap",
            TailMode::KeysetOverlap => "keyset_overlap",
            TailMode::WindowOverlap => "window_overlap",
            TailMode::Demo => "demo",
        }
    }
}

/// Connection health as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    /// Steps are the source's queries (their ratio is the progress); history is
    /// read newest first, and `loaded_from` is where the part already sent starts
    /// (None until the first step is in): every row from there on is in the store.
    Backfilling {
        done_steps: u64,
        total_steps: u64,
        loaded_from: Option<DateTime<Utc>>,
    },
    Live,
    Disconnected {
        error: String,
        since: DateTime<Utc>,
    },
}

/// Everything a source reports besides data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// "host:port/dbname" or "demo"; never a password.
    pub endpoint: String,
    pub connection: Connection,
    pub mode: TailMode,
    /// How far the watermark trails the newest committed row, when known.
    pub watermark_lag_secs: Option<i64>,
    /// Names the watched table has no column for (a column map that leaves them
    /// out): every row reads "(none)" there, and the views say why.
    pub absent: Vec<Dim>,
    /// What the status bar says besides the mode: the transaction held open on
    /// the server (tx mode), or what an overlap mode can miss.
    pub note: Option<String>,
    /// Reading from a streaming hot standby: how far it trails its primary.
    pub replay_lag: Option<ReplayLag>,
}

/// How far a hot standby trails its primary (see `source::replica`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayLag {
    /// Seconds since the last replayed commit while received WAL waits for replay;
    /// 0 when everything received is replayed.
    pub secs: i64,
    /// WAL received but not yet replayed.
    pub unreplayed_bytes: i64,
    /// WAL the primary has written past the standby's replay position (with a
    /// primary URL only): also counts WAL not yet received.
    pub behind_primary_bytes: Option<i64>,
    /// When the last replayed transaction committed on the primary.
    pub last_replayed_commit: Option<DateTime<Utc>>,
}

impl ReplayLag {
    /// For the status bar: "standby lag 0s" or "standby lag 12s, 3.4 MB behind"
    /// (bytes from a megabyte on, or with any lag).
    pub fn short(&self) -> String {
        let bytes = self
            .behind_primary_bytes
            .unwrap_or(0)
            .max(self.unreplayed_bytes);
        if bytes >= 1 << 20 || (self.secs > 0 && bytes > 0) {
            format!("standby lag {}s, {} behind", self.secs, human_bytes(bytes))
        } else {
            format!("standby lag {}s", self.secs)
        }
    }

    /// For `doctor`: what is measured, and how.
    pub fn describe(&self) -> String {
        let primary = match self.behind_primary_bytes {
            Some(b) => format!(
                "; the primary's WAL is {} past its replay position",
                human_bytes(b)
            ),
            None => "; how far the primary is ahead needs database.primary_url".to_string(),
        };
        let last = self
            .last_replayed_commit
            .map(|t| {
                format!(
                    "; last replayed commit {}",
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .unwrap_or_default();
        format!(
            "replay lag {}s ({} received and not yet replayed{primary}{last})",
            self.secs,
            human_bytes(self.unreplayed_bytes)
        )
    }
}

fn human_bytes(b: i64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b} B"),
    }
}

/// Messages from a source task to whoever owns the store.
#[derive(Debug, Clone)]
pub enum SourceMsg {
    Status(SourceStatus),
    /// History (server-side aggregated); `done` after the last chunk.
    Backfill {
        batch: FactBatch,
        done: bool,
    },
    /// The billing month's total so far below the backfill's horizon, in one sum
    /// before the history's chunks: the header's month-to-date while they load.
    MonthSoFar {
        month_start: DateTime<Utc>,
        agg: Agg,
    },
    /// New rows from one poll, with the time the poll finished.
    Tail {
        batch: FactBatch,
        polled_at: DateTime<Utc>,
    },
}

/// One of the most expensive individual requests behind a drill-down selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub at: DateTime<Utc>,
    /// Empty when the source has none.
    pub request_id: String,
    pub feature: String,
    pub user: String,
    pub model: String,
    /// Kept for matching a path; None where unknown.
    pub tenant: Option<String>,
    pub region: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Money,
}

/// Per-name totals of one dimension over `[from, to)` among the rows matching a
/// drill-down path, from the database: what the store's coarse hours do not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQuery {
    pub group: Dim,
    pub path: Vec<(Dim, String)>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// "Which requests cost the most?": every event since `from` matching each
/// (dimension, name) of `path` (`(none)` matches NULL or empty), most expensive
/// first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopQuery {
    pub path: Vec<(Dim, String)>,
    pub from: DateTime<Utc>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    #[test]
    fn computed_requests_sum_with_the_rest_through_the_store() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T12:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let fact = |minutes: i64, feature: &str, computed: u64| Fact {
            at: now - chrono::Duration::minutes(minutes),
            names: [
                feature.into(),
                "u".into(),
                "gpt-4o".into(),
                "t".into(),
                "r".into(),
            ],
            agg: Agg {
                computed,
                requests: 3,
                ..Agg::one(Money::from_micros(1_500), 10, 2)
            },
        };
        let batch = FactBatch {
            coarse: Vec::new(),
            hour_users: Vec::new(),
            hour_pairs: Vec::new(),
            facts: vec![
                fact(1, "chat", 2),
                fact(200, "chat", 1),
                fact(5, "search", 0),
                fact(3000, "search", 3),
            ],
            rows: 12,
            rejected: BTreeMap::new(),
        };
        let mut store = Store::new(StoreConfig::default(), now);
        store.apply(&batch, now);
        let all = i64::MIN..=i64::MAX;
        let total = store.total(all.clone());
        assert_eq!((total.requests, total.computed), (12, 6));
        let by_feature: BTreeMap<String, u64> = store
            .by_dim(Dim::Feature, all)
            .into_iter()
            .map(|(id, a)| (store.name(Dim::Feature, id).to_string(), a.computed))
            .collect();
        assert_eq!(by_feature["chat"], 3);
        assert_eq!(by_feature["search"], 3);
        // Only the last hours: the older rows' computed costs are not counted.
        let recent = store.total(store.hours_from(now - chrono::Duration::hours(1)));
        assert_eq!((recent.requests, recent.computed), (6, 2));
        let mut sum = Agg::default();
        sum += &batch.facts[0].agg;
        sum += &batch.facts[3].agg;
        assert_eq!(sum.computed, 5);
    }
}
