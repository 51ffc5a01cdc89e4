//! `burnrate db init --partitioned`: `cost_events` as a table partitioned by month
//! on `timestamp`, for tables too big to scan whole.
//!
//! Every backfill query bounds `timestamp` (one day per query), so PostgreSQL reads
//! only that day's month partition (`explain_backfill_day` shows the plan); the tail
//! reads the `(tx, id)` index of each partition, which costs the same per poll as on
//! a plain table for the few partitions a year holds. A DEFAULT partition takes rows
//! dated outside the partitions made so far, so no insert ever fails; running the
//! command again (monthly, from cron) adds the months ahead.

use std::fmt;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use tokio_postgres::{Client, GenericClient};

use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::schema::{TableName, columns_ddl, init_with_client, lock_for_init, quote_ident};

/// Months kept ready behind and ahead of the current one.
pub const MONTHS_BEHIND: u32 = 12;
pub const MONTHS_AHEAD: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    pub table: String,
    /// Partitions made by this run, oldest first (the default one last).
    pub created: Vec<String>,
    /// Partitions of the table after the run.
    pub total: usize,
}

impl fmt::Display for PartitionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created.is_empty() {
            write!(
                f,
                "{} is partitioned by month ({} partitions); none were missing",
                self.table, self.total
            )
        } else {
            write!(
                f,
                "{} is partitioned by month ({} partitions); created {}",
                self.table,
                self.total,
                self.created.join(", ")
            )?;
            write!(
                f,
                "\nrun `burnrate db init --partitioned` again each month (cron) to add the months ahead"
            )
        }
    }
}

/// The first instant of the month `months` after (or before) the one holding `at`.
fn month_start(at: DateTime<Utc>, months: i32) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).expect("day 1 exists");
    let shifted = if months >= 0 {
        first.checked_add_months(Months::new(months as u32))
    } else {
        first.checked_sub_months(Months::new(months.unsigned_abs()))
    }
    .expect("a month within range");
    Utc.from_utc_datetime(&shifted.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// A partition's name in the table's schema: `<table>_pYYYYMM`, cut to 63 bytes as
/// index names are.
fn partition_name(table: &TableName, suffix: &str) -> (String, String) {
    let bare = table.index_name(suffix);
    let quoted = match table.schema() {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&bare)),
        None => quote_ident(&bare),
    };
    (bare, quoted)
}

/// Creates the table partitioned (if missing), its indexes, and the monthly
/// partitions from `MONTHS_BEHIND` before `now` to `MONTHS_AHEAD` after it, plus the
/// default one. Idempotent. A plain table of that name is refused with the way out.
pub async fn init_partitioned(
    target: &ConnectTarget,
    table: &str,
    now: DateTime<Utc>,
) -> Result<(super::schema::InitReport, PartitionReport), SourceError> {
    let table = TableName::parse(table)?;
    let mut client = target.connect().await?;
    init_partitioned_with_client(&mut client, &table, &target.endpoint, now).await
}

pub async fn init_partitioned_with_client(
    client: &mut Client,
    table: &TableName,
    endpoint: &str,
    now: DateTime<Utc>,
) -> Result<(super::schema::InitReport, PartitionReport), SourceError> {
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let q = table.quoted();
    let created_parent = {
        let txn = client
            .transaction()
            .await
            .map_err(|e| ctx.db(e, "starting db init --partitioned"))?;
        lock_for_init(&txn, &q, &ctx).await?;
        let created = match relkind(&txn, &q, &ctx).await? {
            Some('p') => false,
            Some(_) => {
                return Err(SourceError::Refused {
                    command: "db init --partitioned",
                    table: table_text.clone(),
                    endpoint: endpoint.to_string(),
                    reason: "it is a plain table (not partitioned), and PostgreSQL cannot \
                             partition a table in place. Either keep it as it is (`burnrate db \
                             init` without --partitioned), or create the partitioned table under \
                             another name with `--config` pointing database.table at it, copy the \
                             rows over (INSERT ... SELECT), and swap the names"
                        .into(),
                });
            }
            None => {
                txn.batch_execute(&format!(
                    "CREATE TABLE {q} ({}) PARTITION BY RANGE (\"timestamp\")",
                    columns_ddl()
                ))
                .await
                .map_err(|e| ctx.db(e, "creating the partitioned table"))?;
                true
            }
        };
        txn.commit()
            .await
            .map_err(|e| ctx.db(e, "committing the partitioned table"))?;
        created
    };
    // Columns and indexes as for a plain table: indexes made on the parent are made
    // on every partition, present and future.
    let mut init = init_with_client(client, table, endpoint).await?;
    init.created_table = created_parent;

    let txn = client
        .transaction()
        .await
        .map_err(|e| ctx.db(e, "starting to add partitions"))?;
    lock_for_init(&txn, &q, &ctx).await?;
    let existing: Vec<String> = txn
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1)",
            &[&q],
        )
        .await
        .map_err(|e| ctx.db(e, "listing partitions"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut created = Vec::new();
    for m in -(MONTHS_BEHIND as i32)..=(MONTHS_AHEAD as i32) {
        let from = month_start(now, m);
        let to = month_start(now, m + 1);
        let (bare, quoted) = partition_name(table, &format!("p{}", from.format("%Y%m")));
        if existing.contains(&bare) {
            continue;
        }
        // Bounds are instants (UTC month starts): the literal is unambiguous.
        txn.batch_execute(&format!(
            "CREATE TABLE {quoted} PARTITION OF {q} FOR VALUES FROM ('{}') TO ('{}')",
            from.to_rfc3339(),
            to.to_rfc3339()
        ))
        .await
        .map_err(|e| {
            ctx.unexpected(format!(
                "creating partition {bare} failed ({}). If rows dated in that month already sit \
                 in the default partition, move them first: create the partition as a plain table \
                 with the same columns, move the rows out of the default partition into it, then \
                 ALTER TABLE ... ATTACH PARTITION",
                super::error::describe_driver_error(&e)
            ))
        })?;
        created.push(bare);
    }
    let (bare, quoted) = partition_name(table, "pdefault");
    if !existing.contains(&bare) {
        txn.batch_execute(&format!("CREATE TABLE {quoted} PARTITION OF {q} DEFAULT"))
            .await
            .map_err(|e| ctx.db(e, "creating the default partition"))?;
        created.push(bare);
    }
    txn.commit()
        .await
        .map_err(|e| ctx.db(e, "committing the partitions"))?;
    Ok((
        init,
        PartitionReport {
            table: table_text.clone(),
            total: existing.len() + created.len(),
            created,
        },
    ))
}

/// `r` plain, `p` partitioned, ... None when there is no such table.
async fn relkind(
    txn: &impl GenericClient,
    quoted: &str,
    ctx: &ErrorContext<'_>,
) -> Result<Option<char>, SourceError> {
    let row = txn
        .query_one(
            "SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1))",
            &[&quoted],
        )
        .await
        .map_err(|e| ctx.db(e, "looking the table up"))?;
    let kind: Option<String> = row.get(0);
    Ok(kind.and_then(|k| k.chars().next()))
}

/// The plan of one backfill day-query (the day before `day_end`), as burnrate runs
/// it: on a partitioned table it names only the partition holding that day.
pub async fn explain_backfill_day(
    client: &Client,
    table: &TableName,
    endpoint: &str,
    day_end: DateTime<Utc>,
) -> Result<String, SourceError> {
    use super::sql::{Horizon, Params, Sql};
    let map = super::columns::MapSpec::build(&Default::default(), None, &table.to_string())
        .map_err(|m| SourceError::ColumnMap {
            table: table.to_string(),
            endpoint: endpoint.to_string(),
            message: m,
        })?;
    let info = super::schema::inspect(client, table, &map, endpoint).await?;
    let sql = Sql::new(&info);
    let mut p = Params::default();
    let from = p.push(day_end - chrono::Duration::days(1));
    let to = p.push(day_end);
    let minute_floor = p.push(day_end);
    let phase = p.push(0i64);
    let filter = sql
        .horizon_filter(None, &Horizon::Snapshot, &mut p)
        .unwrap_or_else(|| "true".into());
    let text = format!(
        "EXPLAIN (COSTS OFF) {}",
        sql.backfill_groups(from, Some(to), minute_floor, phase, &filter)
    );
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let rows = client
        .query(&text, &p.refs())
        .await
        .map_err(|e| ctx.db(e, "explaining a backfill query"))?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_across_years() {
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        assert_eq!(month_start(at, 0).to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(month_start(at, 2).to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            month_start(at, -11).to_rfc3339(),
            "2025-12-01T00:00:00+00:00"
        );
    }

    #[test]
    fn partition_names_follow_the_table_and_fit() {
        let t = TableName::parse("billing.cost_events").unwrap();
        let (bare, quoted) = partition_name(&t, "p202611");
        assert_eq!(bare, "cost_events_p202611");
        assert_eq!(quoted, "\"billing\".\"cost_events_p202611\"");
        let long = TableName::parse(&"x".repeat(63)).unwrap();
        assert_eq!(partition_name(&long, "pdefault").0.len(), 63);
    }
}
