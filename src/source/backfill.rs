//! The backfill: history aggregated server-side, one query per six hours, newest first, all
//! in ONE repeatable-read snapshot whose horizon becomes the tail's starting point.
//!
//! Interruptions are exact without buffering the history in memory: each chunk is
//! sent as soon as it is read, and the plan remembers, per chunk, the horizon it was
//! counted at. A retry on a new connection takes a new snapshot and, for a chunk
//! already sent, reads only the rows between the old horizon and the new one (an
//! increment); unsent chunks are read in full. Every `Backfill` message is therefore
//! a delta to add, and no row is counted twice or skipped. The plan (chunk bounds,
//! minute floor) stays as first computed, so increments land in the same buckets.
//! Keyset mode has no horizon to compare: a sent chunk reads nothing more, and its
//! rows that arrived since are left unseen for the tail's overlap window.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;

use super::error::{ErrorContext, SourceError};
use super::idgaps::GapTracker;
use super::keyset::KeysetTracker;
use super::pg::{Cursor, Live, PgSource, client_deadline, epoch_to_utc, timed};
use super::sql::{Horizon, Params, SNAPSHOT_XMIN};
use crate::calendar::Calendar;
use crate::model::{Agg, Connection, Fact, FactBatch, RejectReason, SourceMsg, TailMode};
use crate::money::Money;
use crate::store::{Store, StoreConfig};

/// Id-overlap mode: how far below the highest id the backfill looks for ids still
/// missing (transactions in flight), to await them like any later gap.
pub const ID_GAP_WINDOW: i64 = 50_000;

#[derive(Debug, Clone)]
pub(super) struct BackfillPlan {
    history_start: DateTime<Utc>,
    /// Rows from here on are grouped by minute, older ones by calendar hour.
    minute_floor: DateTime<Utc>,
    phase: i64,
    /// [from, to) per query, newest first; the newest is open-ended so future-dated
    /// rows are not lost.
    chunks: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// Per step (the chunks, then the reject count): the horizon already sent.
    sent: Vec<Option<Horizon>>,
    /// Keyset mode: the window keys counted so far, kept across attempts.
    keyset: Option<KeysetTracker>,
}

/// The span of one backfill query. A chunk's groups are held twice while they are
/// decoded (the rows, then the facts) and are all sent before the chunk counts as
/// read, so the chunk bounds the backfill's transient memory: six hours of the
/// benchmark's 50,000 users are about 60,000 groups (a day was 230,000, some 200 MB
/// in flight).
const CHUNK: Duration = Duration::hours(6);

impl BackfillPlan {
    pub(super) fn new(cfg: &StoreConfig, now: DateTime<Utc>) -> BackfillPlan {
        let history_start = Store::history_start(cfg, now);
        // The store's own rule, so minute groups are exactly what it keeps by minute.
        let minute_floor = Calendar::minute_start(Store::new(*cfg, now).minute_floor(now));
        let mut chunks = Vec::new();
        let mut from = history_start;
        while from + CHUNK <= now {
            chunks.push((from, Some(from + CHUNK)));
            from += CHUNK;
        }
        chunks.push((from, None));
        chunks.reverse();
        let sent = vec![None; chunks.len() + 1];
        BackfillPlan {
            history_start,
            minute_floor,
            phase: cfg.calendar.phase_secs(),
            chunks,
            sent,
            keyset: None,
        }
    }

    /// True if the chunk holding `at` was already sent (at some horizon).
    fn sent_covers(&self, at: DateTime<Utc>) -> bool {
        self.chunks
            .iter()
            .position(|&(from, to)| from <= at && to.is_none_or(|to| at < to))
            .is_some_and(|step| self.sent[step].is_some())
    }

    /// Rollup mode: hours before this come from the rollup (the billing hour
    /// holding the minute floor: the rollup has hours, the store wants minutes).
    fn rollup_before(&self) -> DateTime<Utc> {
        let t = self.minute_floor.timestamp();
        let hour = (t - self.phase).div_euclid(3600) * 3600 + self.phase;
        DateTime::from_timestamp(hour, 0).unwrap_or(self.minute_floor)
    }

    pub(super) fn total_steps(&self) -> u64 {
        self.sent.len() as u64
    }
}

impl PgSource {
    /// Reads the history into `tx` as `Backfill` messages (the last one `done`), with
    /// `Backfilling` progress, then sets the tail's starting point. Does nothing once
    /// complete; after an interruption, call again (on any connection) to finish
    /// exactly. `now` fixes the history window on the first call.
    pub async fn backfill(
        &mut self,
        tx: &mpsc::Sender<SourceMsg>,
        now: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        if self.cursor.is_some() {
            return Ok(());
        }
        self.ensure_connected().await?;
        let mode = self.mode.unwrap_or(TailMode::TxWatermark);
        let plan = self
            .plan
            .get_or_insert_with(|| BackfillPlan::new(&self.opts.store, now));
        let total = plan.total_steps();
        self.status
            .send(
                tx,
                Connection::Backfilling {
                    done_steps: 0,
                    total_steps: total,
                },
                mode,
                None,
            )
            .await?;

        let ctx = ErrorContext {
            endpoint: &self.target.endpoint,
            table: &self.table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let limit = client_deadline(self.opts.statement_timeout);
        let Some(Live { client, sql, info }) = self.conn.as_mut() else {
            return Err(ctx.unexpected("no connection after connecting"));
        };
        let txn = timed(
            &ctx,
            limit,
            "starting the backfill",
            client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )
        .await?;

        // The horizon comes first: a repeatable-read snapshot is taken by the first
        // statement and every later statement of the backfill sees exactly it.
        let (horizon, cursor) = match mode {
            TailMode::KeysetOverlap => {
                // The keys inside the tail's first overlap window that this backfill
                // counts; the tail skips them. A retry keeps the first attempt's
                // tracker (its newest row fixes the window) and adds only keys of
                // chunks it reads in full now: rows that arrived since in chunks
                // already sent stay unseen, so the tail counts them once.
                let mut tracker = plan
                    .keyset
                    .clone()
                    .unwrap_or_else(|| KeysetTracker::new(self.opts.map.overlap));
                let newest = timed(
                    &ctx,
                    limit,
                    "reading the newest timestamp",
                    txn.query_opt(&sql.keyset_newest(), &[]),
                )
                .await?;
                let snapshot_newest: Option<DateTime<Utc>> =
                    newest.map(|row| get(&row, 0, &ctx)).transpose()?;
                if let Some(newest) = tracker.newest().or(snapshot_newest) {
                    let overlap =
                        Duration::from_std(self.opts.map.overlap).unwrap_or(Duration::minutes(2));
                    let cutoff = newest - overlap;
                    let keys = timed(
                        &ctx,
                        limit,
                        "reading the keys of the newest rows",
                        txn.query(&sql.keyset_window(&info.map), &[&cutoff]),
                    )
                    .await?;
                    for r in &keys {
                        let at: DateTime<Utc> = get(r, 1, &ctx)?;
                        if plan.sent_covers(at) {
                            continue;
                        }
                        let key: Option<String> = get(r, 0, &ctx)?;
                        tracker.observe(&key.unwrap_or_default(), at);
                    }
                    // A first snapshot without rows left no newest: start the tail's
                    // window from this one's, not from the beginning of the table.
                    tracker.assume_newest(newest);
                }
                plan.keyset = Some(tracker.clone());
                (Horizon::Snapshot, Cursor::Keyset(tracker))
            }
            TailMode::IdOverlap => {
                let row = timed(
                    &ctx,
                    limit,
                    "reading the id range",
                    txn.query_one(&sql.id_bounds(), &[]),
                )
                .await?;
                let max: Option<i64> = get(&row, 0, &ctx)?;
                let min: Option<i64> = get(&row, 1, &ctx)?;
                let (max_id, tracker) = match (max, min) {
                    (Some(max), Some(min)) => {
                        let start = max.saturating_sub(ID_GAP_WINDOW).max(min.saturating_sub(1));
                        let ids = timed(
                            &ctx,
                            limit,
                            "reading recent ids",
                            txn.query(&sql.id_window(), &[&start, &max]),
                        )
                        .await?;
                        let mut tracker = GapTracker::new(start);
                        let seen_at = Instant::now();
                        for r in &ids {
                            tracker.observe(get(r, 0, &ctx)?, seen_at);
                        }
                        (max, tracker)
                    }
                    _ => (0, GapTracker::new(0)),
                };
                (
                    Horizon::Id {
                        max_id,
                        gaps: tracker.pending_ranges(),
                    },
                    Cursor::Id(tracker),
                )
            }
            _ => {
                let row = timed(
                    &ctx,
                    limit,
                    "reading the watermark",
                    txn.query_one(SNAPSHOT_XMIN, &[]),
                )
                .await?;
                let text: String = get(&row, 0, &ctx)?;
                let xmin: u64 = text
                    .parse()
                    .map_err(|_| ctx.unexpected(format!("snapshot xmin {text:?}")))?;
                // Tail from (xmin, -inf): every row with tx >= xmin, none below.
                (
                    Horizon::Tx { xmin },
                    Cursor::Tx {
                        tx: xmin,
                        id: i64::MIN,
                    },
                )
            }
        };
        tracing::info!(table = %ctx.table, ?horizon, steps = total, "backfill started");

        // Rollup mode: read in this snapshot, so the rollup and the raw rows past
        // its watermark add up to exactly the rows below the horizon.
        let rollup_tables = super::rollup::RollupTables::of(&self.table);
        let scoped = self.opts.tenant.is_some();
        let rollup = match (self.opts.rollup, &horizon) {
            (true, Horizon::Tx { .. }) => {
                match super::rollup::read_state(&txn, &rollup_tables, &ctx).await? {
                    Some(state) if state.phase == plan.phase => {
                        Some((state.upto, plan.rollup_before()))
                    }
                    Some(state) => {
                        tracing::warn!(
                            rollup_phase = state.phase,
                            phase = plan.phase,
                            "rollup: made for another billing zone; reading the raw rows \
                             (rebuild it with `burnrate db init --rollup --rebuild`)"
                        );
                        None
                    }
                    None => {
                        tracing::warn!(
                            "database.rollup is on but there is no rollup; reading the raw rows \
                             (create it with `burnrate db init --rollup`)"
                        );
                        None
                    }
                }
            }
            _ => None,
        };

        for step in 0..plan.chunks.len() {
            let (chunk_from, chunk_to) = plan.chunks[step];
            let mut p = Params::default();
            let from = p.push(chunk_from);
            let to = chunk_to.map(|t| p.push(t));
            let minute_floor = p.push(plan.minute_floor);
            let phase = p.push(plan.phase);
            let mut filter = sql
                .horizon_filter(plan.sent[step].as_ref(), &horizon, &mut p)
                .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
            // A whole chunk before the recent hours, read for the first time: its
            // rolled-up hours, and the raw rows the rollup has not taken in.
            let from_rollup = match (rollup, chunk_to) {
                (Some((upto, before)), Some(chunk_to))
                    if plan.sent[step].is_none() && chunk_to <= before =>
                {
                    let upto = p.push(upto.to_string());
                    filter = format!("({filter}) AND {}", sql.tx_at_least(&upto));
                    let mut rp = Params::default();
                    let (rf, rt) = (rp.push(chunk_from), rp.push(chunk_to));
                    let rows = timed(
                        &ctx,
                        limit,
                        "reading the rollup",
                        txn.query(
                            &super::rollup::groups_sql(&rollup_tables, &rf, &rt, scoped),
                            &rp.refs(),
                        ),
                    )
                    .await?;
                    self.read_rollup = true;
                    Some(groups_to_batch(&rows, &ctx)?)
                }
                _ => None,
            };
            let text = sql.backfill_groups(from, to, minute_floor, phase, &filter);
            let rows = timed(
                &ctx,
                limit,
                "aggregating history",
                txn.query(&text, &p.refs()),
            )
            .await?;
            let mut batch = groups_to_batch(&rows, &ctx)?;
            drop(rows);
            if let Some(rolled) = from_rollup {
                batch.rows += rolled.rows;
                batch.facts.extend(rolled.facts);
                for (reason, n) in rolled.rejected {
                    *batch.rejected.entry(reason).or_default() += n;
                }
            }
            self.computed_rows += batch.facts.iter().map(|f| f.agg.computed).sum::<u64>();
            for part in split_batch(batch, super::run::FACTS_PER_MESSAGE) {
                tx.send(SourceMsg::Backfill {
                    batch: part,
                    done: false,
                })
                .await
                .map_err(|_| SourceError::ChannelClosed)?;
            }
            plan.sent[step] = Some(horizon.clone());
            let done_steps = step as u64 + 1;
            self.status
                .send(
                    tx,
                    Connection::Backfilling {
                        done_steps,
                        total_steps: total,
                    },
                    mode,
                    None,
                )
                .await?;
        }

        let last = plan.chunks.len();
        let mut p = Params::default();
        let from = p.push(plan.history_start);
        let mut filter = sql
            .horizon_filter(plan.sent[last].as_ref(), &horizon, &mut p)
            .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
        let mut counted = Vec::new();
        if let (Some((upto, before)), None) = (rollup, &plan.sent[last]) {
            // Rejected rows the rollup holds for the hours it covers here, and the
            // raw ones outside it.
            let (upto, before_param) = (p.push(upto.to_string()), p.push(before));
            filter = format!(
                "({filter}) AND {}",
                sql.outside_rollup(&upto, &before_param)
            );
            let mut rp = Params::default();
            let (rf, rt) = (rp.push(plan.history_start), rp.push(before));
            counted.push(
                timed(
                    &ctx,
                    limit,
                    "counting rejected rows in the rollup",
                    txn.query_one(
                        &super::rollup::rejects_sql(&rollup_tables, &rf, Some(&rt), scoped),
                        &rp.refs(),
                    ),
                )
                .await?,
            );
        }
        counted.push(
            timed(
                &ctx,
                limit,
                "counting rejected rows",
                txn.query_one(&sql.backfill_rejects(from, &filter), &p.refs()),
            )
            .await?,
        );
        let mut batch = FactBatch::default();
        // The columns of `Sql::backfill_rejects`, in this order.
        for (i, reason) in RejectReason::ALL.into_iter().enumerate() {
            let mut n = 0;
            for row in &counted {
                n += count(get::<i64>(row, i, &ctx)?, &ctx)?;
            }
            if n > 0 {
                batch.rejected.insert(reason, n);
                batch.rows += n;
            }
        }
        tx.send(SourceMsg::Backfill { batch, done: true })
            .await
            .map_err(|_| SourceError::ChannelClosed)?;
        plan.sent[last] = Some(horizon);
        // Everything is sent: from here on only the tail may add rows.
        self.cursor = Some(cursor);
        self.plan = None;
        if let Err(e) = txn.commit().await {
            tracing::debug!(error = %e, "ending the read-only backfill transaction failed; harmless");
        }
        tracing::info!(table = %ctx.table, "backfill done");
        self.status.send(tx, Connection::Live, mode, None).await
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    ctx: &ErrorContext<'_>,
) -> Result<T, SourceError> {
    row.try_get(idx)
        .map_err(|e| ctx.unexpected(format!("column {idx}: {e}")))
}

fn count(n: i64, ctx: &ErrorContext<'_>) -> Result<u64, SourceError> {
    u64::try_from(n).map_err(|_| ctx.unexpected(format!("negative count {n}")))
}

/// Rows of `Sql::backfill_groups` as facts, one per (bucket, names).
/// Splits a batch into parts of at most `max` facts (rows and rejects travel with
/// the first part); an empty batch gives no part.
fn split_batch(mut batch: FactBatch, max: usize) -> Vec<FactBatch> {
    if batch.facts.is_empty() && batch.rejected.is_empty() {
        return Vec::new();
    }
    if batch.facts.len() <= max {
        return vec![batch];
    }
    let max = max.max(1);
    let mut rest = batch.facts.split_off(max);
    let mut parts = vec![batch];
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(max));
        parts.push(FactBatch {
            rows: rest.iter().map(|f| f.agg.requests).sum(),
            facts: rest,
            ..FactBatch::default()
        });
        rest = tail;
    }
    // The first part keeps the batch's row count: take the others' share out.
    let moved: u64 = parts[1..].iter().map(|p| p.rows).sum();
    parts[0].rows = parts[0].rows.saturating_sub(moved);
    parts
}

fn groups_to_batch(rows: &[Row], ctx: &ErrorContext<'_>) -> Result<FactBatch, SourceError> {
    let mut batch = FactBatch {
        facts: Vec::with_capacity(rows.len()),
        ..Default::default()
    };
    for r in rows {
        let at = epoch_to_utc(get(r, 0, ctx)?, ctx)?;
        let names: [String; 5] = [
            get(r, 1, ctx)?,
            get(r, 2, ctx)?,
            get(r, 3, ctx)?,
            get(r, 4, ctx)?,
            get(r, 5, ctx)?,
        ];
        let cost_text: Option<String> = get(r, 6, ctx)?;
        let requests = count(get(r, 7, ctx)?, ctx)?;
        let input_tokens = count(get(r, 8, ctx)?, ctx)?;
        let output_tokens = count(get(r, 9, ctx)?, ctx)?;
        // Rows of the group whose cost came from the price list.
        let computed = count(get(r, 10, ctx)?, ctx)?;
        batch.rows += requests;
        // Rows here are finite one by one; only a sum beyond Money's range can fail.
        match cost_text.as_deref().map(str::parse::<Money>) {
            Some(Ok(cost)) => batch.facts.push(Fact {
                at,
                names,
                agg: Agg {
                    cost,
                    requests,
                    input_tokens,
                    output_tokens,
                    computed,
                },
            }),
            _ => {
                tracing::warn!(%at, "a group's cost sum is out of range; counted as rejected");
                *batch
                    .rejected
                    .entry(RejectReason::CostOutOfRange)
                    .or_default() += requests;
            }
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn plan_covers_history_in_six_hour_chunks_newest_first() {
        let cfg = StoreConfig {
            retention_hours: 48,
            minute_retention: 180,
            ..Default::default()
        };
        let now = utc("2026-11-28T12:30:00Z");
        let plan = BackfillPlan::new(&cfg, now);
        // The month start is earlier than 48 hours back, so history starts there.
        assert_eq!(plan.history_start, utc("2026-11-01T00:00:00Z"));
        assert_eq!(plan.minute_floor, utc("2026-11-28T09:30:00Z"));
        assert_eq!(
            plan.chunks.first(),
            Some(&(utc("2026-11-28T12:00:00Z"), None))
        );
        assert_eq!(
            plan.chunks.last(),
            Some(&(
                utc("2026-11-01T00:00:00Z"),
                Some(utc("2026-11-01T06:00:00Z"))
            ))
        );
        assert_eq!(plan.chunks.len(), 27 * 4 + 3);
        for pair in plan.chunks.windows(2) {
            assert_eq!(pair[1].1, Some(pair[0].0), "chunks are contiguous");
        }
        assert_eq!(plan.total_steps(), 27 * 4 + 3 + 1);
    }

    #[test]
    fn big_batches_travel_in_parts_that_add_up() {
        let at = utc("2026-11-28T12:00:00Z");
        let fact = |i: u64| Fact {
            at,
            names: [
                format!("f{i}"),
                "u".into(),
                "m".into(),
                "t".into(),
                "r".into(),
            ],
            agg: Agg {
                requests: i + 1,
                ..Agg::default()
            },
        };
        let mut batch = FactBatch {
            facts: (0..7).map(fact).collect(),
            ..FactBatch::default()
        };
        batch.rows = batch.facts.iter().map(|f| f.agg.requests).sum::<u64>() + 5;
        batch.rejected.insert(RejectReason::NullCost, 5);
        let parts = split_batch(batch.clone(), 3);
        assert_eq!(
            parts.iter().map(|p| p.facts.len()).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        assert_eq!(parts.iter().map(|p| p.rows).sum::<u64>(), batch.rows);
        assert_eq!(parts[0].rejected, batch.rejected);
        assert!(parts[1..].iter().all(|p| p.rejected.is_empty()));
        let names: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.facts.iter().map(|f| f.names[0].as_str()))
            .collect();
        assert_eq!(names, ["f0", "f1", "f2", "f3", "f4", "f5", "f6"]);
        assert_eq!(split_batch(batch.clone(), 10).len(), 1);
        assert!(split_batch(FactBatch::default(), 3).is_empty());
    }
}
