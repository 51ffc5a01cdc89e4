//! The tail: only rows that are new since the last poll, each exactly once.
//!
//! tx mode reads the rows whose transaction became visible since the previous
//! poll's snapshot (see `txcursor.rs`): exactly once, without waiting for
//! transactions still running anywhere on the server. Id-overlap mode reads above the highest id seen plus the
//! gaps still awaited, and gives a gap up after the settle time.

use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_postgres::Row;

use super::error::{ErrorContext, SourceError};
use super::pg::{Cursor, Live, PgSource, PollStats, client_deadline, timed};
use super::sql::CURRENT_SNAPSHOT;
use super::txcursor::{OLDEST_OPEN_TX, TxHolder};
use crate::model::{
    Agg, Connection, FUTURE_TOLERANCE_SECS, Fact, FactBatch, MAX_ROW_COST_USD, RejectReason,
    SourceMsg, TailMode,
};
use crate::money::{Money, ParseMoneyError};

/// One row as the tail reads it, before validation.
#[derive(Debug, Clone)]
struct TailRow {
    id: i64,
    at: Option<DateTime<Utc>>,
    cost: Option<String>,
    names: [String; 5],
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
}

/// Validates one row read at `now`. Reasons are checked in the order the backfill's
/// reject count uses (`RejectReason::ALL`), so a row with several faults is counted
/// once, under the same reason.
pub fn row_to_fact(
    at: Option<DateTime<Utc>>,
    cost: Option<&str>,
    names: [String; 5],
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Fact, RejectReason> {
    let at = at.ok_or(RejectReason::NullTimestamp)?;
    if at > now + chrono::Duration::seconds(FUTURE_TOLERANCE_SECS) {
        return Err(RejectReason::FutureTimestamp);
    }
    let cost = cost.ok_or(RejectReason::NullCost)?;
    let cost: Money = cost.parse().map_err(|e| match e {
        ParseMoneyError::Overflow(_) => RejectReason::CostOutOfRange,
        // NaN, ±Infinity (and text no numeric column produces).
        _ => RejectReason::NonFiniteCost,
    })?;
    if cost.picos().unsigned_abs() >= MAX_ROW_COST_USD as u128 * 1_000_000_000_000 {
        return Err(RejectReason::CostOutOfRange);
    }
    let input = u64::try_from(input_tokens.unwrap_or(0)).map_err(|_| RejectReason::BadTokens)?;
    let output = u64::try_from(output_tokens.unwrap_or(0)).map_err(|_| RejectReason::BadTokens)?;
    Ok(Fact {
        at,
        names,
        agg: Agg::one(cost, input, output),
    })
}

fn add_row(batch: &mut FactBatch, row: TailRow, now: DateTime<Utc>) {
    batch.rows += 1;
    match row_to_fact(
        row.at,
        row.cost.as_deref(),
        row.names,
        row.input_tokens,
        row.output_tokens,
        now,
    ) {
        Ok(fact) => batch.facts.push(fact),
        Err(reason) => *batch.rejected.entry(reason).or_default() += 1,
    }
}

/// Whether the row's cost was computed from the price list (the last column of
/// `Sql::row_list`).
fn is_priced(r: &Row, off: usize) -> bool {
    r.try_get::<_, bool>(off + 10).unwrap_or(false)
}

/// `add_row`, counting a computed cost of a row that is kept.
fn add_priced(
    batch: &mut FactBatch,
    row: TailRow,
    now: DateTime<Utc>,
    priced: bool,
    computed: &mut u64,
) {
    let kept = batch.facts.len();
    add_row(batch, row, now);
    if priced && batch.facts.len() > kept {
        *computed += 1;
        if let Some(fact) = batch.facts.last_mut() {
            fact.agg.computed = 1;
        }
    }
}

/// Reads `Sql::row_list` columns starting at `off`.
fn read_row(r: &Row, off: usize, ctx: &ErrorContext<'_>) -> Result<TailRow, SourceError> {
    let bad = |e: tokio_postgres::Error| ctx.unexpected(format!("reading a new row: {e}"));
    Ok(TailRow {
        id: r.try_get(off).map_err(bad)?,
        at: r.try_get(off + 1).map_err(bad)?,
        cost: r.try_get(off + 2).map_err(bad)?,
        names: [
            r.try_get(off + 3).map_err(bad)?,
            r.try_get(off + 4).map_err(bad)?,
            r.try_get(off + 5).map_err(bad)?,
            r.try_get(off + 6).map_err(bad)?,
            r.try_get(off + 7).map_err(bad)?,
        ],
        input_tokens: r.try_get(off + 8).map_err(bad)?,
        output_tokens: r.try_get(off + 9).map_err(bad)?,
    })
}

async fn send_tail(
    tx: &mpsc::Sender<SourceMsg>,
    batch: FactBatch,
    stats: &mut PollStats,
) -> Result<(), SourceError> {
    stats.rows += batch.rows;
    stats.rejected += batch.rejected.values().sum::<u64>();
    tx.send(SourceMsg::Tail {
        batch,
        polled_at: Utc::now(),
    })
    .await
    .map_err(|_| SourceError::ChannelClosed)
}

/// A transaction held open longer than this is named in the status.
pub const HOLDER_SHOWN_SECS: i64 = 5;

/// The oldest open transaction from `OLDEST_OPEN_TX`, if open long enough to name.
pub(super) fn open_long_enough(row: &Row) -> Option<TxHolder> {
    let age: Option<i64> = row.try_get(2).ok()?;
    let age = age?;
    (age > HOLDER_SHOWN_SECS).then(|| TxHolder {
        pid: row.try_get(0).ok().flatten(),
        database: row.try_get(1).ok().flatten(),
        age_secs: age,
        prepared: row.try_get(3).ok().flatten(),
    })
}

impl PgSource {
    /// What the status bar should say besides the mode.
    fn status_note(&self) -> Option<String> {
        match self.cursor.as_ref()? {
            Cursor::Tx(_) => self.holder.as_ref().map(TxHolder::short),
            Cursor::Window(w) => Some(super::window::guarantee(w.overlap())),
            _ => None,
        }
    }

    /// One tail step: reads every row committed since the last poll (several queries
    /// if there is a backlog), sends them as `Tail` messages (at least one, possibly
    /// empty, so the receiver knows the poll happened), and reports the watermark lag.
    pub async fn poll(&mut self, tx: &mpsc::Sender<SourceMsg>) -> Result<PollStats, SourceError> {
        if self.cursor.is_none() {
            return Err(SourceError::NotBackfilled);
        }
        if self.schema_recheck_due() {
            self.disconnect();
        }
        self.ensure_connected().await?;
        let ctx = ErrorContext {
            endpoint: &self.target.endpoint,
            table: &self.table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let limit = client_deadline(self.opts.statement_timeout);
        let Some(Live { client, sql, info }) = self.conn.as_ref() else {
            return Err(ctx.unexpected("no connection after connecting"));
        };
        let batch_rows = i64::from(self.opts.tail_batch_rows.max(1));
        let mut stats = PollStats::default();
        // A standby's pg_current_snapshot() lists no running transactions: its
        // snapshot is cut at the xmin there (see `source::replica`).
        let (snapshot_sql, standby) = if self.standby {
            (super::replica::STANDBY_SNAPSHOT, true)
        } else {
            (CURRENT_SNAPSHOT, false)
        };

        match self.cursor.as_mut() {
            None => return Err(SourceError::NotBackfilled),
            Some(Cursor::Tx(cursor)) => {
                if cursor.needs_snapshot() {
                    let row = timed(
                        &ctx,
                        limit,
                        "reading the snapshot",
                        client.query_one(snapshot_sql, &[]),
                    )
                    .await?;
                    let current: String = row
                        .try_get(0)
                        .map_err(|e| ctx.unexpected(format!("snapshot: {e}")))?;
                    if standby && !super::txcursor::covers(&current, &cursor.prev) {
                        // A standby's snapshot behind the previous one (a reconnect
                        // to another server, a standby restarted): reading it would
                        // count rows again. Nothing new until it passes.
                        tracing::debug!(current = %current, prev = %cursor.prev, "standby snapshot behind the tail's; waiting for replay");
                        send_tail(tx, FactBatch::default(), &mut stats).await?;
                    } else {
                        cursor.start(current);
                    }
                }
                let text = sql.tail_tx();
                loop {
                    let prev = cursor.prev.clone();
                    let Some(pending) = cursor.pending.clone() else {
                        break;
                    };
                    let after_tx = pending.after.0.to_string();
                    let (from_tx, from_id) = cursor
                        .range_start()
                        .ok_or_else(|| ctx.unexpected(format!("snapshot {prev:?} has no xmax")))?;
                    let from_tx = from_tx.to_string();
                    let rows = timed(
                        &ctx,
                        limit,
                        "reading new rows",
                        client.query(
                            &text,
                            &[
                                &prev,
                                &pending.snapshot,
                                &after_tx,
                                &pending.after.1,
                                &batch_rows,
                                &from_tx,
                                &from_id,
                            ],
                        ),
                    )
                    .await?;
                    let mut batch = FactBatch {
                        coarse: Vec::new(),
                        hour_users: Vec::new(),
                        hour_pairs: Vec::new(),
                        facts: Vec::with_capacity(rows.len()),
                        ..Default::default()
                    };
                    let now = Utc::now();
                    let mut position = None;
                    for r in &rows {
                        let tx_text: String = r
                            .try_get(0)
                            .map_err(|e| ctx.unexpected(format!("tx: {e}")))?;
                        let row_tx: u64 = tx_text
                            .parse()
                            .map_err(|_| ctx.unexpected(format!("tx {tx_text:?}")))?;
                        let row = read_row(r, 1, &ctx)?;
                        let priced = is_priced(r, 1);
                        position = Some((row_tx, row.id));
                        add_priced(&mut batch, row, now, priced, &mut self.computed_rows);
                    }
                    send_tail(tx, batch, &mut stats).await?;
                    // Move only once the rows are handed over.
                    if let Some(p) = position {
                        cursor.advance(p);
                    }
                    stats.batches += 1;
                    if (rows.len() as i64) < batch_rows {
                        cursor.finish();
                        break;
                    }
                }
                // The tail waits for no transaction; one held open long is named
                // (its own rows count when it commits). On a standby no session
                // holds a transaction id: what the tail waits for is on the primary.
                stats.watermark_lag_secs = Some(0);
                self.holder = if standby {
                    None
                } else {
                    match timed(
                        &ctx,
                        limit,
                        "reading the oldest open transaction",
                        client.query_opt(OLDEST_OPEN_TX, &[]),
                    )
                    .await
                    {
                        Ok(row) => row.and_then(|r| open_long_enough(&r)),
                        // Informational only, but a connection failure still counts.
                        Err(
                            e @ (SourceError::ConnectionLost { .. } | SourceError::NoAnswer { .. }),
                        ) => return Err(e),
                        Err(e) => {
                            tracing::debug!(error = %e, "oldest open transaction unavailable");
                            None
                        }
                    }
                };
            }
            Some(Cursor::Window(tracker)) => {
                // The server re-aggregates the window; only the change is sent.
                let start = tracker.start();
                let rows = timed(
                    &ctx,
                    limit,
                    "aggregating the overlap window",
                    client.query(&sql.window_groups(), &[&start]),
                )
                .await?;
                let groups = super::backfill::groups_to_batch(&rows, &ctx)?;
                let mut work = tracker.clone();
                let batch = work.replace(groups.facts, Utc::now());
                self.computed_rows += batch.facts.iter().map(|f| f.agg.computed).sum::<u64>();
                send_tail(tx, batch, &mut stats).await?;
                *tracker = work;
                stats.batches += 1;
                stats.watermark_lag_secs = None;
            }
            Some(Cursor::Keyset(tracker)) => {
                // Re-read the overlap window behind the newest row, in (timestamp,
                // key) order, paging by keyset; count only keys not seen before.
                let wall = Utc::now();
                let mut work = tracker.clone();
                let cutoff = work
                    .start(wall)
                    .or_else(|| DateTime::from_timestamp(0, 0))
                    .unwrap_or(wall);
                let first = sql.tail_keyset_first(&info.map);
                let next = sql.tail_keyset_next(&info.map);
                let mut after: Option<(DateTime<Utc>, String)> = None;
                loop {
                    let rows = match &after {
                        None => {
                            timed(
                                &ctx,
                                limit,
                                "reading new rows",
                                client.query(&first, &[&cutoff, &batch_rows]),
                            )
                            .await?
                        }
                        Some((at, key)) => {
                            timed(
                                &ctx,
                                limit,
                                "reading new rows",
                                client.query(&next, &[&cutoff, at, key, &batch_rows]),
                            )
                            .await?
                        }
                    };
                    let mut batch = FactBatch {
                        coarse: Vec::new(),
                        hour_users: Vec::new(),
                        hour_pairs: Vec::new(),
                        facts: Vec::with_capacity(rows.len()),
                        ..Default::default()
                    };
                    for r in &rows {
                        let key: Option<String> = r
                            .try_get(0)
                            .map_err(|e| ctx.unexpected(format!("row key: {e}")))?;
                        let key = key.unwrap_or_default();
                        let row = read_row(r, 1, &ctx)?;
                        let priced = is_priced(r, 1);
                        // The query only returns rows at or after the cutoff.
                        let at = row.at.unwrap_or(cutoff);
                        after = Some((at, key.clone()));
                        if work.observe(&key, at) {
                            add_priced(&mut batch, row, wall, priced, &mut self.computed_rows);
                        }
                    }
                    send_tail(tx, batch, &mut stats).await?;
                    *tracker = work.clone();
                    stats.batches += 1;
                    if (rows.len() as i64) < batch_rows {
                        break;
                    }
                }
                stats.watermark_lag_secs = None;
            }
            Some(Cursor::Id(tracker)) => {
                let now = Instant::now();
                let wall = Utc::now();
                let mut work = tracker.clone();
                let ranges = work.pending_ranges();
                if !ranges.is_empty() {
                    let (lo, hi): (Vec<i64>, Vec<i64>) = ranges.into_iter().unzip();
                    let rows = timed(
                        &ctx,
                        limit,
                        "re-reading awaited ids",
                        client.query(&sql.tail_id_gaps(), &[&lo, &hi, &batch_rows]),
                    )
                    .await?;
                    let mut batch = FactBatch::default();
                    for r in &rows {
                        let row = read_row(r, 0, &ctx)?;
                        let priced = is_priced(r, 0);
                        if work.observe(row.id, now) {
                            add_priced(&mut batch, row, wall, priced, &mut self.computed_rows);
                        }
                    }
                    if batch.rows > 0 {
                        send_tail(tx, batch, &mut stats).await?;
                        *tracker = work.clone();
                    }
                }
                let text = sql.tail_id_new();
                loop {
                    let rows = timed(
                        &ctx,
                        limit,
                        "reading new rows",
                        client.query(&text, &[&work.max_seen(), &batch_rows]),
                    )
                    .await?;
                    let mut batch = FactBatch {
                        coarse: Vec::new(),
                        hour_users: Vec::new(),
                        hour_pairs: Vec::new(),
                        facts: Vec::with_capacity(rows.len()),
                        ..Default::default()
                    };
                    for r in &rows {
                        let row = read_row(r, 0, &ctx)?;
                        let priced = is_priced(r, 0);
                        if work.observe(row.id, now) {
                            add_priced(&mut batch, row, wall, priced, &mut self.computed_rows);
                        }
                    }
                    send_tail(tx, batch, &mut stats).await?;
                    *tracker = work.clone();
                    stats.batches += 1;
                    if (rows.len() as i64) < batch_rows {
                        break;
                    }
                }
                stats.given_up_ids = work.expire(now, self.opts.id_gap_settle);
                if stats.given_up_ids > 0 {
                    tracing::info!(
                        ids = stats.given_up_ids,
                        low_water = work.low_water(),
                        "gave up missing ids after the settle time (rolled back, or committing too late to be read)"
                    );
                }
                stats.watermark_lag_secs = Some(
                    work.oldest_pending_age(now)
                        .map_or(0, |d| d.as_secs() as i64),
                );
                *tracker = work;
            }
        }
        self.measure_replay_lag().await;
        let mode = self.mode.unwrap_or(TailMode::TxWatermark);
        self.status.note = self.status_note();
        self.status
            .send(tx, Connection::Live, mode, stats.watermark_lag_secs)
            .await?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> [String; 5] {
        [
            "chat".into(),
            "u1".into(),
            String::new(),
            String::new(),
            String::new(),
        ]
    }

    #[test]
    fn rows_are_validated_in_a_fixed_order() {
        let now = Utc::now();
        let at = Some(now);
        let check = |at, cost: Option<&str>, input, output| {
            row_to_fact(at, cost, names(), input, output, now)
        };
        let ok = check(at, Some("0.000001234567"), Some(10), None).unwrap();
        assert_eq!(ok.agg, Agg::one("0.000001234567".parse().unwrap(), 10, 0));
        assert_eq!(ok.name(crate::model::Dim::Model), "");

        let future = Some(now + chrono::Duration::seconds(FUTURE_TOLERANCE_SECS + 1));
        assert_eq!(
            check(None, None, Some(-1), None),
            Err(RejectReason::NullTimestamp)
        );
        assert_eq!(
            check(future, None, Some(-1), None),
            Err(RejectReason::FutureTimestamp)
        );
        assert_eq!(check(at, None, Some(-1), None), Err(RejectReason::NullCost));
        for bad in ["NaN", "Infinity", "-Infinity"] {
            assert_eq!(
                check(at, Some(bad), Some(-1), None),
                Err(RejectReason::NonFiniteCost)
            );
        }
        for absurd in ["1000000000000", "-1000000000000.5", "1e40", "-9e99"] {
            assert_eq!(
                check(at, Some(absurd), Some(-1), None),
                Err(RejectReason::CostOutOfRange),
                "{absurd}"
            );
        }
        assert_eq!(
            check(at, Some("1"), Some(1), Some(-5)),
            Err(RejectReason::BadTokens)
        );
        // Negative costs (refunds, credits) are real money, not rejects; so are a
        // million dollars, and clock skew under the tolerance.
        assert!(check(at, Some("-0.5"), None, None).is_ok());
        assert!(check(at, Some("999999999999.999999"), None, None).is_ok());
        let skewed = Some(now + chrono::Duration::seconds(FUTURE_TOLERANCE_SECS - 60));
        assert!(check(skewed, Some("1"), None, None).is_ok());
    }

    #[test]
    fn rejected_rows_are_counted_not_summed() {
        let mut batch = FactBatch::default();
        let row = |cost: Option<&str>| TailRow {
            id: 1,
            at: Some(Utc::now()),
            cost: cost.map(str::to_string),
            names: names(),
            input_tokens: None,
            output_tokens: None,
        };
        add_row(&mut batch, row(Some("1.5")), Utc::now());
        add_row(&mut batch, row(Some("NaN")), Utc::now());
        add_row(&mut batch, row(None), Utc::now());
        assert_eq!(batch.rows, 3);
        assert_eq!(batch.facts.len(), 1);
        assert_eq!(batch.rejected.get(&RejectReason::NonFiniteCost), Some(&1));
        assert_eq!(batch.rejected.get(&RejectReason::NullCost), Some(&1));
    }
}
