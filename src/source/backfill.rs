//! The backfill: history aggregated server-side, one query per six hours, newest first, all
//! in ONE repeatable-read snapshot whose horizon becomes the tail's starting point.
//!
//! Interruptions are exact without buffering the history in memory. Each query's
//! groups are read in pages, in group-key order, and each page is sent before the next
//! is read, so a burst of a million groups costs one page of memory. The plan
//! remembers, per chunk, which keys were sent at which horizon (`ChunkSent`). A retry
//! on a new connection takes a new snapshot and, for keys already sent, reads only the
//! rows between the old horizon and the new one (an increment); keys never sent are
//! read in full. Every `Backfill` message is therefore a delta to add, and no row is
//! counted twice or skipped. The plan (chunk bounds, minute floor) stays as first
//! computed, so increments land in the same buckets. Keyset mode has no horizon to
//! compare: keys already sent read nothing more, and their rows that arrived since are
//! left unseen for the tail's overlap window.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;

use super::error::{ErrorContext, SourceError};
use super::idgaps::GapTracker;
use super::keyset::KeysetTracker;
use super::pg::{Cursor, Live, PgSource, client_deadline, epoch_to_utc, timed};
use super::sql::{GroupKey, Horizon, Params, SNAPSHOT_XMIN, SentRanges};
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
    /// Per chunk: which of its groups were sent, at which horizon.
    sent: Vec<ChunkSent>,
    /// The reject count's horizon, once sent.
    rejects_sent: Option<Horizon>,
    /// Keyset mode: the window keys counted so far, kept across attempts.
    keyset: Option<KeysetTracker>,
    /// Window mode: where the tail's window starts (fixed by the first attempt).
    window_start: Option<DateTime<Utc>>,
    /// Chunks ending at or before this are read coarse (see `Sql::backfill_coarse`):
    /// the store keeps no combinations for them.
    detail_floor: Option<DateTime<Utc>>,
    /// Where the billing month starts: its total so far is read first.
    month_start: DateTime<Utc>,
}

/// The span of one backfill query. Its groups are read in pages, so memory does not
/// depend on it; shorter chunks give finer progress and smaller server-side sorts.
const CHUNK: Duration = Duration::hours(6);

/// Which of a chunk's groups were sent, and at which horizon (see `SentRanges`).
/// Groups are read in key order, so an attempt that stops has sent exactly the keys up
/// to the last one it sent; a later attempt reads, per range, only what is new.
#[derive(Debug, Clone, Default)]
struct ChunkSent {
    ranges: Vec<(Option<GroupKey>, Horizon)>,
}

impl ChunkSent {
    /// True once every group of the chunk was sent (at some horizon).
    fn is_complete(&self) -> bool {
        matches!(self.ranges.last(), Some((None, _)))
    }

    /// Records that the keys up to `upto` (inclusive; None: all) are now counted at
    /// `horizon`.
    fn sent_upto(&mut self, upto: Option<GroupKey>, horizon: &Horizon) {
        match &upto {
            None => self.ranges.clear(),
            Some(key) => self
                .ranges
                .retain(|(upper, _)| upper.as_ref().is_none_or(|u| u > key)),
        }
        self.ranges.insert(0, (upto, horizon.clone()));
    }

    /// The horizon the group `key` was counted at; None if it was never sent.
    fn counted_at(&self, key: &GroupKey) -> Option<&Horizon> {
        self.ranges
            .iter()
            .find(|(upper, _)| upper.as_ref().is_none_or(|u| key <= u))
            .map(|(_, horizon)| horizon)
    }

    /// The highest key sent, if some but not all were.
    fn last_sent(&self) -> Option<&GroupKey> {
        self.ranges.last().and_then(|(upper, _)| upper.as_ref())
    }

    fn ranges(&self) -> &SentRanges {
        &self.ranges
    }
}

impl BackfillPlan {
    pub(super) fn new(cfg: &StoreConfig, now: DateTime<Utc>) -> BackfillPlan {
        let history_start = Store::history_start(cfg, now);
        // The store's own rules, so minute groups are exactly what it keeps by
        // minute, and coarse chunks exactly the hours it keeps coarse.
        let store = Store::new(*cfg, now);
        let minute_floor = Calendar::minute_start(store.minute_floor(now));
        let detail_floor = (store.detail_floor() > store.hour_index(history_start))
            .then(|| cfg.calendar.hour_start(store.detail_floor()));
        let mut chunks = Vec::new();
        let mut from = history_start;
        // Coarse history a billing day at a time: its users are totalled per day.
        if let Some(floor) = detail_floor {
            while from < floor {
                let next_day = cfg.calendar.day_start(from + Duration::hours(26));
                let to = next_day.min(floor);
                chunks.push((from, Some(to)));
                from = to;
            }
        }
        while from + CHUNK <= now {
            chunks.push((from, Some(from + CHUNK)));
            from += CHUNK;
        }
        chunks.push((from, None));
        chunks.reverse();
        let sent = vec![ChunkSent::default(); chunks.len()];
        BackfillPlan {
            history_start,
            minute_floor,
            phase: cfg.calendar.phase_secs(),
            chunks,
            sent,
            rejects_sent: None,
            keyset: None,
            window_start: None,
            detail_floor,
            month_start: cfg.calendar.month_start(now),
        }
    }

    /// Whether chunk `step` is read coarse.
    fn is_coarse(&self, step: usize) -> bool {
        match (self.detail_floor, self.chunks[step].1) {
            (Some(floor), Some(to)) => to <= floor,
            _ => false,
        }
    }

    /// True if the group `key` of a row at `at` was already sent (at some horizon).
    fn sent_covers(&self, at: DateTime<Utc>, key: &GroupKey) -> bool {
        self.chunks
            .iter()
            .position(|&(from, to)| from <= at && to.is_none_or(|to| at < to))
            .is_some_and(|step| self.sent[step].counted_at(key).is_some())
    }

    /// Rollup mode: hours before this come from the rollup (the billing hour
    /// holding the minute floor: the rollup has hours, the store wants minutes).
    fn rollup_before(&self) -> DateTime<Utc> {
        let t = self.minute_floor.timestamp();
        let hour = (t - self.phase).div_euclid(3600) * 3600 + self.phase;
        DateTime::from_timestamp(hour, 0).unwrap_or(self.minute_floor)
    }

    pub(super) fn total_steps(&self) -> u64 {
        self.sent.len() as u64 + 1
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
                    // A retry: the chunks an earlier attempt sent whole, newest first.
                    loaded_from: plan
                        .chunks
                        .iter()
                        .zip(&plan.sent)
                        .take_while(|(_, sent)| sent.is_complete())
                        .last()
                        .map(|(&(from, _), _)| from),
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
                        txn.query(
                            &sql.keyset_window(&info.map),
                            &[&cutoff, &plan.minute_floor, &plan.phase],
                        ),
                    )
                    .await?;
                    for r in &keys {
                        let at: DateTime<Utc> = get(r, 1, &ctx)?;
                        if plan.sent_covers(at, &group_key(r, 2, &ctx)?) {
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
            TailMode::WindowOverlap => {
                // The backfill counts the rows before the window, the tail the
                // window itself: one place for each row.
                let overlap = self.opts.map.overlap;
                let start = *plan.window_start.get_or_insert_with(|| {
                    super::window::WindowTracker::start_for(overlap, now).max(plan.minute_floor)
                });
                (
                    Horizon::Before { start },
                    Cursor::Window(super::window::WindowTracker::new(overlap, start)),
                )
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
                // The tail reads what becomes visible past the snapshot of tx < xmin.
                (
                    Horizon::Tx { xmin },
                    Cursor::Tx(super::txcursor::TxCursor::below(xmin)),
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

        // The month so far in one sum, before the chunks: the header's first figure
        // at any history size (a retry has shown it already). Only for a screen.
        if self.opts.month_first
            && plan.sent.iter().all(|s| s.ranges().is_empty())
            && plan.month_start >= plan.history_start
        {
            let month = read_month_so_far(
                &txn,
                sql,
                &horizon,
                plan,
                rollup,
                &rollup_tables,
                scoped,
                &ctx,
                limit,
            )
            .await?;
            tx.send(SourceMsg::MonthSoFar {
                month_start: plan.month_start,
                agg: month,
            })
            .await
            .map_err(|_| SourceError::ChannelClosed)?;
        }

        for step in 0..plan.chunks.len() {
            let (chunk_from, chunk_to) = plan.chunks[step];
            if plan.is_coarse(step) {
                let coarse = CoarseChunk {
                    from: chunk_from,
                    to: chunk_to.unwrap_or(chunk_from),
                    phase: plan.phase,
                    rollup: rollup.filter(|(_, before)| chunk_to.is_some_and(|t| t <= *before)),
                };
                let batch = read_coarse(
                    &txn,
                    sql,
                    &plan.sent[step],
                    &horizon,
                    &coarse,
                    &rollup_tables,
                    scoped,
                    &ctx,
                    limit,
                )
                .await?;
                self.read_rollup |= coarse.rollup.is_some() && !plan.sent[step].is_complete();
                self.computed_rows += batch
                    .coarse
                    .iter()
                    .filter(|f| f.dim.is_none())
                    .map(|f| f.agg.computed)
                    .sum::<u64>();
                tx.send(SourceMsg::Backfill { batch, done: false })
                    .await
                    .map_err(|_| SourceError::ChannelClosed)?;
                plan.sent[step].sent_upto(None, &horizon);
                self.status
                    .send(
                        tx,
                        Connection::Backfilling {
                            done_steps: step as u64 + 1,
                            total_steps: total,
                            // Chunks go newest first: all of them up to this one are in.
                            loaded_from: Some(chunk_from),
                        },
                        mode,
                        None,
                    )
                    .await?;
                continue;
            }
            let sent = &plan.sent[step];
            let mut p = Params::default();
            let from = p.push(chunk_from);
            let to = chunk_to.map(|t| p.push(t));
            let minute_floor = p.push(plan.minute_floor);
            let phase = p.push(plan.phase);
            // A chunk before the recent hours with groups never sent: those groups'
            // rolled-up hours, and the raw rows the rollup has not taken in.
            let from_rollup = match (rollup, chunk_to) {
                (Some((upto, before)), Some(chunk_to))
                    if !sent.is_complete() && chunk_to <= before =>
                {
                    let upto = p.push(upto.to_string());
                    let (rf, rt) = (p.push(chunk_from), p.push(chunk_to));
                    let groups = super::rollup::groups_sql(
                        &rollup_tables,
                        &rf,
                        &rt,
                        scoped,
                        sent.last_sent(),
                        &mut p,
                    );
                    Some((sql.tx_at_least(&upto), groups))
                }
                _ => None,
            };
            let filter = sql
                .chunk_filter(
                    sent.ranges(),
                    &horizon,
                    from_rollup.as_ref().map(|(raw_also, _)| raw_also.as_str()),
                    &minute_floor,
                    &phase,
                    &mut p,
                )
                .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
            let groups = sql.backfill_groups(from, to, minute_floor, phase, &filter);
            let text = sql.backfill_chunk(&groups, from_rollup.as_ref().map(|(_, g)| g.as_str()));
            self.read_rollup |= from_rollup.is_some();
            // Pages of one query, in key order: each is sent before the next is read,
            // so memory stays at a page however many groups a burst made, and an
            // interruption leaves a key below which everything was sent.
            let portal = timed(
                &ctx,
                limit,
                "aggregating history",
                txn.bind(text.as_str(), &p.refs()),
            )
            .await?;
            let page = self.opts.backfill_page_groups.clamp(1, i32::MAX as usize);
            loop {
                let rows = timed(
                    &ctx,
                    limit,
                    "aggregating history",
                    txn.query_portal(&portal, page as i32),
                )
                .await?;
                let Some(last) = rows.last() else { break };
                let last_key = group_key(last, 0, &ctx)?;
                let full_page = rows.len() >= page;
                let batch = groups_to_batch(&rows, &ctx)?;
                drop(rows);
                self.computed_rows += batch.facts.iter().map(|f| f.agg.computed).sum::<u64>();
                tx.send(SourceMsg::Backfill { batch, done: false })
                    .await
                    .map_err(|_| SourceError::ChannelClosed)?;
                plan.sent[step].sent_upto(Some(last_key), &horizon);
                if !full_page {
                    break;
                }
            }
            plan.sent[step].sent_upto(None, &horizon);
            let done_steps = step as u64 + 1;
            self.status
                .send(
                    tx,
                    Connection::Backfilling {
                        done_steps,
                        total_steps: total,
                        // Chunks go newest first: all of them up to this one are in.
                        loaded_from: Some(chunk_from),
                    },
                    mode,
                    None,
                )
                .await?;
        }

        let mut p = Params::default();
        let from = p.push(plan.history_start);
        let mut filter = sql
            .horizon_filter(plan.rejects_sent.as_ref(), &horizon, &mut p)
            .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
        let mut counted = Vec::new();
        if let (Some((upto, before)), None) = (rollup, &plan.rejects_sent) {
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
        plan.rejects_sent = Some(horizon);
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

/// The total of the billing month's rows below the horizon (from the rollup for
/// the hours it holds, in rollup mode): what the backfill is about to send for the
/// month, in one sum.
#[allow(clippy::too_many_arguments)]
async fn read_month_so_far(
    txn: &tokio_postgres::Transaction<'_>,
    sql: &super::sql::Sql,
    horizon: &Horizon,
    plan: &BackfillPlan,
    rollup: Option<(u64, DateTime<Utc>)>,
    tables: &super::rollup::RollupTables,
    scoped: bool,
    ctx: &ErrorContext<'_>,
    limit: Option<std::time::Duration>,
) -> Result<Agg, SourceError> {
    let mut p = Params::default();
    // Open-ended, as the newest chunk is: a row dated ahead counts where it lands.
    let far = plan.month_start + Duration::days(400);
    let (from, to, phase) = (p.push(plan.month_start), p.push(far), p.push(plan.phase));
    let mut filter = sql
        .horizon_filter(None, horizon, &mut p)
        .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
    let rollup = match rollup {
        Some((upto, before)) if before > plan.month_start => {
            let (upto, before_p) = (p.push(upto.to_string()), p.push(before));
            filter = format!("({filter}) AND {}", sql.outside_rollup(&upto, &before_p));
            let (rf, rt) = (p.push(plan.month_start), p.push(before));
            Some(super::rollup::groups_sql(
                tables, &rf, &rt, scoped, None, &mut p,
            ))
        }
        _ => None,
    };
    let text = sql.span_total(from, to, phase, &filter, rollup.as_deref());
    let row = timed(
        ctx,
        limit,
        "summing the month so far",
        txn.query_one(text.as_str(), &p.refs()),
    )
    .await?;
    let cost: Option<String> = get(&row, 0, ctx)?;
    let cost = match cost.as_deref().map(str::parse::<Money>) {
        None => Money::ZERO,
        Some(Ok(c)) => c,
        Some(Err(_)) => return Err(ctx.unexpected("the month's cost sum is out of range")),
    };
    Ok(Agg {
        cost,
        requests: count(get(&row, 1, ctx)?, ctx)?,
        input_tokens: count(get(&row, 2, ctx)?, ctx)?,
        output_tokens: count(get(&row, 3, ctx)?, ctx)?,
        computed: count(get(&row, 4, ctx)?, ctx)?,
    })
}

/// What a coarse chunk reads: `[from, to)` within one billing day, and in rollup
/// mode the rollup's watermark and the hour before which it serves.
struct CoarseChunk {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    phase: i64,
    rollup: Option<(u64, DateTime<Utc>)>,
}

/// Reads one coarse chunk whole (a few hundred rows per hour and one per user of
/// the day: no paging) as per-dimension facts. A chunk is sent whole or not at all,
/// so a retry reads either all of it or, once sent, only the rows counted since
/// (`chunk_filter` with the chunk complete at its horizon).
#[allow(clippy::too_many_arguments)]
async fn read_coarse(
    txn: &tokio_postgres::Transaction<'_>,
    sql: &super::sql::Sql,
    sent: &ChunkSent,
    horizon: &Horizon,
    chunk: &CoarseChunk,
    tables: &super::rollup::RollupTables,
    scoped: bool,
    ctx: &ErrorContext<'_>,
    limit: Option<std::time::Duration>,
) -> Result<FactBatch, SourceError> {
    let mut p = Params::default();
    let (from, to, phase) = (p.push(chunk.from), p.push(chunk.to), p.push(chunk.phase));
    // Never sent: the rollup's hours and the raw rows it has not taken in.
    let rollup = match chunk.rollup {
        Some((upto, _)) if !sent.is_complete() => {
            let upto = p.push(upto.to_string());
            let (rf, rt) = (p.push(chunk.from), p.push(chunk.to));
            let groups = super::rollup::groups_sql(tables, &rf, &rt, scoped, None, &mut p);
            Some((sql.tx_at_least(&upto), groups))
        }
        _ => None,
    };
    // No minutes in a coarse chunk (and no partly sent keys to compare).
    let floor = "'-infinity'".to_string();
    let filter = sql
        .chunk_filter(
            sent.ranges(),
            horizon,
            rollup.as_ref().map(|(raw_also, _)| raw_also.as_str()),
            &floor,
            &phase,
            &mut p,
        )
        .ok_or_else(|| ctx.unexpected("the tail mode changed during the backfill"))?;
    let text = sql.backfill_coarse(
        from,
        to,
        phase,
        &filter,
        rollup.as_ref().map(|(_, g)| g.as_str()),
    );
    let rows = timed(
        ctx,
        limit,
        "aggregating history",
        txn.query(text.as_str(), &p.refs()),
    )
    .await?;
    coarse_rows_to_batch(&rows, chunk.from, ctx)
}

/// Rows of `Sql::backfill_coarse` as per-dimension facts; users at `day` (the
/// chunk's start: its users' totals belong to its billing day).
fn coarse_rows_to_batch(
    rows: &[Row],
    day: DateTime<Utc>,
    ctx: &ErrorContext<'_>,
) -> Result<FactBatch, SourceError> {
    let mut batch = FactBatch::default();
    for r in rows {
        let mask: i32 = get(r, 0, ctx)?;
        use super::sql::CoarseSet;
        let Some(set) = super::sql::coarse_set(mask) else {
            return Err(ctx.unexpected(format!("grouping set {mask} of a coarse chunk")));
        };
        let dim = match set {
            CoarseSet::Hour => None,
            CoarseSet::HourName(d) => Some(d),
            CoarseSet::DayUser | CoarseSet::HourUser | CoarseSet::HourPair => {
                Some(crate::model::Dim::User)
            }
        };
        let at = match set {
            CoarseSet::DayUser => day,
            _ => epoch_to_utc(get(r, 1, ctx)?, ctx)?,
        };
        let name: Option<String> = match dim {
            Some(d) => get(r, 2 + d.index(), ctx)?,
            None => None,
        };
        let cost_text: Option<String> = get(r, 7, ctx)?;
        let requests = count(get(r, 8, ctx)?, ctx)?;
        let agg_of = |cost| -> Result<Agg, SourceError> {
            Ok(Agg {
                cost,
                requests,
                input_tokens: count(get(r, 9, ctx)?, ctx)?,
                output_tokens: count(get(r, 10, ctx)?, ctx)?,
                computed: count(get(r, 11, ctx)?, ctx)?,
            })
        };
        match cost_text.as_deref().map(str::parse::<Money>) {
            Some(Ok(cost)) => {
                if dim.is_none() {
                    batch.rows += requests;
                }
                let fact = crate::model::DimFact {
                    at,
                    dim,
                    name: name.unwrap_or_default(),
                    agg: agg_of(cost)?,
                };
                match set {
                    CoarseSet::HourUser => batch.hour_users.push(fact),
                    CoarseSet::HourPair => batch.hour_pairs.push(crate::model::PairFact {
                        at: fact.at,
                        feature: get::<Option<String>>(r, 2, ctx)?.unwrap_or_default(),
                        user: fact.name,
                        cost: fact.agg.cost,
                    }),
                    _ => batch.coarse.push(fact),
                }
            }
            _ => {
                // Only a sum beyond Money's range fails; count the hour's rows once.
                if dim.is_none() {
                    tracing::warn!(%at, "an hour's cost sum is out of range; counted as rejected");
                    batch.rows += requests;
                    *batch
                        .rejected
                        .entry(RejectReason::CostOutOfRange)
                        .or_default() += requests;
                }
            }
        }
    }
    Ok(batch)
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

/// The group key in a row's columns from `at` on: bucket epoch, then five names.
fn group_key(row: &Row, at: usize, ctx: &ErrorContext<'_>) -> Result<GroupKey, SourceError> {
    Ok(GroupKey {
        bucket: get(row, at, ctx)?,
        names: [
            get(row, at + 1, ctx)?,
            get(row, at + 2, ctx)?,
            get(row, at + 3, ctx)?,
            get(row, at + 4, ctx)?,
            get(row, at + 5, ctx)?,
        ],
    })
}

/// Rows of `Sql::backfill_groups` as facts, one per (bucket, names).
pub(super) fn groups_to_batch(
    rows: &[Row],
    ctx: &ErrorContext<'_>,
) -> Result<FactBatch, SourceError> {
    let mut batch = FactBatch {
        coarse: Vec::new(),
        hour_users: Vec::new(),
        hour_pairs: Vec::new(),
        facts: Vec::with_capacity(rows.len()),
        ..Default::default()
    };
    for r in rows {
        let GroupKey { bucket, names } = group_key(r, 0, ctx)?;
        let at = epoch_to_utc(bucket, ctx)?;
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

    fn key(bucket: i64, user: &str) -> GroupKey {
        GroupKey {
            bucket,
            names: ["f".into(), user.into(), "m".into(), "t".into(), "r".into()],
        }
    }

    #[test]
    fn a_chunk_remembers_which_keys_each_attempt_sent() {
        let (h1, h2, h3) = (
            Horizon::Tx { xmin: 10 },
            Horizon::Tx { xmin: 20 },
            Horizon::Tx { xmin: 30 },
        );
        let mut sent = ChunkSent::default();
        assert!(!sent.is_complete());
        assert_eq!(sent.counted_at(&key(0, "a")), None);
        // The first attempt sent two pages, then the connection dropped.
        sent.sent_upto(Some(key(60, "b")), &h1);
        sent.sent_upto(Some(key(120, "c")), &h1);
        assert_eq!(sent.last_sent(), Some(&key(120, "c")));
        assert_eq!(sent.counted_at(&key(60, "z")), Some(&h1));
        assert_eq!(sent.counted_at(&key(120, "c")), Some(&h1));
        assert_eq!(sent.counted_at(&key(120, "d")), None);
        // The second sent one page (below the first's reach), then dropped too.
        sent.sent_upto(Some(key(60, "m")), &h2);
        assert_eq!(sent.counted_at(&key(60, "a")), Some(&h2));
        assert_eq!(sent.counted_at(&key(60, "m")), Some(&h2));
        assert_eq!(sent.counted_at(&key(60, "n")), Some(&h1));
        assert_eq!(sent.counted_at(&key(180, "a")), None);
        assert_eq!(sent.ranges().len(), 2);
        // The third passed the first's reach, then finished.
        sent.sent_upto(Some(key(180, "a")), &h3);
        assert_eq!(sent.ranges().len(), 1);
        assert_eq!(sent.counted_at(&key(120, "c")), Some(&h3));
        assert!(!sent.is_complete());
        sent.sent_upto(None, &h3);
        assert!(sent.is_complete());
        assert_eq!(sent.counted_at(&key(9_999, "zz")), Some(&h3));
        assert_eq!(sent.last_sent(), None);
    }

    #[test]
    fn group_keys_order_names_byte_by_byte_like_the_c_collation() {
        // Upper case sorts before lower case, and any multi-byte UTF-8 after ASCII.
        assert!(key(0, "Zed") < key(0, "alice"));
        assert!(key(0, "zz") < key(0, "é"));
        assert!(key(0, "zz") < key(60, "A"), "the bucket comes first");
    }
}
