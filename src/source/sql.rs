//! SQL text for one table, built once per connection from validated, quoted column
//! names and constants only. Every value travels as a parameter.

use tokio_postgres::types::ToSql;

use super::columns::{ResolvedMap, RowOrder};
use super::schema::{CostKind, TableInfo};
use crate::model::{FUTURE_TOLERANCE_SECS, GroupQuery, MAX_ROW_COST_USD, NONE_NAME, TopQuery};

/// Parameters collected while a statement is built; `push` returns the placeholder.
#[derive(Default)]
pub(crate) struct Params {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Params {
    pub(crate) fn push<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// What a backfill step has already counted: rows below a transaction watermark, or
/// rows up to an id except the ids missing at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Horizon {
    Tx {
        xmin: u64,
    },
    Id {
        max_id: i64,
        gaps: Vec<(i64, i64)>,
    },
    /// Keyset mode: everything in the backfill's snapshot (a retry reads no chunk
    /// twice; the tail's overlap window catches up).
    Snapshot,
    /// Window mode: the rows dated before the tail's first window, in the
    /// backfill's snapshot (the tail aggregates the window itself).
    Before {
        start: chrono::DateTime<chrono::Utc>,
    },
}

/// A backfill group's key, in the order the backfill reads groups: the bucket, then
/// the five names byte by byte. PostgreSQL's "C" collation compares bytes, as Rust's
/// `str` does, so the database and the client agree on which keys a page covered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GroupKey {
    pub bucket: i64,
    pub names: [String; 5],
}

/// What one backfill chunk has sent: ranges of group keys in key order, each with the
/// horizon it was counted at. A range covers the keys above the previous range's
/// upper key up to its own (inclusive; None: every key above). Keys above the last
/// range were never sent.
pub(crate) type SentRanges = [(Option<GroupKey>, Horizon)];

/// `(tuple) op (key)` for a group key, its values as parameters.
pub(crate) fn compare_key(tuple: &str, op: &str, key: &GroupKey, p: &mut Params) -> String {
    let mut values = vec![format!("{}::int8", p.push(key.bucket))];
    values.extend(
        key.names
            .iter()
            .map(|n| format!("{}::text", p.push(n.clone()))),
    );
    format!("({tuple}) {op} ({})", values.join(", "))
}

/// What one row of `Sql::backfill_coarse` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoarseSet {
    /// An hour's total.
    Hour,
    /// An hour's total of one name of a dimension other than users.
    HourName(crate::model::Dim),
    /// A user's total over the whole chunk (its billing day).
    DayUser,
    /// One of an hour's biggest users (see `FactBatch::hour_users`).
    HourUser,
    /// One of an hour's biggest (feature, user) pairs (`FactBatch::hour_pairs`).
    HourPair,
}

/// `GROUPING(b, n1, n2, n3, n4, n5)` of the (hour, user) set: every name but the
/// user grouped away.
const HOUR_USER_MASK: i32 = 0b010111;
/// `GROUPING(..)` of the (hour, feature, user) set.
const HOUR_PAIR_MASK: i32 = 0b000111;

/// Which grouping set of `Sql::backfill_coarse` a row is, from its
/// `GROUPING(b, n1, n2, n3, n4, n5)` mask (a bit set for each column grouped away,
/// `b` the highest), None for a mask the query does not make.
pub(crate) fn coarse_set(mask: i32) -> Option<CoarseSet> {
    use crate::model::Dim;
    let kept: Vec<usize> = (0..5).filter(|i| mask & (1 << (4 - i)) == 0).collect();
    let hour = mask & (1 << 5) == 0;
    match (hour, kept.as_slice()) {
        (true, []) => Some(CoarseSet::Hour),
        (true, [i]) if *i == Dim::User.index() => Some(CoarseSet::HourUser),
        (true, [f, u]) if *f == Dim::Feature.index() && *u == Dim::User.index() => {
            Some(CoarseSet::HourPair)
        }
        (true, [i]) => Some(CoarseSet::HourName(Dim::ALL[*i])),
        (false, [i]) if *i == Dim::User.index() => Some(CoarseSet::DayUser),
        _ => None,
    }
}

/// The names of a group, each compared byte by byte (see `GroupKey`).
fn bytewise(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("({n}) COLLATE \"C\""))
        .collect()
}

pub(crate) struct Sql {
    pub(super) table: String,
    pub(super) ts: String,
    pub(super) cost: String,
    /// Select-list expressions of the five names, never NULL.
    pub(super) names: Vec<String>,
    input_sel: String,
    output_sel: String,
    /// True for a cost that can be summed: not NULL, NaN or infinite.
    finite_cost: String,
    /// True for a finite cost under `MAX_ROW_COST_USD` either way (false for NaN).
    cost_in_range: String,
    /// True for a timestamp at most `FUTURE_TOLERANCE_SECS` ahead (NULL for NULL).
    ts_not_future: String,
    /// The timestamp clamped to what the client can decode (years 1 to 9999), so
    /// `±infinity` and far dates are classified, not a decoding error.
    ts_sel: String,
    /// True unless a token count is negative (NULL counts as 0).
    tokens_ok: String,
    /// The row-order columns (`NULL` where the table has none).
    id: String,
    tx: String,
    /// Keyset mode: the unique key, as text.
    key: String,
    /// The request id as text, or `''`.
    request_id: String,
    /// True where the cost was computed from the price list.
    computed: String,
}

impl Sql {
    pub(crate) fn new(info: &TableInfo) -> Sql {
        let map = &info.map;
        let cost = match info.cost_kind {
            // Exact decimals: each double as numeric (PostgreSQL's 15 significant
            // digits), summed as numeric, so totals equal `sum(cost::numeric)`.
            // Before 14, numeric has no Infinity to cast to: read the float as is.
            CostKind::Float if info.server_version >= 140_000 => format!("({}::numeric)", map.cost),
            _ => map.cost.clone(),
        };
        // A row that logs no cost (NULL, or no cost column) or zero: its cost is
        // computed from its tokens with the price list, exactly, in numeric.
        let model = map.names[2]
            .as_ref()
            .map_or("''::text".to_string(), |m| format!("coalesce({m}, '')"));
        let tokens_of = |t: &Option<String>| t.clone().unwrap_or_else(|| "NULL::int8".into());
        let price = super::prices::price_sql(
            &map.prices,
            &model,
            &map.ts_column,
            &tokens_of(&map.input_tokens),
            &tokens_of(&map.output_tokens),
        );
        let (cost, computed) = match price {
            Some(p) => (
                format!("(CASE WHEN {cost} <> 0 THEN {cost} ELSE coalesce({p}, {cost}) END)"),
                format!("(({cost} IS NULL OR {cost} = 0) AND {p} IS NOT NULL)"),
            ),
            None => (cost, "false".to_string()),
        };
        let finite_cost = match info.cost_kind {
            // numeric has Infinity only from PostgreSQL 14 on; NaN sorts above it.
            CostKind::Numeric if info.server_version < 140_000 => format!("({cost} <> 'NaN')"),
            CostKind::Numeric | CostKind::Float => {
                format!("({cost} < 'Infinity' AND {cost} > '-Infinity')")
            }
            CostKind::Integer => format!("({cost} IS NOT NULL)"),
        };
        let names = map
            .names
            .iter()
            .map(|n| match n {
                Some(text) => format!("coalesce({text}, '')"),
                None => "''::text".to_string(),
            })
            .collect();
        let (input, output) = (map.input_tokens.clone(), map.output_tokens.clone());
        let token_checks: Vec<String> = [&input, &output]
            .into_iter()
            .flatten()
            .map(|c| format!("coalesce({c}, 0) >= 0"))
            .collect();
        let tokens_ok = if token_checks.is_empty() {
            "true".to_string()
        } else {
            format!("({})", token_checks.join(" AND "))
        };
        let sel = |c: &Option<String>| {
            c.as_ref()
                .map_or("NULL::int8".to_string(), |c| format!("{c}::int8"))
        };
        // A `timestamp without time zone` column is compared and converted as UTC:
        // the session's TimeZone is UTC (see `pg.rs`), and PostgreSQL's cross-type
        // comparisons keep the column's index usable.
        let ts = map.ts_column.clone();
        let (id, tx, key) = match &map.order {
            RowOrder::Tx { tx, id } => (id.clone(), tx.clone(), "NULL::text".to_string()),
            RowOrder::Id { id } => (id.clone(), "NULL::xid8".into(), "NULL::text".into()),
            RowOrder::Window => ("0::int8".into(), "NULL::xid8".into(), "NULL::text".into()),
            RowOrder::Keyset { key } => (
                "0::int8".into(),
                "NULL::xid8".into(),
                // A row without a key (NULL) is told apart by its physical place.
                format!("coalesce({key}::text, e.ctid::text)"),
            ),
        };
        let request_id = map
            .request_id
            .as_ref()
            .map_or("''::text".to_string(), |r| format!("coalesce({r}, '')"));
        Sql {
            table: info.table.quoted(),
            cost_in_range: format!(
                "({cost} > -{MAX_ROW_COST_USD} AND {cost} < {MAX_ROW_COST_USD})"
            ),
            ts_not_future: format!("({ts} <= now() + interval '{FUTURE_TOLERANCE_SECS} seconds')"),
            ts_sel: format!(
                "(CASE WHEN {ts} > '9999-12-31 00:00:00+00'::timestamptz THEN '9999-12-31 00:00:00+00'::timestamptz \
                  WHEN {ts} < '0001-01-02 00:00:00+00'::timestamptz THEN '0001-01-02 00:00:00+00'::timestamptz \
                  ELSE {ts} END)"
            ),
            ts,
            input_sel: sel(&input),
            output_sel: sel(&output),
            names,
            cost,
            finite_cost,
            tokens_ok,
            id,
            tx,
            key,
            request_id,
            computed,
        }
    }

    /// Reads only the rows of the tenant set on the session (`burnrate.tenant`, see
    /// `pg.rs`): every statement reads the table through this filter, so backfill,
    /// every tail mode, top requests and export agree. None without a tenant column.
    pub(crate) fn scoped_to_tenant(mut self, info: &TableInfo) -> Option<Sql> {
        let tenant = info.map.names[3].as_ref()?;
        // The planner pulls this subquery up: the table's indexes still serve.
        self.table = format!(
            "(SELECT e.*, e.ctid AS burnrate_ctid FROM {} e \
              WHERE {tenant} = current_setting('burnrate.tenant'))",
            self.table
        );
        self.key = self.key.replace("e.ctid", "e.burnrate_ctid");
        Some(self)
    }

    /// The one row filter: a row the dashboard counts (`row_to_fact` accepts the same
    /// rows in the tail). Backfill, rollup, top requests and export all read through
    /// it, so none counts a row another rejects (a future timestamp, a NaN cost...).
    pub(super) fn valid_row(&self) -> String {
        format!(
            "{} AND {} AND {} AND {}",
            self.ts_not_future, self.finite_cost, self.cost_in_range, self.tokens_ok
        )
    }

    fn sum_tokens(&self, sel: &str) -> String {
        if sel.starts_with("NULL") {
            "0::int8".into()
        } else {
            format!("coalesce(sum({sel}), 0)::int8")
        }
    }

    /// Rows counted at `current` but not yet at `previous` (None: nothing counted yet).
    pub(crate) fn horizon_filter(
        &self,
        previous: Option<&Horizon>,
        current: &Horizon,
        p: &mut Params,
    ) -> Option<String> {
        let (tx, id) = (&self.tx, &self.id);
        match (previous, current) {
            (None, Horizon::Snapshot) => Some("true".into()),
            (Some(Horizon::Snapshot), Horizon::Snapshot) => Some("false".into()),
            (None, Horizon::Before { start }) => Some(format!(
                "({ts} IS NULL OR {ts} < {}::timestamptz)",
                p.push(*start),
                ts = self.ts
            )),
            (Some(Horizon::Before { .. }), Horizon::Before { .. }) => Some("false".into()),
            (None, Horizon::Tx { xmin }) => {
                Some(format!("{tx} < {}::text::xid8", p.push(xmin.to_string())))
            }
            (Some(Horizon::Tx { xmin: before }), Horizon::Tx { xmin }) => Some(format!(
                "{tx} >= {}::text::xid8 AND {tx} < {}::text::xid8",
                p.push(before.to_string()),
                p.push(xmin.to_string())
            )),
            (None, Horizon::Id { max_id, .. }) => {
                Some(format!("{id} <= {}::int8", p.push(*max_id)))
            }
            (
                Some(Horizon::Id {
                    max_id: before,
                    gaps,
                }),
                Horizon::Id { max_id, .. },
            ) => {
                let upto = p.push(*max_id);
                let after = p.push(*before);
                if gaps.is_empty() {
                    Some(format!("{id} <= {upto}::int8 AND {id} > {after}::int8"))
                } else {
                    let lo = p.push(gaps.iter().map(|g| g.0).collect::<Vec<i64>>());
                    let hi = p.push(gaps.iter().map(|g| g.1).collect::<Vec<i64>>());
                    Some(format!(
                        "{id} <= {upto}::int8 AND ({id} > {after}::int8 OR EXISTS (SELECT 1 FROM \
                         unnest({lo}::int8[], {hi}::int8[]) AS g(lo, hi) WHERE {id} BETWEEN g.lo AND g.hi))"
                    ))
                }
            }
            // The mode never changes once chosen.
            _ => None,
        }
    }

    /// A row's bucket (epoch seconds): its calendar hour, or its minute from
    /// `minute_floor` on.
    fn bucket(&self, minute_floor: &str, phase: &str) -> String {
        let ts = &self.ts;
        format!(
            "(CASE WHEN {ts} >= {minute_floor}::timestamptz \
                 THEN floor(extract(epoch FROM {ts}) / 60) * 60 \
                 ELSE floor((extract(epoch FROM {ts}) - {phase}::int8) / 3600) * 3600 + {phase}::int8 END)::int8"
        )
    }

    /// A row's group key as a tuple, in `GroupKey` order.
    fn row_key(&self, minute_floor: &str, phase: &str) -> String {
        let mut parts = vec![self.bucket(minute_floor, phase)];
        parts.extend(bytewise(&self.names));
        parts.join(", ")
    }

    /// The rows one backfill chunk reads now, at `current`: for each range of group
    /// keys already sent, the rows counted since (`horizon_filter`); for the keys never
    /// sent, every row below `current` and `unsent_also` (rollup mode: only the raw rows
    /// the rollup has not taken in). None if the tail mode changed.
    pub(crate) fn chunk_filter(
        &self,
        sent: &SentRanges,
        current: &Horizon,
        unsent_also: Option<&str>,
        minute_floor: &str,
        phase: &str,
        p: &mut Params,
    ) -> Option<String> {
        let mut arms = Vec::new();
        let mut fallback = None;
        let key = self.row_key(minute_floor, phase);
        for (upper, counted_at) in sent {
            let filter = self.horizon_filter(Some(counted_at), current, p)?;
            match upper {
                Some(upper) => arms.push(format!(
                    "WHEN {} THEN ({filter})",
                    compare_key(&key, "<=", upper, p)
                )),
                None => fallback = Some(filter),
            }
        }
        let fallback = match fallback {
            Some(f) => f,
            None => {
                let all = self.horizon_filter(None, current, p)?;
                match unsent_also {
                    Some(also) => format!("({all}) AND ({also})"),
                    None => all,
                }
            }
        };
        Some(if arms.is_empty() {
            fallback
        } else {
            format!("CASE {} ELSE ({fallback}) END", arms.join(" "))
        })
    }

    /// One backfill chunk's groups in key order (`GroupKey`), to be read in pages:
    /// `backfill_groups`, merged with `rollup` (groups of the same columns from the
    /// rollup, names compared byte by byte) when given.
    pub(crate) fn backfill_chunk(&self, groups: &str, rollup: Option<&str>) -> String {
        // The names are selected with the "C" collation, so this order is bytewise.
        let order = "ORDER BY 1, 2, 3, 4, 5, 6";
        match rollup {
            None => format!("{groups} {order}"),
            Some(rollup) => format!(
                "SELECT b, n1, n2, n3, n4, n5, sum(cost)::text, sum(requests)::int8, \
                   sum(input_tokens)::int8, sum(output_tokens)::int8, sum(computed)::int8 \
                 FROM (SELECT b, n1, n2, n3, n4, n5, cost::numeric, requests, input_tokens, \
                         output_tokens, computed \
                       FROM ({groups}) g(b, n1, n2, n3, n4, n5, cost, requests, input_tokens, \
                         output_tokens, computed) \
                       UNION ALL {rollup}) u(b, n1, n2, n3, n4, n5, cost, requests, \
                         input_tokens, output_tokens, computed) \
                 GROUP BY 1, 2, 3, 4, 5, 6 {order}"
            ),
        }
    }

    /// Server-side groups of valid rows of one time chunk: (bucket epoch, five names,
    /// cost text, requests, input tokens, output tokens). Buckets are calendar hours,
    /// or minutes from `minute_floor` on. The names carry the "C" collation, so the
    /// groups sort as `GroupKey` does.
    pub(crate) fn backfill_groups(
        &self,
        from: String,
        to: Option<String>,
        minute_floor: String,
        phase: String,
        horizon: &str,
    ) -> String {
        let Sql { ts, cost, .. } = self;
        let upper = to
            .map(|t| format!(" AND {ts} < {t}::timestamptz"))
            .unwrap_or_default();
        format!(
            "SELECT {key}, sum({cost})::text, count(*), {}, {}, count(*) FILTER (WHERE {computed}) \
             FROM {table} e \
             WHERE {ts} >= {from}::timestamptz{upper} AND {valid} AND {horizon} \
             GROUP BY 1, 2, 3, 4, 5, 6",
            self.sum_tokens(&self.input_sel),
            self.sum_tokens(&self.output_sel),
            table = self.table,
            valid = self.valid_row(),
            computed = self.computed,
            key = self.row_key(&minute_floor, &phase),
        )
    }

    /// One coarse backfill chunk (history older than the store's detail hours, within
    /// one billing day): one scan, several small aggregates. Per calendar hour the
    /// total and the totals of each feature, model, tenant and region; the users over
    /// the whole chunk, and each hour's biggest users and (feature, user) pairs (each at least `SHAPE_MIN_COST`,
    /// at most `SHAPE_MAX_NAMES`, chosen on the server: an hour of a million end
    /// users sends a hundred rows). Columns: `GROUPING(b, n1..n5)` (which set: see
    /// `coarse_set`), bucket epoch (NULL for users), the five names (NULL where
    /// grouped away), cost text, requests, input and output tokens, computed rows.
    /// With `rollup` (rows in `groups_sql`'s layout), its rows count beside the raw
    /// rows `horizon` selects.
    /// The valid rows of `[from, to)` that `horizon` selects, each as a group in
    /// `rollup::groups_sql`'s layout (hour, five names, cost, requests, input and
    /// output tokens, computed), with `rollup`'s groups beside them.
    fn span_rows(
        &self,
        from: String,
        to: String,
        phase: String,
        horizon: &str,
        rollup: Option<&str>,
    ) -> String {
        let Sql { ts, cost, .. } = self;
        let n = &self.names;
        let per_row = |sel: &str| {
            if sel.starts_with("NULL") {
                "0::int8".to_string()
            } else {
                format!("coalesce({sel}, 0)::int8")
            }
        };
        let raw = format!(
            "SELECT floor((extract(epoch FROM {ts}) - {phase}::int8) / 3600)::int8 * 3600 + {phase}::int8, \
               {}, {}, {}, {}, {}, {cost}::numeric, 1::int8, {}, {}, \
               (CASE WHEN {computed} THEN 1 ELSE 0 END)::int8 \
             FROM {table} e \
             WHERE {ts} >= {from}::timestamptz AND {ts} < {to}::timestamptz AND {valid} AND {horizon}",
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            per_row(&self.input_sel),
            per_row(&self.output_sel),
            table = self.table,
            valid = self.valid_row(),
            computed = self.computed,
        );
        match rollup {
            Some(rollup) => format!("{raw} UNION ALL {rollup}"),
            None => raw,
        }
    }

    /// The total of the rows `span_rows` selects: cost text, requests, input and
    /// output tokens, computed rows (a month so far, for the header while the
    /// history loads).
    pub(crate) fn span_total(
        &self,
        from: String,
        to: String,
        phase: String,
        horizon: &str,
        rollup: Option<&str>,
    ) -> String {
        let rows = self.span_rows(from, to, phase, horizon, rollup);
        format!(
            "SELECT sum(cost)::text, coalesce(sum(requests), 0)::int8, \
               coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8, \
               coalesce(sum(computed), 0)::int8 \
             FROM ({rows}) r(b, n1, n2, n3, n4, n5, cost, requests, input_tokens, output_tokens, \
               computed)"
        )
    }

    pub(crate) fn backfill_coarse(
        &self,
        from: String,
        to: String,
        phase: String,
        horizon: &str,
        rollup: Option<&str>,
    ) -> String {
        let rows = self.span_rows(from, to, phase, horizon, rollup);
        let min_cost = crate::store::Store::SHAPE_MIN_COST;
        let max_names = crate::store::Store::SHAPE_MAX_NAMES;
        format!(
            "SELECT g, b, n1, n2, n3, n4, n5, cost::text, requests, input_tokens, output_tokens, computed \
             FROM (SELECT *, row_number() OVER (PARTITION BY g, b ORDER BY cost DESC, n2 COLLATE \"C\", n1 COLLATE \"C\") AS rank \
               FROM (SELECT GROUPING(b, n1, n2, n3, n4, n5)::int4 AS g, b, n1, n2, n3, n4, n5, \
                   sum(cost) AS cost, sum(requests)::int8 AS requests, \
                   sum(input_tokens)::int8 AS input_tokens, sum(output_tokens)::int8 AS output_tokens, \
                   sum(computed)::int8 AS computed \
                 FROM ({rows}) r(b, n1, n2, n3, n4, n5, cost, requests, input_tokens, output_tokens, \
                   computed) \
                 GROUP BY GROUPING SETS ((b), (b, n1), (b, n2), (b, n1, n2), (b, n3), (b, n4), (b, n5), (n2)) \
                 HAVING GROUPING(b, n1, n2, n3, n4, n5) NOT IN ({HOUR_USER_MASK}, {HOUR_PAIR_MASK}) \
                   OR sum(cost) >= {min_cost}) grouped \
               ) ranked \
             WHERE g NOT IN ({HOUR_USER_MASK}, {HOUR_PAIR_MASK}) OR rank <= {max_names}"
        )
    }

    /// Counts of rejected rows by reason, in the order of `RejectReason::ALL` (null
    /// timestamp, future timestamp, null cost, non-finite cost, cost out of range, bad
    /// tokens), classified as `row_to_fact` does.
    pub(crate) fn backfill_rejects(&self, from: String, horizon: &str) -> String {
        let Sql { ts, table, .. } = self;
        format!(
            "SELECT {} FROM {table} e WHERE ({ts} IS NULL OR {ts} >= {from}::timestamptz) AND {horizon}",
            self.reject_counts()
        )
    }

    /// One count of rows per reject reason, in the order of `RejectReason::ALL`,
    /// each row under the first reason it has (as `row_to_fact` classifies).
    fn reject_counts(&self) -> String {
        let Sql {
            ts,
            cost,
            finite_cost,
            cost_in_range,
            ts_not_future,
            tokens_ok,
            ..
        } = self;
        format!(
            "count(*) FILTER (WHERE {ts} IS NULL), \
             count(*) FILTER (WHERE {ts} IS NOT NULL AND NOT {ts_not_future}), \
             count(*) FILTER (WHERE {ts_not_future} AND {cost} IS NULL), \
             count(*) FILTER (WHERE {ts_not_future} AND {cost} IS NOT NULL AND NOT {finite_cost}), \
             count(*) FILTER (WHERE {ts_not_future} AND {finite_cost} AND NOT {cost_in_range}), \
             count(*) FILTER (WHERE {ts_not_future} AND {finite_cost} AND {cost_in_range} AND NOT {tokens_ok})"
        )
    }

    /// Billing groups of valid rows in `[from, to)`: the chosen name columns (by
    /// index into the five names), then cost text, requests, input and output tokens.
    /// Rows are filtered exactly as the backfill filters them, so the totals equal
    /// what the dashboard shows for the same span.
    pub(crate) fn export_groups(
        &self,
        by: &[usize],
        from: String,
        to: String,
        tenant: Option<String>,
    ) -> String {
        let Sql { ts, cost, .. } = self;
        let names: Vec<&str> = by.iter().map(|i| self.names[*i].as_str()).collect();
        let group: Vec<String> = (1..=names.len()).map(|i| i.to_string()).collect();
        let tenant = tenant
            .map(|t| format!(" AND {} = {t}", self.names[3]))
            .unwrap_or_default();
        format!(
            "SELECT {names}{comma} sum({cost})::text, count(*), {}, {} \
             FROM {table} e \
             WHERE {ts} >= {from}::timestamptz AND {ts} < {to}::timestamptz \
               AND {valid}{tenant}{group_by}",
            self.sum_tokens(&self.input_sel),
            self.sum_tokens(&self.output_sel),
            names = names.join(", "),
            comma = if names.is_empty() { "" } else { "," },
            table = self.table,
            valid = self.valid_row(),
            group_by = if group.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", group.join(", "))
            },
        )
    }

    /// One condition per (dimension, name) of a drill-down path, the names as bound
    /// parameters; `(none)` matches NULL or empty.
    fn path_conds(&self, path: &[(crate::model::Dim, String)], p: &mut Params) -> Vec<String> {
        path.iter()
            .map(|(dim, name)| {
                let want = if name == NONE_NAME {
                    String::new()
                } else {
                    name.clone()
                };
                format!("{} = {}::text", self.names[dim.index()], p.push(want))
            })
            .collect()
    }

    /// The most expensive valid rows since a time matching a drill-down path:
    /// (timestamp, cost text, five names, input tokens, output tokens, request id).
    /// Every name and the time are bound parameters; `(none)` matches NULL or empty.
    pub(crate) fn top_requests(&self, q: &TopQuery, p: &mut Params) -> String {
        let mut conds = vec![
            format!("{} >= {}::timestamptz", self.ts, p.push(q.from)),
            self.valid_row(),
        ];
        conds.extend(self.path_conds(&q.path, p));
        let request_id = &self.request_id;
        format!(
            "SELECT {ts_sel}, {cost}::text, {names}, {input}, {output}, {request_id} \
             FROM {table} e WHERE {conds} ORDER BY {cost} DESC, {ts} DESC LIMIT {limit}::int8",
            ts = self.ts,
            ts_sel = self.ts_sel,
            cost = self.cost,
            names = self.names.join(", "),
            input = self.input_sel,
            output = self.output_sel,
            table = self.table,
            conds = conds.join(" AND "),
            limit = p.push(q.limit as i64),
        )
    }

    /// Per-name totals of `q.group` over `[q.from, q.to)` among the valid rows
    /// matching `q.path` (bound parameters; `(none)` matches NULL or empty): name,
    /// cost text, requests, input tokens, output tokens, computed rows.
    pub(crate) fn group_totals(&self, q: &GroupQuery, p: &mut Params) -> String {
        let mut conds = vec![
            format!("{} >= {}::timestamptz", self.ts, p.push(q.from)),
            format!("{} < {}::timestamptz", self.ts, p.push(q.to)),
            self.valid_row(),
        ];
        conds.extend(self.path_conds(&q.path, p));
        format!(
            "SELECT {name}, sum({cost})::text, count(*), {input}, {output}, \
               count(*) FILTER (WHERE {computed}) \
             FROM {table} e WHERE {conds} GROUP BY 1",
            name = self.names[q.group.index()],
            cost = self.cost,
            input = self.sum_tokens(&self.input_sel),
            output = self.sum_tokens(&self.output_sel),
            computed = self.computed,
            table = self.table,
            conds = conds.join(" AND "),
        )
    }

    /// The per-row select list shared by the tail queries (after any leading tx).
    fn row_list(&self) -> String {
        format!(
            "{}::int8, {}, {}::text, {}, {}, {}, {}",
            self.id,
            self.ts_sel,
            self.cost,
            self.names.join(", "),
            self.input_sel,
            self.output_sel,
            self.computed
        )
    }

    /// The gap-free tail (see `txcursor.rs`): rows whose transaction is visible in
    /// snapshot $2 and was not in snapshot $1, past (tx, id) ($3, $4), in (tx, id)
    /// order, at most $5. Two index scans, never the rows $1 already saw: the
    /// transactions $1 listed as running, and those from ($6, $7) (its xmax, or
    /// past the last row read: `TxCursor::range_start`) to $2's xmax.
    pub(crate) fn tail_tx(&self) -> String {
        let (tx, id) = (&self.tx, &self.id);
        let part = |which: &str| {
            format!(
                "(SELECT {tx}::text, {list}, {tx} AS burnrate_tx, {id}::int8 AS burnrate_id \
                  FROM {table} e WHERE {which} \
                  AND pg_visible_in_snapshot({tx}, $2::text::pg_snapshot) \
                  ORDER BY {tx}, {id} LIMIT $5::int8)",
                list = self.row_list(),
                table = self.table,
            )
        };
        let listed = part(&format!(
            "{tx} = ANY(ARRAY(SELECT pg_snapshot_xip($1::text::pg_snapshot))) \
             AND ({tx}, {id}) > ($3::text::xid8, $4::int8)"
        ));
        let after = part(&format!(
            "({tx}, {id}) >= ($6::text::xid8, $7::int8) \
             AND {tx} < pg_snapshot_xmax($2::text::pg_snapshot)"
        ));
        format!(
            "SELECT * FROM ({listed} UNION ALL {after}) u \
             ORDER BY burnrate_tx, burnrate_id LIMIT $5::int8"
        )
    }

    /// Id overlap: rows above the highest id read. $1 max seen, $2 limit.
    pub(crate) fn tail_id_new(&self) -> String {
        format!(
            "SELECT {} FROM {} e WHERE {id} > $1::int8 ORDER BY {id} LIMIT $2::int8",
            self.row_list(),
            self.table,
            id = self.id
        )
    }

    /// Id overlap: rows that appeared in awaited gaps. $1 starts, $2 ends, $3 limit.
    pub(crate) fn tail_id_gaps(&self) -> String {
        format!(
            "SELECT {} FROM unnest($1::int8[], $2::int8[]) AS g(lo, hi) JOIN {} e ON {id} BETWEEN g.lo AND g.hi \
             ORDER BY {id} LIMIT $3::int8",
            self.row_list(),
            self.table,
            id = self.id
        )
    }

    /// Id overlap backfill: (max id, min id) in the backfill snapshot.
    pub(crate) fn id_bounds(&self) -> String {
        format!(
            "SELECT max({id})::int8, min({id})::int8 FROM {} e",
            self.table,
            id = self.id
        )
    }

    /// Ids present in ($1, $2], to find the gaps open at backfill time.
    pub(crate) fn id_window(&self) -> String {
        format!(
            "SELECT {id}::int8 FROM {} e WHERE {id} > $1::int8 AND {id} <= $2::int8 ORDER BY {id}",
            self.table,
            id = self.id
        )
    }

    /// Keyset tail, first page: rows at or after the cutoff, in (timestamp, key)
    /// order: (key, row list). $1 cutoff, $2 limit.
    pub(crate) fn tail_keyset_first(&self, map: &ResolvedMap) -> String {
        format!(
            "SELECT {key}, {} FROM {} e WHERE {ts} >= {cutoff} \
             ORDER BY {ts}, {key} LIMIT $2::int8",
            self.row_list(),
            self.table,
            key = self.key,
            ts = self.ts,
            cutoff = map.ts_value("$1"),
        )
    }

    /// Keyset tail, next pages: past the last (timestamp, key) read. $1 cutoff,
    /// $2 last timestamp, $3 last key, $4 limit.
    pub(crate) fn tail_keyset_next(&self, map: &ResolvedMap) -> String {
        format!(
            "SELECT {key}, {} FROM {} e WHERE {ts} >= {cutoff} AND ({ts}, {key}) > ({after}, $3::text) \
             ORDER BY {ts}, {key} LIMIT $4::int8",
            self.row_list(),
            self.table,
            key = self.key,
            ts = self.ts,
            cutoff = map.ts_value("$1"),
            after = map.ts_value("$2"),
        )
    }

    /// Window mode: the window's groups by minute from $1 (`backfill_groups`'
    /// columns), every valid row at or after it.
    pub(crate) fn window_groups(&self) -> String {
        self.backfill_groups("$1".into(), None, "$1".into(), "0".into(), "true")
    }

    /// `doctor`: rows, first and last timestamp.
    pub(crate) fn doctor_stats(&self) -> String {
        format!(
            "SELECT count(*), min({ts_sel}), max({ts_sel}) FROM {} e",
            self.table,
            ts_sel = self.ts_sel,
        )
    }

    /// Keyset backfill: the newest timestamp (not after now), NULL for no rows.
    pub(crate) fn keyset_newest(&self) -> String {
        format!(
            "SELECT least(m::timestamptz, now()) FROM (SELECT max({ts}) AS m FROM {} e) s WHERE m IS NOT NULL",
            self.table,
            ts = self.ts,
        )
    }

    /// Keyset backfill: the keys inside the first overlap window, with each row's time
    /// and group key (`GroupKey`). $1 cutoff, $2 minute floor, $3 phase.
    pub(crate) fn keyset_window(&self, map: &ResolvedMap) -> String {
        format!(
            "SELECT {key}, {ts_sel}, {group} FROM {} e WHERE {ts} >= {cutoff}",
            self.table,
            key = self.key,
            ts = self.ts,
            ts_sel = self.ts_sel,
            group = self.row_key("$2", "$3"),
            cutoff = map.ts_value("$1"),
        )
    }

    /// Rollup mode: `tx` at or past a rolled-up watermark (`$n` holds it as text).
    pub(crate) fn tx_at_least(&self, param: &str) -> String {
        format!("{} >= {param}::text::xid8", self.tx)
    }

    /// Rollup mode: rows the rollup's hours before `$before` do not hold: not yet
    /// rolled (`tx` at or past `$upto`), or dated from `$before` on.
    pub(crate) fn outside_rollup(&self, upto: &str, before: &str) -> String {
        format!(
            "({} >= {upto}::text::xid8 OR {} >= {before}::timestamptz)",
            self.tx, self.ts
        )
    }

    /// Rollup mode: rejected rows by billing hour (NULL for a NULL timestamp) and
    /// tenant, the reasons in the columns of `backfill_rejects`. `$phase` aligns hours.
    pub(crate) fn rejects_by_hour(&self, phase: String, horizon: &str) -> String {
        let Sql { table, ts_sel, .. } = self;
        format!(
            "SELECT (floor((extract(epoch FROM {ts_sel}) - {phase}::int8) / 3600) * 3600 + {phase}::int8)::int8, \
               {tenant}, {counts} \
             FROM {table} e WHERE {horizon} AND ({valid}) IS NOT TRUE \
             GROUP BY 1, 2",
            tenant = self.names[3],
            counts = self.reject_counts(),
            valid = self.valid_row(),
        )
    }
}

/// The tx tail's snapshot for one poll.
pub(crate) const CURRENT_SNAPSHOT: &str = "SELECT pg_current_snapshot()::text";

/// The backfill's watermark: every transaction below it has ended.
pub(crate) const SNAPSHOT_XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
