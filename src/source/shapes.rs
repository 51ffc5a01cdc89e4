//! Hour shapes from the server: where within each past hour the biggest features,
//! models and users spent, for the hours the backfill sent grouped by hour.
//!
//! The short-window baselines read an hour cut by a window by where within it a
//! name spends (`store::subhour`). A process that watched those hours took their
//! shapes from its minute buckets; a cron `check` or a fresh `watch` has them only
//! for the last three hours it backfilled by minute, so a nightly batch at 02:10 or
//! a digest at :10 looked like a spike. After the backfill, one bounded query reads
//! the baseline days' five-minute spend per feature, model and user, only for the
//! (hour, name) pairs spending at least `Store::SHAPE_MIN_COST` in the hour and at most
//! `Store::SHAPE_MAX_NAMES` names per dimension and hour, the largest first: the filtering
//! and ranking happen on the server, so the client receives a few rows per hour
//! however many users the table has. One pass over the days' rows, through the same
//! row filter and tenant scope as the backfill, in billing-calendar hours.
//!
//! Shapes only place spend within hours the store already holds exactly; they are
//! never money shown. A failure is logged and the baselines stay as they were.

use chrono::{DateTime, Utc};
use futures_util::{TryStreamExt, pin_mut};

use super::error::{ErrorContext, SourceError};
use super::pg::{PgSource, client_deadline, epoch_to_utc};
use super::sql::{Params, Sql};
use crate::calendar::Calendar;
use crate::model::{Dim, NameShape};
use crate::store::Store;

/// How far back shapes are read: the baselines' four weeks of the same hour of the
/// week (and so their 14 days of the same hour of day), and the hour a window
/// starting 28 days back may cut.
pub const SHAPE_DAYS: i64 = 28;

/// Shapes handed over at once (about 150 bytes each while in flight).
const PAGE: usize = 10_000;

/// The dimensions with shapes, as the query numbers them (`Dim::index`).
const DIMS: [Dim; 3] = [Dim::Feature, Dim::Model, Dim::User];

impl Sql {
    /// Five-minute spend of the (hour, name) pairs worth a shape among the rows in
    /// the spans `[$starts[i], $ends[i])` (disjoint): (hour start epoch, dimension
    /// index, name, twelve slot sums), hours in order. `$phase` aligns hours with
    /// the billing calendar, as the backfill's buckets do. Sums are floats: only
    /// the shape counts. Each span is read by its own index range scan (`OFFSET 0`
    /// keeps the planner from joining the spans to a scan of the whole table, which
    /// took 23 s instead of 7 on 3.3 million rows).
    pub(super) fn hour_shapes(
        &self,
        starts: &str,
        ends: &str,
        phase: &str,
        p: &mut Params,
    ) -> String {
        let Sql { ts, cost, .. } = self;
        let min = p.push(Store::SHAPE_MIN_COST.as_f64());
        let max_names = p.push(Store::SHAPE_MAX_NAMES as i64);
        let (f, u, m) = (&self.names[0], &self.names[1], &self.names[2]);
        let slot_cols: Vec<String> = (0..12).map(|k| format!("s{k}")).collect();
        let slot_sums: Vec<String> = (0..12)
            .map(|k| format!("coalesce(sum(c) FILTER (WHERE s = {k}), 0) AS s{k}"))
            .collect();
        format!(
            "SELECT h * 300 + {phase}::int8, d, n, {slot_list} FROM ( \
               SELECT h, d, n, {slot_list}, \
                      row_number() OVER (PARTITION BY h, d ORDER BY total DESC, n) AS rank \
               FROM ( \
                 SELECT h, \
                        (CASE WHEN GROUPING(f) = 0 THEN {fi} WHEN GROUPING(m) = 0 THEN {mi} ELSE {ui} END)::int4 AS d, \
                        (CASE WHEN GROUPING(f) = 0 THEN f WHEN GROUPING(m) = 0 THEN m ELSE u END) AS n, \
                        sum(c) AS total, {slot_sums} \
                 FROM ( \
                   SELECT (f5 - mod(f5, 12)) AS h, mod(f5, 12)::int4 AS s, f, u, m, c \
                   FROM unnest({starts}::timestamptz[], {ends}::timestamptz[]) AS w(lo, hi) \
                   CROSS JOIN LATERAL ( \
                     SELECT floor((date_part('epoch', {ts}) - {phase}::int8) / 300)::int8 AS f5, \
                            {f} AS f, {u} AS u, {m} AS m, ({cost})::float8 AS c \
                     FROM {table} e WHERE {ts} >= w.lo AND {ts} < w.hi AND {valid} \
                     OFFSET 0 \
                   ) r0 \
                 ) r \
                 GROUP BY GROUPING SETS ((h, f), (h, m), (h, u)) \
                 HAVING sum(c) >= {min}::float8 \
               ) g \
             ) ranked WHERE rank <= {max_names}::int8 ORDER BY h, d, rank",
            slot_list = slot_cols.join(", "),
            slot_sums = slot_sums.join(", "),
            fi = Dim::Feature.index(),
            mi = Dim::Model.index(),
            ui = Dim::User.index(),
            table = self.table,
            valid = self.valid_row(),
        )
    }
}

/// Hours of the day read around `now`: from this many hours before it (a spike's
/// window and the three hours before it, whose baselines are read too)...
const BEFORE_HOURS: i64 = 4;
/// ...to this many after it (the windows of a dashboard's next hour or so).
const AFTER_HOURS: i64 = 2;

/// The spans whose hours get shapes at `now`: on each of the baseline days before
/// today, the hours of the day the short-window rules read at `now` (the same
/// hours of the day, or of the week, as the windows ending now and the three
/// hours before them), and today's hours before the minute range. Billing hours,
/// oldest first, disjoint. Reading only those keeps the query to about a fifth of
/// the days' rows; a dashboard running on into other hours of the day learns
/// their shapes from the hours it watches.
pub fn shape_spans(
    store: &crate::store::StoreConfig,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let cal = &store.calendar;
    let minute_floor = Calendar::minute_start(Store::new(*store, now).minute_floor(now));
    // Later hours are held by minute; the one holding the floor only in part.
    let last = cal.hour_index(minute_floor) + 1;
    let first = cal.hour_index(Store::history_start(store, now));
    let now_hour = cal.hour_index(now);
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for k in (0..=SHAPE_DAYS).rev() {
        let from = (now_hour - 24 * k - BEFORE_HOURS).max(first);
        let to = (now_hour - 24 * k + AFTER_HOURS).min(last);
        if from >= to {
            continue;
        }
        match spans.last_mut() {
            Some(prev) if prev.1 >= from => prev.1 = prev.1.max(to),
            _ => spans.push((from, to)),
        }
    }
    spans
        .into_iter()
        .map(|(a, b)| (cal.hour_start(a), cal.hour_start(b)))
        .collect()
}

impl PgSource {
    /// Reads the hour shapes of the baseline days at `now` (see the module), handing
    /// them to `sink` a page at a time, hours in order. Returns how many were read.
    pub async fn read_hour_shapes(
        &mut self,
        now: DateTime<Utc>,
        mut sink: impl FnMut(Vec<NameShape>),
    ) -> Result<usize, SourceError> {
        self.ensure_connected().await?;
        let spans = shape_spans(&self.opts.store, now);
        if spans.is_empty() {
            return Ok(0);
        }
        let ctx = ErrorContext {
            endpoint: &self.target.endpoint,
            table: &self.table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let Some(live) = self.conn.as_ref() else {
            return Err(ctx.unexpected("no connection after connecting"));
        };
        let mut p = Params::default();
        let (starts, ends, phase) = (
            p.push(spans.iter().map(|s| s.0).collect::<Vec<_>>()),
            p.push(spans.iter().map(|s| s.1).collect::<Vec<_>>()),
            p.push(self.opts.store.calendar.phase_secs()),
        );
        let text = live.sql.hour_shapes(&starts, &ends, &phase, &mut p);
        let doing = "reading the hours' five-minute shapes";
        let read = async {
            let rows = live
                .client
                .query_raw(text.as_str(), p.refs())
                .await
                .map_err(|e| ctx.db(e, doing))?;
            pin_mut!(rows);
            let mut page = Vec::new();
            let mut total = 0;
            while let Some(r) = rows.try_next().await.map_err(|e| ctx.db(e, doing))? {
                page.push(row_to_shape(&r, &ctx)?);
                total += 1;
                if page.len() >= PAGE {
                    sink(std::mem::take(&mut page));
                }
            }
            sink(page);
            Ok::<usize, SourceError>(total)
        };
        let started = std::time::Instant::now();
        let total = match client_deadline(self.opts.statement_timeout) {
            None => read.await?,
            Some(d) => tokio::time::timeout(d, read)
                .await
                .map_err(|_| ctx.no_answer(doing, d))??,
        };
        tracing::info!(
            shapes = total,
            spans = spans.len(),
            ms = started.elapsed().as_millis() as u64,
            "read the hours' five-minute shapes"
        );
        Ok(total)
    }
}

impl PgSource {
    /// Once the backfill is done, reads the hour shapes once into
    /// `opts.shapes_to` (the long-running task, after its first poll: the first
    /// screen does not wait for them). A failure is logged and not retried:
    /// shapes only sharpen baselines.
    pub async fn send_hour_shapes(&mut self, now: DateTime<Utc>) {
        if self.shapes_sent || !self.backfill_done() {
            return;
        }
        let Some(inbox) = self.opts.shapes_to.clone() else {
            return;
        };
        self.shapes_sent = true;
        if let Err(e) = self.read_hour_shapes(now, |page| inbox.put(page)).await {
            tracing::warn!(error = %e, "reading the hours' five-minute shapes failed; baselines spread those hours evenly");
        }
    }
}

fn row_to_shape(r: &tokio_postgres::Row, ctx: &ErrorContext<'_>) -> Result<NameShape, SourceError> {
    let get_err =
        |i: usize, e: tokio_postgres::Error| ctx.unexpected(format!("shape column {i}: {e}"));
    let h: i64 = r.try_get(0).map_err(|e| get_err(0, e))?;
    let d: i32 = r.try_get(1).map_err(|e| get_err(1, e))?;
    let name: String = r.try_get(2).map_err(|e| get_err(2, e))?;
    let dim = DIMS
        .into_iter()
        .find(|x| x.index() as i32 == d)
        .ok_or_else(|| ctx.unexpected(format!("shape dimension {d}")))?;
    let mut slots = [0.0; 12];
    for (k, s) in slots.iter_mut().enumerate() {
        *s = r.try_get(3 + k).map_err(|e| get_err(3 + k, e))?;
    }
    Ok(NameShape {
        hour_start: epoch_to_utc(h, ctx)?,
        dim,
        name,
        slots,
    })
}
