//! SQL text for one table, built once per connection from validated, quoted column
//! names and constants only. Every value travels as a parameter.

use tokio_postgres::types::ToSql;

use super::schema::{CostKind, NAME_COLUMNS, TableInfo, quote_ident};
use crate::model::{NONE_NAME, TopQuery};

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
    Tx { xmin: u64 },
    Id { max_id: i64, gaps: Vec<(i64, i64)> },
}

pub(crate) struct Sql {
    table: String,
    ts: String,
    cost: String,
    /// Select-list expressions of the five names, never NULL.
    names: Vec<String>,
    input_sel: String,
    output_sel: String,
    /// True for a cost that can be summed: not NULL, NaN or infinite.
    finite_cost: String,
    /// True unless a token count is negative (NULL counts as 0).
    tokens_ok: String,
}

fn col(name: &str) -> String {
    format!("e.{}", quote_ident(name))
}

impl Sql {
    pub(crate) fn new(info: &TableInfo) -> Sql {
        let cost = col("cost_usd");
        let finite_cost = match info.cost_kind {
            // numeric has Infinity only from PostgreSQL 14 on; NaN sorts above it.
            CostKind::Numeric if info.server_version < 140_000 => format!("({cost} <> 'NaN')"),
            CostKind::Numeric | CostKind::Float => {
                format!("({cost} < 'Infinity' AND {cost} > '-Infinity')")
            }
            CostKind::Integer => format!("({cost} IS NOT NULL)"),
        };
        let names = NAME_COLUMNS
            .iter()
            .map(|n| {
                if info.has(n) {
                    format!("coalesce({}::text, '')", col(n))
                } else {
                    "''::text".to_string()
                }
            })
            .collect();
        let tokens = |n: &str| info.has(n).then(|| col(n));
        let (input, output) = (tokens("input_tokens"), tokens("output_tokens"));
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
        Sql {
            table: info.table.quoted(),
            ts: col("timestamp"),
            input_sel: sel(&input),
            output_sel: sel(&output),
            names,
            cost,
            finite_cost,
            tokens_ok,
        }
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
        previous: Option<&Horizon>,
        current: &Horizon,
        p: &mut Params,
    ) -> Option<String> {
        let tx = col("tx");
        let id = col("id");
        match (previous, current) {
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

    /// Server-side groups of valid rows of one time chunk: (bucket epoch, five names,
    /// cost text, requests, input tokens, output tokens). Buckets are calendar hours,
    /// or minutes from `minute_floor` on.
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
        let names = self.names.join(", ");
        format!(
            "SELECT (CASE WHEN {ts} >= {minute_floor}::timestamptz \
                 THEN floor(extract(epoch FROM {ts}) / 60) * 60 \
                 ELSE floor((extract(epoch FROM {ts}) - {phase}::int8) / 3600) * 3600 + {phase}::int8 END)::int8, \
               {names}, sum({cost})::text, count(*), {}, {} \
             FROM {table} e \
             WHERE {ts} >= {from}::timestamptz{upper} AND {finite} AND {tokens_ok} AND {horizon} \
             GROUP BY 1, 2, 3, 4, 5, 6",
            self.sum_tokens(&self.input_sel),
            self.sum_tokens(&self.output_sel),
            table = self.table,
            finite = self.finite_cost,
            tokens_ok = self.tokens_ok,
        )
    }

    /// Counts of rejected rows by reason (null timestamp, null cost, non-finite cost,
    /// bad tokens), classified in the same order as `row_to_fact`.
    pub(crate) fn backfill_rejects(&self, from: String, horizon: &str) -> String {
        let Sql {
            ts,
            cost,
            finite_cost,
            tokens_ok,
            table,
            ..
        } = self;
        format!(
            "SELECT count(*) FILTER (WHERE {ts} IS NULL), \
               count(*) FILTER (WHERE {ts} IS NOT NULL AND {cost} IS NULL), \
               count(*) FILTER (WHERE {ts} IS NOT NULL AND {cost} IS NOT NULL AND NOT {finite_cost}), \
               count(*) FILTER (WHERE {ts} IS NOT NULL AND {finite_cost} AND NOT {tokens_ok}) \
             FROM {table} e WHERE ({ts} IS NULL OR {ts} >= {from}::timestamptz) AND {horizon}"
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
               AND {finite} AND {tokens_ok}{tenant}{group_by}",
            self.sum_tokens(&self.input_sel),
            self.sum_tokens(&self.output_sel),
            names = names.join(", "),
            comma = if names.is_empty() { "" } else { "," },
            table = self.table,
            finite = self.finite_cost,
            tokens_ok = self.tokens_ok,
            group_by = if group.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", group.join(", "))
            },
        )
    }

    /// The most expensive valid rows since a time matching a drill-down path:
    /// (timestamp, cost text, five names, input tokens, output tokens, request id).
    /// Every name and the time are bound parameters; `(none)` matches NULL or empty.
    pub(crate) fn top_requests(&self, info: &TableInfo, q: &TopQuery, p: &mut Params) -> String {
        let mut conds = vec![
            format!("{} >= {}::timestamptz", self.ts, p.push(q.from)),
            self.finite_cost.clone(),
            self.tokens_ok.clone(),
        ];
        for (dim, name) in &q.path {
            let want = if name == NONE_NAME {
                String::new()
            } else {
                name.clone()
            };
            conds.push(format!(
                "{} = {}::text",
                self.names[dim.index()],
                p.push(want)
            ));
        }
        let request_id = if info.has("request_id") {
            format!("coalesce({}::text, '')", col("request_id"))
        } else {
            "''::text".to_string()
        };
        format!(
            "SELECT {ts}, {cost}::text, {names}, {input}, {output}, {request_id} \
             FROM {table} e WHERE {conds} ORDER BY {cost} DESC, {ts} DESC LIMIT {limit}::int8",
            ts = self.ts,
            cost = self.cost,
            names = self.names.join(", "),
            input = self.input_sel,
            output = self.output_sel,
            table = self.table,
            conds = conds.join(" AND "),
            limit = p.push(q.limit as i64),
        )
    }

    /// The per-row select list shared by the tail queries (after any leading tx).
    fn row_list(&self) -> String {
        format!(
            "{}::int8, {}, {}::text, {}, {}, {}",
            col("id"),
            self.ts,
            self.cost,
            self.names.join(", "),
            self.input_sel,
            self.output_sel
        )
    }

    /// The gap-free tail: one statement, so rows and horizon share one snapshot.
    /// $1 last tx (text), $2 last id, $3 limit.
    pub(crate) fn tail_tx(&self) -> String {
        let tx = col("tx");
        format!(
            "SELECT {tx}::text, {} FROM {} e \
             WHERE ({tx}, {id}) > ($1::text::xid8, $2::int8) AND {tx} < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY {tx}, {id} LIMIT $3::int8",
            self.row_list(),
            self.table,
            id = col("id"),
        )
    }

    /// Id overlap: rows above the highest id read. $1 max seen, $2 limit.
    pub(crate) fn tail_id_new(&self) -> String {
        format!(
            "SELECT {} FROM {} e WHERE {id} > $1::int8 ORDER BY {id} LIMIT $2::int8",
            self.row_list(),
            self.table,
            id = col("id")
        )
    }

    /// Id overlap: rows that appeared in awaited gaps. $1 starts, $2 ends, $3 limit.
    pub(crate) fn tail_id_gaps(&self) -> String {
        format!(
            "SELECT {} FROM unnest($1::int8[], $2::int8[]) AS g(lo, hi) JOIN {} e ON {id} BETWEEN g.lo AND g.hi \
             ORDER BY {id} LIMIT $3::int8",
            self.row_list(),
            self.table,
            id = col("id")
        )
    }

    /// Id overlap backfill: (max id, min id) in the backfill snapshot.
    pub(crate) fn id_bounds(&self) -> String {
        format!(
            "SELECT max({id})::int8, min({id})::int8 FROM {} e",
            self.table,
            id = col("id")
        )
    }

    /// Ids present in ($1, $2], to find the gaps open at backfill time.
    pub(crate) fn id_window(&self) -> String {
        format!(
            "SELECT {id}::int8 FROM {} e WHERE {id} > $1::int8 AND {id} <= $2::int8 ORDER BY {id}",
            self.table,
            id = col("id")
        )
    }
}

/// The watermark's state: snapshot xmin and xmax (equal when no transaction with
/// an xid is running), and the age of the oldest such transaction where visible
/// (pg_stat_activity hides other users' sessions without pg_read_all_stats; it may
/// be in any database of the cluster, or a prepared transaction).
pub(crate) const WATERMARK_STATE: &str = "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text, \
       floor(extract(epoch FROM now() - least(\
         (SELECT min(xact_start) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()), \
         (SELECT min(prepared) FROM pg_prepared_xacts))))::int8 \
     FROM pg_current_snapshot() AS s";

/// The backfill's watermark: every transaction below it has ended.
pub(crate) const SNAPSHOT_XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
