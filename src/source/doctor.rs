//! `burnrate doctor`: the source's view of the database, checked: the connection,
//! the table and column map, the indexes the queries need, rows and time range, and
//! the tail mode with what it promises.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::columns::{ColumnSpec, Field, MapSpec, Mapped, Preset, RowOrder, SourceConfig};
use super::connect::ConnectTarget;
use super::error::ErrorContext;
use super::pg::{PgSource, SourceOptions, client_deadline, timed};
use super::schema::TableName;
use crate::model::TailMode;

/// An index the queries need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNeed {
    /// Which queries it serves.
    pub purpose: &'static str,
    /// Its columns as a map would write them.
    pub columns: Vec<String>,
    /// The name of an existing index that serves (its leading columns match).
    pub found: Option<String>,
    /// The statement that adds it.
    pub create: String,
}

#[derive(Debug, Clone)]
pub struct DoctorReport {
    pub endpoint: String,
    pub preset: Preset,
    pub table: String,
    /// "16.4", once connected.
    pub server_version: Option<String>,
    pub mapped: Vec<Mapped>,
    pub unmapped: Vec<Field>,
    pub mode: Option<TailMode>,
    /// Keyset mode: how far back each poll re-reads.
    pub overlap: Duration,
    pub rows: Option<i64>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub indexes: Vec<IndexNeed>,
    /// Models in the price list (`[prices]`).
    pub priced_models: Vec<String>,
    /// Presets that fit when the configured map does not: (preset, table).
    pub other_presets: Vec<(Preset, String)>,
    /// Advice that is not a failure: an upgrade to a better tail mode, what could not
    /// be checked on a view.
    pub hints: Vec<String>,
    /// What must be fixed; empty when all is well.
    pub problems: Vec<String>,
    /// The oldest transaction open on the server (any database), when open more
    /// than a few seconds: it holds the xmin (and the rollup) back.
    pub open_transaction: Option<super::txcursor::TxHolder>,
    /// Whether the server read from is a hot standby (once connected).
    pub standby: Option<bool>,
    /// On a standby: its replay lag.
    pub replay_lag: Option<crate::model::ReplayLag>,
    /// Where burnrate writes when it reads from a standby (`database.primary_url`).
    pub primary: Option<String>,
}

impl DoctorReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A standby: its replay lag, and where writes go (the primary, reachable, and not a
/// standby itself), or what is not shared without it.
async fn replica_checks(source: &mut PgSource, report: &mut DoctorReport) {
    report.standby = Some(source.standby);
    if !source.standby {
        if let Some(p) = &report.primary {
            report.hints.push(format!(
                "database.primary_url ({p}) is set but {} is not a standby: burnrate reads \
                 there and writes to {p}",
                report.endpoint
            ));
        }
        return;
    }
    source.measure_replay_lag().await;
    report.replay_lag = source.status.replay_lag.clone();
    match &report.primary {
        None => report.hints.push(format!(
            "{} is a hot standby and no primary URL is given: alert state cannot be shared \
             (alerts use a local file on each machine), this instance does not roll the rollup, \
             and `db init` needs the primary; set database.primary_url, BURNRATE_PRIMARY_URL or \
             --primary-url",
            report.endpoint
        )),
        Some(p) => {
            if !source.ensure_primary().await {
                report.problems.push(format!(
                    "cannot reach the primary {p} (database.primary_url): {}. Alert state \
                     falls back to a local file and the rollup is not rolled until it answers",
                    source
                        .primary
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "no answer".into())
                ));
            } else if let Some(client) = source.primary.client()
                && super::replica::is_standby(client).await.unwrap_or(false)
            {
                report.problems.push(format!(
                    "database.primary_url names {p}, which is a standby too: writes there fail; \
                     give the primary's URL"
                ));
            }
        }
    }
}

/// Runs every check; never fails itself: what goes wrong is a problem in the report.
pub async fn doctor(target: &ConnectTarget, opts: &SourceOptions) -> DoctorReport {
    let mut report = DoctorReport {
        endpoint: target.endpoint.clone(),
        preset: opts.map.preset,
        table: TableName::parse(&opts.table).map_or(opts.table.clone(), |t| t.to_string()),
        server_version: None,
        mapped: Vec::new(),
        unmapped: Vec::new(),
        mode: None,
        overlap: opts.map.overlap,
        rows: None,
        first: None,
        last: None,
        indexes: Vec::new(),
        priced_models: opts.map.prices.keys().cloned().collect(),
        other_presets: Vec::new(),
        hints: Vec::new(),
        problems: Vec::new(),
        open_transaction: None,
        standby: None,
        replay_lag: None,
        primary: opts.primary.as_ref().map(|p| p.endpoint.clone()),
    };
    let mut source = match PgSource::connect(target.clone(), opts.clone()).await {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(e.to_string());
            if matches!(
                e,
                super::SourceError::ColumnMap { .. }
                    | super::SourceError::TableMissing { .. }
                    | super::SourceError::ColumnMissing { .. }
                    | super::SourceError::ColumnType { .. }
            ) && !written_map(&opts.map)
            {
                report.other_presets = other_presets(target, opts).await;
            }
            return report;
        }
    };
    replica_checks(&mut source, &mut report).await;
    let Some(live) = source.conn.take() else {
        report
            .problems
            .push("no connection after connecting".into());
        return report;
    };
    let info = &live.info;
    let v = info.server_version;
    report.server_version = Some(format!("{}.{}", v / 10_000, v % 10_000));
    report.mapped = info.map.mapped.clone();
    report.unmapped = info.map.unmapped.clone();
    report.mode = Some(info.mode);
    let ctx = ErrorContext {
        endpoint: &target.endpoint,
        table: &report.table,
        statement_timeout: opts.statement_timeout,
    };
    let limit = client_deadline(opts.statement_timeout);

    match timed(
        &ctx,
        limit,
        "counting rows",
        live.client.query_one(&live.sql.doctor_stats(), &[]),
    )
    .await
    {
        Ok(row) => {
            report.rows = row.try_get(0).ok();
            report.first = row.try_get(1).ok().flatten();
            report.last = row.try_get(2).ok().flatten();
        }
        Err(e) => report.problems.push(e.to_string()),
    }

    if let Ok(Some(row)) = timed(
        &ctx,
        limit,
        "reading the oldest open transaction",
        live.client.query_opt(super::txcursor::OLDEST_OPEN_TX, &[]),
    )
    .await
    {
        report.open_transaction = super::tail::open_long_enough(&row);
    }

    let column = |f: Field| opts.map.entry(f).map(|e| e.spec.column.clone());
    let table_arg = info.table.quoted();

    // Column-level privileges: every statement reads each mapped column (with a
    // tenant, through `SELECT e.*`: every column), so a role that may read only
    // some fails later with "permission denied".
    let mut read_cols: Vec<String> = if opts.tenant.is_some() {
        info.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        report
            .mapped
            .iter()
            .filter_map(|m| column(m.field))
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    read_cols.retain(|c| seen.insert(c.clone()));
    match timed(
        &ctx,
        limit,
        "checking column privileges",
        live.client.query(
            "SELECT c FROM unnest($2::text[]) WITH ORDINALITY AS u(c, n) \
             WHERE NOT has_column_privilege(to_regclass($1)::oid, c, 'SELECT') ORDER BY n",
            &[&table_arg, &read_cols],
        ),
    )
    .await
    {
        Ok(rows) => {
            let denied: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<_, String>(0).ok())
                .map(|c| ColumnSpec::column(&c).to_string())
                .collect();
            if !denied.is_empty() {
                report.problems.push(format!(
                    "role {user} may not SELECT column{s} {list} of {table}: every query reads \
                     the mapped columns and would fail with \"permission denied\". Grant it: \
                     GRANT SELECT ({list}) ON {table} TO {user};",
                    user = ColumnSpec::column(target.user()),
                    s = if denied.len() == 1 { "" } else { "s" },
                    list = denied.join(", "),
                    table = info.table,
                ));
            }
        }
        Err(e) => report.problems.push(e.to_string()),
    }

    // burnrate's layout without `tx`: `db init` adds it, and the tail is gap-free.
    if info.mode == TailMode::IdOverlap && opts.map.preset == Preset::Burnrate {
        report.hints.push(
            "run `burnrate db init` to add the tx column (xid8, filled by the database): the \
             tail then reads every committed row exactly once instead of waiting \
             database.id_gap_settle for missing ids"
                .to_string(),
        );
    }

    let mut needs: Vec<(&'static str, Vec<String>)> = Vec::new();
    let ts = column(Field::Timestamp).unwrap_or_default();
    match &info.map.order {
        RowOrder::Tx { .. } => {
            needs.push((
                "the tail",
                vec![
                    column(Field::Tx).unwrap_or_default(),
                    column(Field::Order).unwrap_or_default(),
                ],
            ));
            needs.push(("the backfill", vec![ts]));
        }
        RowOrder::Id { .. } => {
            needs.push(("the tail", vec![column(Field::Order).unwrap_or_default()]));
            needs.push(("the backfill", vec![ts]));
        }
        RowOrder::Window => needs.push(("the tail's window and the backfill", vec![ts])),
        RowOrder::Keyset { .. } => needs.push((
            "the tail and the backfill",
            vec![ts, column(Field::RequestId).unwrap_or_default()],
        )),
    }
    // Indexes live on tables: for a view, PostgreSQL uses its base table's, so those
    // are checked (by column name) when the view reads one table.
    let indexed =
        match timed(
            &ctx,
            limit,
            "finding the table that holds the indexes",
            live.client.query(INDEXED_TABLE, &[&table_arg]),
        )
        .await
        {
            Ok(rows) => {
                let tables: Vec<(String, String)> = rows
                    .iter()
                    .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                    .collect();
                match tables.as_slice() {
                    [(name, kind)] if kind == "self" => {
                        Some((name.clone(), info.table.to_string()))
                    }
                    [(name, _)] => {
                        report.hints.push(format!(
                            "{} is a view: PostgreSQL uses the indexes of its base table {name}, \
                         checked below",
                            info.table
                        ));
                        Some((name.clone(), name.clone()))
                    }
                    _ => {
                        report.hints.push(format!(
                        "{} is a view{}: PostgreSQL uses its base tables' indexes, which doctor \
                         cannot match to its columns; check the plans with EXPLAIN",
                        info.table,
                        if tables.is_empty() { "" } else { " over several tables" }
                    ));
                        None
                    }
                }
            }
            Err(e) => {
                report.problems.push(e.to_string());
                None
            }
        };
    let Some((indexed, indexed_shown)) = indexed else {
        return report;
    };
    let existing = match timed(
        &ctx,
        limit,
        "reading the table's indexes",
        live.client.query(
            "SELECT c.relname::text, i.indkey::int2[], \
               (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(i.indkey::int2[]) \
                  WITH ORDINALITY AS k(attnum, n) \
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             WHERE i.indrelid = to_regclass($1) AND am.amname = 'btree' \
               AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY 1",
            &[&indexed],
        ),
    )
    .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.try_get::<_, String>(0).ok()?,
                    r.try_get::<_, Vec<String>>(2).ok()?,
                ))
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            report.problems.push(e.to_string());
            Vec::new()
        }
    };
    // A view may rename columns: what its base table lacks by name is not checked.
    let base_columns: Vec<String> = match timed(
        &ctx,
        limit,
        "reading the base table's columns",
        live.client.query(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&indexed],
        ),
    )
    .await
    {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    for (purpose, cols) in needs {
        if let Some(renamed) = cols.iter().find(|c| !base_columns.contains(c)) {
            report.hints.push(format!(
                "the index for {purpose} is not checked: {indexed_shown} has no column {} \
                 (the view renames it); check the plans with EXPLAIN",
                ColumnSpec::column(renamed)
            ));
            continue;
        }
        let found = existing
            .iter()
            .find(|(_, keys)| keys.starts_with(&cols))
            .map(|(name, _)| name.clone());
        let shown: Vec<String> = cols
            .iter()
            .map(|c| ColumnSpec::column(c).to_string())
            .collect();
        let create = format!(
            "CREATE INDEX CONCURRENTLY ON {indexed_shown} ({});",
            shown.join(", ")
        );
        if found.is_none() {
            report.problems.push(format!(
                "no index on ({}) for {purpose}: queries scan the whole table. Add it with: {create}",
                shown.join(", ")
            ));
        }
        report.indexes.push(IndexNeed {
            purpose,
            columns: shown,
            found,
            create,
        });
    }
    report
}

/// The table whose indexes serve `$1`: itself (kind "self") for a table or
/// materialized view; for a view, the tables its rules read (kind "base").
const INDEXED_TABLE: &str = "\
    SELECT $1::text, 'self' FROM pg_class c \
      WHERE c.oid = to_regclass($1) AND c.relkind NOT IN ('v', 'f') \
    UNION ALL \
    SELECT DISTINCT d.refobjid::regclass::text, 'base' FROM pg_rewrite r \
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
        AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class \
      JOIN pg_class b ON b.oid = d.refobjid AND b.relkind IN ('r', 'p', 'm') \
      WHERE r.ev_class = to_regclass($1) \
        AND (SELECT relkind FROM pg_class WHERE oid = to_regclass($1)) = 'v'";

/// Whether the user wrote column map entries: then a misspelt column wants a
/// "did you mean", not another preset.
fn written_map(map: &MapSpec) -> bool {
    map.entries
        .iter()
        .any(|e| e.origin == super::columns::EntryOrigin::Config)
}

/// The presets, other than the configured one, that fit the database as it is.
async fn other_presets(target: &ConnectTarget, opts: &SourceOptions) -> Vec<(Preset, String)> {
    let mut out = Vec::new();
    for preset in [Preset::Burnrate, Preset::Seed, Preset::Litellm] {
        if preset == opts.map.preset {
            continue;
        }
        let db_table = if opts.map.preset == Preset::Litellm {
            "cost_events".to_string()
        } else {
            opts.table.clone()
        };
        let Ok(map) = MapSpec::build(&SourceConfig::default(), Some(preset), &db_table) else {
            continue;
        };
        let try_opts = opts.clone().with_map(map);
        if PgSource::connect(target.clone(), try_opts.clone())
            .await
            .is_ok()
        {
            let table =
                TableName::parse(&try_opts.table).map_or(try_opts.table.clone(), |t| t.to_string());
            out.push((preset, table));
        }
    }
    out
}
