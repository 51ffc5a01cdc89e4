//! Rollup mode (`database.rollup`): an hourly rollup table kept next to the raw
//! table, so the cold start reads hours already summed instead of scanning the raw
//! rows of 35 days.
//!
//! `<table>_rollup` holds, per billing hour and combination of the five names, the
//! exact sums of the valid rows; `<table>_rollup_rejects` the rejected rows by hour
//! and reason; `<table>_rollup_state` the watermark `upto`: every row with
//! `tx < upto` is in the rollup, none at or past it. A roll step moves `upto` to the
//! current snapshot's xmin (the tail's own watermark, so rows that commit late are
//! rolled exactly once) and adds the rows in between, in one transaction: a crash
//! leaves either both or neither. One instance rolls at a time: whoever holds a
//! session advisory lock on its source connection (released when it disconnects,
//! so another instance takes over).
//!
//! The backfill then reads, for each six-hour chunk before the recent hours, the rollup's
//! hours plus the raw rows at or past `upto` (late or not yet rolled), all in its
//! one repeatable-read snapshot; the recent hours come from the raw rows, by minute,
//! as without rollups. Hours are aligned with the billing zone's phase recorded in
//! the state; a different phase (the zone changed) makes burnrate ignore the rollup
//! until it is rebuilt (`burnrate db init --rollup --rebuild`).

use std::fmt;
use std::time::Instant;

use tokio_postgres::{Client, GenericClient};

use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::schema::{TableInfo, TableName, quote_ident};
use super::sql::{GroupKey, Horizon, Params, SNAPSHOT_XMIN, Sql, compare_key};

/// The rollup's tables, quoted, in the raw table's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupTables {
    pub rollup: String,
    pub rejects: String,
    /// The unique index of `rejects` (bare: an index lives in its table's schema).
    pub rejects_key: String,
    pub state: String,
}

impl RollupTables {
    pub fn of(table: &TableName) -> RollupTables {
        let q = |suffix: &str| {
            let bare = table.index_name(suffix);
            match table.schema() {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&bare)),
                None => quote_ident(&bare),
            }
        };
        RollupTables {
            rollup: q("rollup"),
            rejects: q("rollup_rejects"),
            rejects_key: quote_ident(&table.index_name("rollup_rejects_key")),
            state: q("rollup_state"),
        }
    }
}

/// What the rollup holds: up to which transaction, with which hour phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupState {
    /// Every row with `tx` below this is rolled up; none at or past it.
    pub upto: u64,
    pub phase: i64,
}

/// What one roll step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollStats {
    /// Groups inserted or added to.
    pub groups: u64,
    /// Raw rows rolled (valid and rejected).
    pub rows: u64,
    pub from: u64,
    pub to: u64,
    pub millis: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupReport {
    pub table: String,
    pub rollup: String,
    pub created: bool,
    pub first_roll: RollStats,
}

impl fmt::Display for RollupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for {}: {} rows rolled into {} hourly groups in {} ms",
            if self.created { "created" } else { "kept" },
            self.rollup.replace('"', ""),
            self.table,
            self.first_roll.rows,
            self.first_roll.groups,
            self.first_roll.millis
        )?;
        write!(
            f,
            "\nset in [database]: rollup = true, and burnrate keeps it up to date while it tails \
             (one instance at a time) and reads it at start"
        )
    }
}

fn lock_key(table: &TableName) -> String {
    format!("burnrate rollup {}", table.quoted())
}

/// A connection of its own for the rollup commands, with the table checked.
struct Session {
    client: Client,
    info: TableInfo,
    tables: RollupTables,
    table_text: String,
    endpoint: String,
}

impl Session {
    async fn open(
        target: &ConnectTarget,
        table: &str,
        map: &super::columns::MapSpec,
    ) -> Result<Session, SourceError> {
        let table = TableName::parse(table)?;
        let client = target.connect().await?;
        let info = super::schema::inspect(&client, &table, map, &target.endpoint).await?;
        Ok(Session {
            client,
            info,
            tables: RollupTables::of(&table),
            table_text: table.to_string(),
            endpoint: target.endpoint.clone(),
        })
    }

    fn ctx(&self) -> ErrorContext<'_> {
        ErrorContext {
            endpoint: &self.endpoint,
            table: &self.table_text,
            statement_timeout: Default::default(),
        }
    }
}

/// Creates the rollup tables (if missing) and rolls everything committed so far.
/// `rebuild` empties them first (after a change of billing zone or price list).
pub async fn init_rollup(
    target: &ConnectTarget,
    table: &str,
    map: &super::columns::MapSpec,
    phase: i64,
    rebuild: bool,
) -> Result<RollupReport, SourceError> {
    let s = Session::open(target, table, map).await?;
    let ctx = s.ctx();
    if !supported(&s.info) {
        return Err(ctx.unexpected(
            "rollup mode needs the tx column (the gap-free watermark); run `burnrate db init` \
             on a table of ours first, or go without rollups",
        ));
    }
    let created = create_tables(&s.client, &s.tables, phase, rebuild, &ctx).await?;
    let first_roll = roll(&s.client, &Sql::new(&s.info), &s.tables, &ctx).await?;
    Ok(RollupReport {
        table: s.table_text.clone(),
        rollup: s.tables.rollup.clone(),
        created,
        first_roll,
    })
}

/// One roll step on a connection of its own, for `burnrate db rollup` (cron) and
/// tests; waits for a dashboard's roll in progress rather than racing it.
pub async fn roll_once(
    target: &ConnectTarget,
    table: &str,
    map: &super::columns::MapSpec,
) -> Result<RollStats, SourceError> {
    let s = Session::open(target, table, map).await?;
    let ctx = s.ctx();
    if read_state(&s.client, &s.tables, &ctx).await?.is_none() {
        return Err(ctx.unexpected(
            "there is no rollup for this table yet; create it with `burnrate db init --rollup`",
        ));
    }
    roll(&s.client, &Sql::new(&s.info), &s.tables, &ctx).await
}

async fn create_tables(
    client: &Client,
    t: &RollupTables,
    phase: i64,
    rebuild: bool,
    ctx: &ErrorContext<'_>,
) -> Result<bool, SourceError> {
    let existed: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.state])
        .await
        .map_err(|e| ctx.db(e, "looking for the rollup"))?
        .get(0);
    let names = "feature_name text NOT NULL, user_id text NOT NULL, model text NOT NULL, \
                 tenant_id text NOT NULL, region text NOT NULL";
    let mut ddl = format!(
        "CREATE TABLE IF NOT EXISTS {r} (hour timestamptz NOT NULL, {names}, \
           cost_usd numeric NOT NULL, requests bigint NOT NULL, input_tokens bigint NOT NULL, \
           output_tokens bigint NOT NULL, computed bigint NOT NULL, \
           PRIMARY KEY (hour, feature_name, user_id, model, tenant_id, region)); \
         CREATE TABLE IF NOT EXISTS {j} (hour timestamptz, tenant_id text NOT NULL, \
           reason smallint NOT NULL, rows bigint NOT NULL); \
         CREATE UNIQUE INDEX IF NOT EXISTS {ji} ON {j} (coalesce(hour, '-infinity'), tenant_id, reason); \
         CREATE TABLE IF NOT EXISTS {s} (one boolean PRIMARY KEY DEFAULT true CHECK (one), \
           upto xid8 NOT NULL, phase bigint NOT NULL, rolled_at timestamptz); \
         INSERT INTO {s} (upto, phase) VALUES ('1'::xid8, {phase}) ON CONFLICT DO NOTHING;",
        r = t.rollup,
        j = t.rejects,
        ji = t.rejects_key,
        s = t.state,
    );
    if rebuild {
        ddl.push_str(&format!(
            "TRUNCATE {r}, {j}; UPDATE {s} SET upto = '1'::xid8, phase = {phase}, rolled_at = NULL;",
            r = t.rollup,
            j = t.rejects,
            s = t.state
        ));
    }
    client
        .batch_execute(&format!("BEGIN; {ddl} COMMIT;"))
        .await
        .map_err(|e| ctx.db(e, "creating the rollup tables"))?;
    Ok(!existed)
}

/// Reads the rollup's state; None when there is no rollup.
pub(super) async fn read_state(
    client: &impl GenericClient,
    t: &RollupTables,
    ctx: &ErrorContext<'_>,
) -> Result<Option<RollupState>, SourceError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.state])
        .await
        .map_err(|e| ctx.db(e, "looking for the rollup"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(&format!("SELECT upto::text, phase FROM {}", t.state), &[])
        .await
        .map_err(|e| ctx.db(e, "reading the rollup's state"))?;
    Ok(match row {
        None => None,
        Some(r) => {
            let upto: String = r.get(0);
            Some(RollupState {
                upto: upto
                    .parse()
                    .map_err(|_| ctx.unexpected(format!("rollup watermark {upto:?}")))?,
                phase: r.get(1),
            })
        }
    })
}

/// Tries to become the instance that rolls (a session lock on this connection).
pub(super) async fn try_elect(
    client: &Client,
    table: &TableName,
    ctx: &ErrorContext<'_>,
) -> Result<bool, SourceError> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&lock_key(table)],
        )
        .await
        .map_err(|e| ctx.db(e, "electing the rollup instance"))?
        .get(0))
}

/// One roll step: the rows from the rollup's watermark to the current xmin, summed
/// into the rollup, and the watermark moved, in one transaction. `sql` must be the
/// table's unscoped builder (no `--tenant`).
pub(super) async fn roll(
    client: &Client,
    sql: &Sql,
    t: &RollupTables,
    ctx: &ErrorContext<'_>,
) -> Result<RollStats, SourceError> {
    let started = Instant::now();
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| ctx.db(e, "starting a roll"))?;
    let result = roll_in_transaction(client, sql, t, ctx).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await;
    let mut stats = result?;
    ended.map_err(|e| ctx.db(e, "committing a roll"))?;
    stats.millis = started.elapsed().as_millis() as u64;
    Ok(stats)
}

async fn roll_in_transaction(
    client: &Client,
    sql: &Sql,
    t: &RollupTables,
    ctx: &ErrorContext<'_>,
) -> Result<RollStats, SourceError> {
    // FOR UPDATE: a second roller (a lock lost and taken over) waits, then sees the
    // moved watermark and rolls only what is left.
    let row = client
        .query_one(
            &format!("SELECT upto::text, phase FROM {} FOR UPDATE", t.state),
            &[],
        )
        .await
        .map_err(|e| ctx.db(e, "reading the rollup's state"))?;
    let (from, phase): (String, i64) = (row.get(0), row.get(1));
    let from: u64 = from
        .parse()
        .map_err(|_| ctx.unexpected(format!("rollup watermark {from:?}")))?;
    // Every transaction below this xmin has ended, now and for any later snapshot:
    // the rows below it are final, whichever statement reads them.
    let xmin: String = client
        .query_one(SNAPSHOT_XMIN, &[])
        .await
        .map_err(|e| ctx.db(e, "reading the watermark"))?
        .get(0);
    let to: u64 = xmin
        .parse()
        .map_err(|_| ctx.unexpected(format!("snapshot xmin {xmin:?}")))?;
    if to <= from {
        return Ok(RollStats {
            from,
            to: from,
            ..RollStats::default()
        });
    }
    let mut p = Params::default();
    let horizon = sql
        .horizon_filter(
            Some(&Horizon::Tx { xmin: from }),
            &Horizon::Tx { xmin: to },
            &mut p,
        )
        .ok_or_else(|| ctx.unexpected("no tx horizon"))?;
    let far = |y| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, y, 1, 1, 0, 0, 0).unwrap();
    let from_ts = p.push(far(1));
    // A minute floor no valid row reaches (future rows are rejected): all hours.
    let minute_floor = p.push(far(9999));
    let phase_param = p.push(phase);
    let groups = sql.backfill_groups(from_ts, None, minute_floor, phase_param, &horizon);
    let r = &t.rollup;
    let added = client
        .query(
            &format!(
                "WITH g(h, f, u, m, t, r, cost, n, i, o, c) AS ({groups}), \
                 up AS (INSERT INTO {r} AS x (hour, feature_name, user_id, model, tenant_id, region, \
                          cost_usd, requests, input_tokens, output_tokens, computed) \
                   SELECT to_timestamp(h), f, u, m, t, r, cost::numeric, n, i, o, c FROM g ORDER BY h \
                   ON CONFLICT (hour, feature_name, user_id, model, tenant_id, region) DO UPDATE SET \
                     cost_usd = x.cost_usd + excluded.cost_usd, requests = x.requests + excluded.requests, \
                     input_tokens = x.input_tokens + excluded.input_tokens, \
                     output_tokens = x.output_tokens + excluded.output_tokens, \
                     computed = x.computed + excluded.computed \
                   RETURNING 1) \
                 SELECT (SELECT count(*) FROM up), (SELECT coalesce(sum(n), 0)::int8 FROM g)"
            ),
            &p.refs(),
        )
        .await
        .map_err(|e| ctx.db(e, "rolling rows up"))?;
    let (groups, valid_rows): (i64, i64) = (added[0].get(0), added[0].get(1));

    // Its own parameters: a statement must use every one it is given.
    let mut rp = Params::default();
    let horizon = sql
        .horizon_filter(
            Some(&Horizon::Tx { xmin: from }),
            &Horizon::Tx { xmin: to },
            &mut rp,
        )
        .ok_or_else(|| ctx.unexpected("no tx horizon"))?;
    let rejects = sql.rejects_by_hour(rp.push(phase), &horizon);
    let j = &t.rejects;
    // One row per (hour, reason) with a count: the six reason columns unpivoted.
    let rejected: i64 = client
        .query_one(
            &format!(
                "WITH g(h, tenant, r0, r1, r2, r3, r4, r5) AS ({rejects}), \
                 u AS (SELECT h, tenant, v.reason, v.rows FROM g, LATERAL (VALUES (0::int2, r0), \
                   (1::int2, r1), (2::int2, r2), (3::int2, r3), (4::int2, r4), (5::int2, r5)) \
                   AS v(reason, rows) WHERE v.rows > 0), \
                 ins AS (INSERT INTO {j} AS x (hour, tenant_id, reason, rows) \
                   SELECT to_timestamp(h), tenant, reason, rows FROM u \
                   ON CONFLICT (coalesce(hour, '-infinity'), tenant_id, reason) \
                   DO UPDATE SET rows = x.rows + excluded.rows) \
                 SELECT coalesce(sum(rows), 0)::int8 FROM u"
            ),
            &rp.refs(),
        )
        .await
        .map_err(|e| ctx.db(e, "rolling rejected rows up"))?
        .get(0);
    client
        .execute(
            &format!(
                "UPDATE {} SET upto = $1::text::xid8, rolled_at = now()",
                t.state
            ),
            &[&to.to_string()],
        )
        .await
        .map_err(|e| ctx.db(e, "moving the rollup's watermark"))?;
    Ok(RollStats {
        groups: groups as u64,
        rows: (valid_rows + rejected) as u64,
        from,
        to,
        millis: 0,
    })
}

/// The backfill's rows of the rollup for hours in `[from, to)` whose group key is
/// above `after` (all of them for None), in the column layout of
/// `Sql::backfill_groups` but with the cost as numeric (`$from`, `$to` are timestamptz
/// parameters). With a tenant scope, only that tenant's groups.
pub(super) fn groups_sql(
    t: &RollupTables,
    from: &str,
    to: &str,
    scoped: bool,
    after: Option<&GroupKey>,
    p: &mut Params,
) -> String {
    let tenant = if scoped {
        " AND tenant_id = current_setting('burnrate.tenant')"
    } else {
        ""
    };
    // A rollup row's group key, in `GroupKey` order.
    let key = "extract(epoch FROM hour)::int8, feature_name COLLATE \"C\", \
         user_id COLLATE \"C\", model COLLATE \"C\", tenant_id COLLATE \"C\", \
         region COLLATE \"C\"";
    let after = after
        .map(|after| format!(" AND {}", compare_key(key, ">", after, p)))
        .unwrap_or_default();
    format!(
        "SELECT {key}, cost_usd, requests, input_tokens, output_tokens, computed \
         FROM {} WHERE hour >= {from}::timestamptz AND hour < {to}::timestamptz{tenant}{after}",
        t.rollup
    )
}

/// Rejected rows in the rollup for hours in `[from, to)` (with `to` None: from
/// `from` on), and those without a timestamp, in the column layout of
/// `Sql::backfill_rejects`; with a tenant scope, only that tenant's.
pub(super) fn rejects_sql(t: &RollupTables, from: &str, to: Option<&str>, scoped: bool) -> String {
    let cols: Vec<String> = (0..6)
        .map(|r| format!("coalesce(sum(rows) FILTER (WHERE reason = {r}), 0)::int8"))
        .collect();
    let scope = if scoped {
        " AND tenant_id = current_setting('burnrate.tenant')"
    } else {
        ""
    };
    // Rows without a timestamp have no hour; they count wherever rejects are read.
    let range = match to {
        Some(to) => {
            format!("(hour IS NULL OR (hour >= {from}::timestamptz AND hour < {to}::timestamptz))")
        }
        None => format!("(hour IS NULL OR hour >= {from}::timestamptz)"),
    };
    format!(
        "SELECT {} FROM {} WHERE {range}{scope}",
        cols.join(", "),
        t.rejects
    )
}

/// Whether a table suits rollups: our tx column, no tenant scope for the roller.
pub(super) fn supported(info: &TableInfo) -> bool {
    info.mode == crate::model::TailMode::TxWatermark
}

/// The rolling side of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Roller {
    elected: bool,
    last: Option<Instant>,
}

impl super::pg::PgSource {
    /// Rollup mode, after a poll: on the elected connection, every `rollup_every`,
    /// adds the rows committed since the last roll. Never fails the tail: trouble is
    /// logged and retried an interval later (a read-only login, say, cannot roll;
    /// the instance that can, does).
    pub async fn maintain_rollup(&mut self) {
        if !self.opts.rollup || self.opts.tenant.is_some() || self.cursor.is_none() {
            return;
        }
        match self.conn.as_ref() {
            Some(live) if supported(&live.info) => {}
            _ => return,
        }
        if self.roller.is_some_and(|r| {
            !r.elected || r.last.is_some_and(|t| t.elapsed() < self.opts.rollup_every)
        }) {
            return;
        }
        // On a standby the rolls go to the primary (`database.primary_url`).
        if self.writer_client().await.is_none() {
            return;
        }
        let Some(live) = self.conn.as_ref() else {
            return;
        };
        let primary = self.primary.client().filter(|c| !c.is_closed());
        let client = match (self.standby, primary) {
            (false, _) => &live.client,
            (true, Some(c)) => c,
            (true, None) => return,
        };
        let table_text = self.table_text.clone();
        let ctx = ErrorContext {
            endpoint: if self.standby {
                self.opts
                    .primary
                    .as_ref()
                    .map_or(self.target.endpoint.as_str(), |p| p.endpoint.as_str())
            } else {
                &self.target.endpoint
            },
            table: &table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let tables = RollupTables::of(&self.table);
        let roller = match self.roller {
            Some(r) => r,
            None => {
                let elected = match read_state(client, &tables, &ctx).await {
                    Ok(Some(_)) => try_elect(client, &self.table, &ctx).await.unwrap_or(false),
                    Ok(None) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "rollup: cannot read its state");
                        false
                    }
                };
                if elected {
                    tracing::info!(table = %table_text, endpoint = %ctx.endpoint, "rollup: this instance keeps the rollup up to date");
                }
                let r = Roller {
                    elected,
                    last: None,
                };
                self.roller = Some(r);
                r
            }
        };
        if !roller.elected
            || roller
                .last
                .is_some_and(|t| t.elapsed() < self.opts.rollup_every)
        {
            return;
        }
        match roll(client, &live.sql, &tables, &ctx).await {
            Ok(stats) => tracing::debug!(?stats, "rollup: rolled"),
            Err(e) => tracing::warn!(error = %e, "rollup: roll failed; retrying later"),
        }
        self.roller = Some(Roller {
            elected: true,
            last: Some(Instant::now()),
        });
    }
}
