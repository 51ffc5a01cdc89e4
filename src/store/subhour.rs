//! Where within its hours a name spends: five-minute shapes of past hours, kept so
//! that short-window baselines see recurring jobs (a digest at :10 every hour, a
//! nightly batch at 02:10) instead of spreading each hour evenly over its minutes.
//!
//! An hour's shape is taken from the minute buckets when they age out, and only
//! when they hold the whole hour (their total equals the hour bucket's): hours that
//! arrived grouped by hour (the backfill before the minute range, a rollup) have no
//! shape. A shape is kept per feature, model and user whose spend in the hour is at
//! least [`SHAPE_MIN_COST`] (at most [`SHAPE_MAX_NAMES`] per dimension): below that,
//! spreading the hour evenly misplaces less than the rules' smallest excess. Each
//! shape is twelve 16-bit shares of the hour's cost: 28 bytes per name and hour.

use chrono::{DateTime, Duration, Utc};

use crate::calendar::Calendar;
use crate::model::{Agg, Dim, NONE_NAME, NameShape, ShapeInbox};
use crate::money::Money;

use super::{NameId, Store};

/// Five-minute slots per hour.
pub const SLOTS: usize = 12;

/// A name needs at least this spend in an hour for its shape to be kept.
pub const SHAPE_MIN_COST: Money = Money::from_picos(1_000_000_000_000);

/// Shapes kept per dimension and hour, the largest spenders first.
pub const SHAPE_MAX_NAMES: usize = 128;

/// The dimensions with shapes: the ones the short-window rules judge.
pub const SHAPED_DIMS: [Dim; 3] = [Dim::Feature, Dim::Model, Dim::User];

pub(super) fn shaped_index(dim: Dim) -> Option<usize> {
    SHAPED_DIMS.iter().position(|d| *d == dim)
}

/// One name's weights within one hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Shape {
    pub(super) id: NameId,
    pub(super) slots: Weights,
}

/// The shapes of one hour whose minutes were all seen: per shaped dimension, sorted
/// by id. A name with spend in the hour but no shape spent under the floor: its
/// hour counts as even.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HourShapes {
    pub(super) by_dim: [Vec<Shape>; 3],
    /// Read from the server (`Store::add_hour_shapes`), not taken from the minutes:
    /// the minutes' shapes replace these when they hold the whole hour.
    pub(super) from_server: bool,
}

impl HourShapes {
    /// The name's weights in this hour: its shape, or even when it spent under the
    /// shape floor (`None` for a dimension without shapes).
    pub(super) fn weights(&self, dim: Dim, id: NameId) -> Option<Weights> {
        let list = &self.by_dim[shaped_index(dim)?];
        Some(match list.binary_search_by_key(&id, |s| s.id) {
            Ok(i) => list[i].slots,
            Err(_) => EVEN,
        })
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.by_dim
            .iter()
            .map(|v| v.capacity() * std::mem::size_of::<Shape>())
            .sum()
    }

    /// Renumbers ids after names were forgotten (the order of ids is kept).
    pub(super) fn rename(&mut self, dim_maps: [&[NameId]; 3]) {
        for (list, map) in self.by_dim.iter_mut().zip(dim_maps) {
            list.retain_mut(|s| match map.get(s.id as usize) {
                Some(&new) if new != NameId::MAX => {
                    s.id = new;
                    true
                }
                _ => false,
            });
        }
    }
}

/// Where within an hour spend fell: a weight per five-minute slot, summing to about
/// `u16::MAX` (read relative to their sum).
pub(super) type Weights = [u16; SLOTS];

/// Spend spread evenly over the hour.
const EVEN: Weights = [(u16::MAX as usize / SLOTS) as u16; SLOTS];

/// Weights from per-slot spend as the server sums it (floats: only the shape
/// counts); `None` when there is no spend.
fn weights_of_f64(slots: &[f64; SLOTS]) -> Option<Weights> {
    let clean = slots.map(|x| if x.is_finite() && x > 0.0 { x } else { 0.0 });
    let total: f64 = clean.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    Some(clean.map(|x| (x / total * f64::from(u16::MAX)) as u16))
}

/// Weights from per-slot costs (in picodollars); `None` when there is no spend.
fn weights_of(slot_costs: &[i128; SLOTS]) -> Option<Weights> {
    let total: i128 = slot_costs.iter().map(|c| (*c).max(0)).sum();
    if total <= 0 {
        return None;
    }
    let mut w = [0u16; SLOTS];
    for (s, c) in w.iter_mut().zip(slot_costs) {
        *s = ((*c).max(0) * i128::from(u16::MAX) / total) as u16;
    }
    Some(w)
}

/// The part of an hour's spend in `[from, to)` seconds into it, as the exact
/// fraction (numerator, denominator): a slot cut by the span counts pro rata.
pub(super) fn part_between(w: &Weights, from: i64, to: i64) -> (i128, i128) {
    const SLOT_SECS: i64 = 3600 / SLOTS as i64;
    let (from, to) = (from.clamp(0, 3600), to.clamp(0, 3600));
    let total: i128 = w.iter().map(|x| i128::from(*x)).sum();
    if to <= from || total == 0 {
        return (0, 1);
    }
    let num: i128 = w
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let (s, e) = (i as i64 * SLOT_SECS, (i as i64 + 1) * SLOT_SECS);
            i128::from(*x) * i128::from((to.min(e) - from.max(s)).max(0))
        })
        .sum();
    (num, total * i128::from(SLOT_SECS))
}

/// Half the summed absolute difference of two shapes, 0 (same) to 1 (disjoint).
fn distance(a: &Weights, b: &Weights) -> f64 {
    let (ta, tb) = (
        a.iter().map(|x| f64::from(*x)).sum::<f64>().max(1.0),
        b.iter().map(|x| f64::from(*x)).sum::<f64>().max(1.0),
    );
    0.5 * a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) / ta - f64::from(*y) / tb).abs())
        .sum::<f64>()
}

/// Per slot, the median of three shapes (one odd hour does not set the shape), or
/// the mean of fewer.
fn typical(found: &[Weights]) -> Weights {
    let mut out = [0u16; SLOTS];
    for (i, o) in out.iter_mut().enumerate() {
        let mut v: Vec<u32> = found.iter().map(|w| u32::from(w[i])).collect();
        v.sort_unstable();
        *o = match v.len() {
            0 => EVEN[i],
            3 => v[1] as u16,
            n => (v.iter().sum::<u32>() / n as u32) as u16,
        };
    }
    out
}

/// How far apart two latest hours' shapes may be to count as one hourly rhythm.
const RHYTHM_DISTANCE: f64 = 0.2;

impl Store {
    /// [`SHAPE_MIN_COST`], for sources that read shapes.
    pub const SHAPE_MIN_COST: Money = SHAPE_MIN_COST;
    /// [`SHAPE_MAX_NAMES`], for sources that read shapes.
    pub const SHAPE_MAX_NAMES: usize = SHAPE_MAX_NAMES;
    /// [`MINUTE_CELLS_MAX`].
    pub const MINUTE_CELLS_MAX: usize = MINUTE_CELLS_MAX;

    /// Takes the shapes of the past hours whose first minute leaves the minute range
    /// now (`minute_floor`): their minutes are all still there. An hour whose minute
    /// buckets do not add up to its hour bucket (it came grouped by hour, or rows
    /// came late) gets none.
    pub(super) fn capture_shapes(&mut self, minute_floor: i64) {
        let cal = self.cfg.calendar;
        let now_minute = minute_floor + self.cfg.minute_retention;
        let due: Vec<i64> = self
            .hours
            .range(self.shaped_through.saturating_add(1)..)
            .map(|(h, _)| *h)
            .take_while(|h| {
                let m0 = Calendar::minute_index(cal.hour_start(*h));
                m0 < minute_floor && m0 + 60 <= now_minute
            })
            .collect();
        for h in due {
            self.shaped_through = h;
            // Minutes that do not hold the whole hour leave the server's shapes.
            if let Some(shapes) = self.shapes_from_minutes(h)
                && let Some(b) = self.hours.get_mut(&h)
            {
                b.shapes = Some(Box::new(shapes));
            }
        }
    }

    /// Where a source task leaves hour shapes read from the server for this store
    /// (a dashboard's store lives where the source cannot reach it); taken on the
    /// next `apply`.
    pub fn shape_inbox(&self) -> ShapeInbox {
        self.shape_inbox.clone()
    }

    /// Takes the shapes left in the inbox, if any.
    pub(super) fn take_inbox_shapes(&mut self) {
        let shapes = self.shape_inbox.take();
        if !shapes.is_empty() {
            let kept = self.add_hour_shapes(&shapes);
            tracing::debug!(read = shapes.len(), kept, "hour shapes from the server");
        }
    }

    /// Takes five-minute shapes of past hours read from the server (see
    /// `PgSource::read_hour_shapes`), for hours that came grouped by hour (the
    /// backfill before the minute range): so a fresh `check` or `watch` sees a
    /// nightly batch at 02:10 or a digest at :10 in their own baselines, as a
    /// process that watched those days does. A shape is kept for a name the hour
    /// holds, at most [`SHAPE_MAX_NAMES`] per dimension and hour (the server sends
    /// only names spending at least [`SHAPE_MIN_COST`] there, the largest first);
    /// an hour whose minutes gave its shapes keeps those. Returns how many were kept.
    pub fn add_hour_shapes(&mut self, shapes: &[NameShape]) -> usize {
        let cal = self.cfg.calendar;
        let mut touched: Vec<i64> = Vec::new();
        let mut kept = 0;
        for s in shapes {
            let Some(i) = shaped_index(s.dim) else {
                continue;
            };
            let name = if s.name.is_empty() {
                NONE_NAME
            } else {
                s.name.as_str()
            };
            let h = cal.hour_index(s.hour_start);
            let (Some(id), true) = (self.lookup(s.dim, name), cal.hour_start(h) == s.hour_start)
            else {
                continue;
            };
            let Some(w) = weights_of_f64(&s.slots) else {
                continue;
            };
            let Some(b) = self.hours.get_mut(&h) else {
                continue;
            };
            if b.coarse && s.dim == Dim::User {
                // Users of a coarse hour are kept per day: the shape's sum is the
                // user's spend this hour, for its baselines.
                let picos = (s.slots.iter().sum::<f64>() * 1e12) as i128;
                let heavy = &mut b.heavy_users;
                if heavy.get(id).is_none() && heavy.len() < SHAPE_MAX_NAMES {
                    let kept = super::coarse::Kept {
                        picos,
                        requests: None,
                    };
                    heavy.add(id, kept);
                }
            } else if b.by_dim[s.dim.index()].get(id).is_none() {
                continue;
            }
            let hour = b.shapes.get_or_insert_with(|| {
                Box::new(HourShapes {
                    from_server: true,
                    ..HourShapes::default()
                })
            });
            if !hour.from_server {
                continue;
            }
            let list = &mut hour.by_dim[i];
            match list.binary_search_by_key(&id, |x| x.id) {
                Ok(j) => list[j].slots = w,
                Err(_) if list.len() >= SHAPE_MAX_NAMES => continue,
                Err(j) => list.insert(j, Shape { id, slots: w }),
            }
            kept += 1;
            if touched.last() != Some(&h) {
                touched.push(h);
            }
        }
        for h in touched {
            if let Some(hour) = self.hours.get_mut(&h).and_then(|b| b.shapes.as_mut()) {
                hour.by_dim.iter_mut().for_each(Vec::shrink_to_fit);
            }
        }
        if kept > 0 {
            self.generation += 1;
        }
        kept
    }

    fn shapes_from_minutes(&self, h: i64) -> Option<HourShapes> {
        let b = self.hours.get(&h)?;
        let m0 = Calendar::minute_index(self.cfg.calendar.hour_start(h));
        let mut seen = Agg::default();
        for (_, mb) in self.minutes.range(m0..m0 + 60) {
            seen.add(&mb.total);
        }
        if seen.cost != b.total.cost || seen.requests != b.total.requests {
            return None;
        }
        let mut out = HourShapes::default();
        for (i, dim) in SHAPED_DIMS.iter().enumerate() {
            let mut big: Vec<(NameId, Money)> = b.by_dim[dim.index()]
                .iter()
                .filter(|(_, a)| a.cost >= SHAPE_MIN_COST)
                .map(|(id, a)| (id, a.cost))
                .collect();
            big.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            big.truncate(SHAPE_MAX_NAMES);
            let mut list: Vec<Shape> = big
                .iter()
                .filter_map(|(id, _)| {
                    let (w, _) = self.minute_weights(*dim, *id, m0);
                    w.map(|slots| Shape { id: *id, slots })
                })
                .collect();
            list.sort_by_key(|s| s.id);
            list.shrink_to_fit();
            out.by_dim[i] = list;
        }
        Some(out)
    }

    /// A name's weights in the hour starting at minute `m0` from the minute buckets,
    /// and its total there.
    fn minute_weights(&self, dim: Dim, id: NameId, m0: i64) -> (Option<Weights>, Agg) {
        let mut slot_costs = [0i128; SLOTS];
        let mut seen = Agg::default();
        for (m, mb) in self.minutes.range(m0..m0 + 60) {
            if let Some(a) = mb.by_dim[dim.index()].get(id) {
                slot_costs[slot_of(m - m0)] += a.cost.picos();
                seen.add(&a);
            }
        }
        (weights_of(&slot_costs), seen)
    }

    /// Where within the complete hour `h` a name spent: from the minute buckets when
    /// they hold all of its spend in the hour, else from the hour's shape (even when
    /// the name spent under the shape floor). `None` when the hour is known only by
    /// its total or the name spent nothing in it.
    fn known_weights(&self, dim: Dim, id: NameId, h: i64) -> Option<Weights> {
        let b = self.hours.get(&h)?;
        let hour = self.name_in_hour(b, h, dim, id)?;
        let m0 = Calendar::minute_index(self.cfg.calendar.hour_start(h));
        let (w, seen) = self.minute_weights(dim, id, m0);
        if seen.cost == hour.cost && seen.requests == hour.requests {
            return Some(w.unwrap_or(EVEN));
        }
        b.shapes.as_ref()?.weights(dim, id)
    }

    /// A name's usual shape for an hour known only by its total: per slot, the
    /// median of the nearest known hours at the same time of day (3, within 4
    /// weeks; the mean of fewer); else an hourly rhythm: its latest known hours (3,
    /// within 2 days), if the latest two agree (a fresh start holds only its last
    /// hours by minute; one hour alone may be an incident's, not a rhythm). Only
    /// complete hours before `now_hour` count.
    fn learned_weights(&self, dim: Dim, id: NameId, h: i64, now_hour: i64) -> Option<Weights> {
        const WANT: usize = 3;
        let mut found: Vec<Weights> = Vec::new();
        'days: for k in 1..=28 {
            for cand in [h - 24 * k, h + 24 * k] {
                if cand < now_hour
                    && let Some(w) = self.known_weights(dim, id, cand)
                {
                    found.push(w);
                    if found.len() >= WANT {
                        break 'days;
                    }
                }
            }
        }
        if !found.is_empty() {
            return Some(typical(&found));
        }
        let latest: Vec<Weights> = (1..=48)
            .filter_map(|j| self.known_weights(dim, id, now_hour - j))
            .take(WANT)
            .collect();
        match latest.as_slice() {
            [a, b, ..] if distance(a, b) <= RHYTHM_DISTANCE => Some(typical(&latest)),
            _ => None,
        }
    }

    /// Spend and requests of one name over `[start, end)`, an hour cut by the span
    /// counting by where within it the name spends: its minutes or shape when the
    /// hour has them, else its usual shape there (see `learned_weights`), else
    /// evenly. So a job at the same minutes of every hour, or of every night, is in
    /// the baseline of those minutes, not spread over its hours. Exact in money
    /// where the parts are (evenly: as `prorated`). For spans that end by `now`.
    pub fn spend_between(
        &self,
        dim: Dim,
        id: NameId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Money, f64) {
        if end <= start {
            return (Money::ZERO, 0.0);
        }
        let cal = &self.cfg.calendar;
        let now_hour = cal.hour_index(now);
        let (first, last) = (
            cal.hour_index(start),
            cal.hour_index(end - Duration::nanoseconds(1)),
        );
        let (mut cost, mut requests) = (Money::ZERO, 0.0);
        for (&h, b) in self.hours.range(first..=last) {
            let Some(a) = self.name_in_hour(b, h, dim, id) else {
                continue;
            };
            let hs = cal.hour_start(h);
            let from = (start - hs).num_milliseconds().clamp(0, 3_600_000);
            let to = (end - hs).num_milliseconds().clamp(0, 3_600_000);
            if from == 0 && to == 3_600_000 {
                cost += a.cost;
                requests += a.requests as f64;
                continue;
            }
            let known = if h < now_hour {
                self.known_weights(dim, id, h)
            } else {
                None
            };
            let (num, den) = match known.or_else(|| self.learned_weights(dim, id, h, now_hour)) {
                Some(w) => {
                    // Slots in seconds; the cut within a slot to the millisecond.
                    let (n, d) = part_between(&w, from / 1000, to / 1000);
                    (n, d)
                }
                None => (i128::from(to - from), 3_600_000),
            };
            cost += Money::from_picos(a.cost.picos() * num / den);
            requests += a.requests as f64 * num as f64 / den as f64;
        }
        (cost, requests)
    }
}

/// Combinations a minute keeps cells for: past this, the minute keeps none (see
/// [`MinuteCells`]). About 13 bytes a sealed cell: at most 27 kB a minute, under
/// 5 MB for the 180 minutes the store holds by minute.
pub const MINUTE_CELLS_MAX: usize = 2_048;

/// One minute's totals per combination of the five names, so the parts of a short
/// window (a user's models in the last 5 minutes) are read from the window itself,
/// not from the hours around it. Bounded: a minute with more than
/// [`MINUTE_CELLS_MAX`] combinations drops its cells and says so (`overflowed`);
/// readers then fall back to the hours.
#[derive(Debug, Clone, Default)]
pub(super) struct MinuteCells {
    cells: super::tally::Tally,
    overflowed: bool,
}

impl MinuteCells {
    pub(super) fn add(&mut self, combo: super::ComboId, a: &Agg) {
        if self.overflowed {
            return;
        }
        if self.cells.add(combo, a) && self.cells.len() > MINUTE_CELLS_MAX {
            self.overflowed = true;
            self.cells = Default::default();
        }
    }

    pub(super) fn seal(&mut self) {
        self.cells.seal();
    }

    pub(super) fn rename(&mut self, combo_map: &[super::ComboId]) {
        self.cells.rename(combo_map);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.cells.heap_bytes()
    }
}

impl Store {
    /// Per name of `group`, the spend of the events matching every constraint of
    /// `filter` over minute buckets `[from, to]`, exactly, from the minutes' cells;
    /// `None` when a minute of the range kept no cells (too many combinations).
    pub fn minutes_by_dim_filtered(
        &self,
        group: Dim,
        filter: &[(Dim, NameId)],
        from: i64,
        to: i64,
    ) -> Option<super::NameMap<Agg>> {
        let mut out = super::NameMap::<Agg>::default();
        for (_, mb) in self.minutes.range(from..=to) {
            if mb.cells.overflowed {
                return None;
            }
            for (c, a) in mb.cells.cells.iter() {
                let key = self.combos.key(c);
                if super::key_matches(&key, filter) {
                    out.entry(key[group.index()]).or_default().add(&a);
                }
            }
        }
        Some(out)
    }
}

fn slot_of(minute_in_hour: i64) -> usize {
    (minute_in_hour / 5).clamp(0, SLOTS as i64 - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fact, FactBatch};
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fact(at: DateTime<Utc>, feature: &str, user: &str, model: &str, dollars: i64) -> Fact {
        Fact {
            at,
            names: [
                feature.into(),
                user.into(),
                model.into(),
                "acme".into(),
                "eu".into(),
            ],
            agg: Agg::one(Money::from_dollars(dollars), 100, 20),
        }
    }

    /// A store as the backfill leaves it at `now`: the night's 02:00 hour sent
    /// grouped by hour ($36 of a batch and $12 of chat, one fact each at the hour's
    /// start), nothing held by minute for it.
    fn backfilled(now: DateTime<Utc>) -> Store {
        let mut s = Store::new(StoreConfig::default(), now);
        let hour = utc("2026-03-21T02:00:00Z");
        s.apply(
            &FactBatch::of_rows(vec![
                fact(hour, "extract", "svc_batch", "sonnet", 36),
                fact(hour, "chat", "alice", "mini", 12),
            ]),
            now,
        );
        s.prune(now);
        s
    }

    /// The batch's shape as the server sends it: all of it at 02:20-02:30.
    fn batch_shape(dim: Dim, name: &str) -> NameShape {
        let mut slots = [0.0; SLOTS];
        slots[4] = 18.0;
        slots[5] = 18.0;
        NameShape {
            hour_start: utc("2026-03-21T02:00:00Z"),
            dim,
            name: name.into(),
            slots,
        }
    }

    #[test]
    fn server_shapes_place_a_backfilled_hours_spend() {
        let now = utc("2026-03-22T02:25:00Z");
        let mut s = backfilled(now);
        let id = s.lookup(Dim::Feature, "extract").unwrap();
        let span = |s: &Store, from: &str, to: &str| {
            s.spend_between(Dim::Feature, id, utc(from), utc(to), now).0
        };
        // Without a shape the hour counts evenly: $3 in any five minutes.
        assert_eq!(
            span(&s, "2026-03-21T02:20:00Z", "2026-03-21T02:25:00Z"),
            Money::from_dollars(3)
        );
        let g = s.generation();
        let kept = s.add_hour_shapes(&[
            batch_shape(Dim::Feature, "extract"),
            batch_shape(Dim::Model, "sonnet"),
            batch_shape(Dim::User, "svc_batch"),
            // Not held: an unknown name, an hour the store has no bucket for, a
            // time that is not an hour start, a dimension without shapes, no spend.
            batch_shape(Dim::Feature, "nobody"),
            NameShape {
                hour_start: utc("2026-03-21T05:00:00Z"),
                ..batch_shape(Dim::Feature, "extract")
            },
            NameShape {
                hour_start: utc("2026-03-21T02:05:00Z"),
                ..batch_shape(Dim::Feature, "extract")
            },
            batch_shape(Dim::Tenant, "acme"),
            NameShape {
                slots: [0.0; SLOTS],
                ..batch_shape(Dim::Feature, "chat")
            },
        ]);
        assert_eq!(kept, 3);
        assert!(s.generation() > g, "views recompute");
        // Exactly where it spent: half of it in 02:20-02:25, none before.
        assert_eq!(
            span(&s, "2026-03-21T02:20:00Z", "2026-03-21T02:25:00Z"),
            Money::from_dollars(18)
        );
        assert_eq!(
            span(&s, "2026-03-21T02:00:00Z", "2026-03-21T02:20:00Z"),
            Money::ZERO
        );
        // The hour's total is untouched, and a name without a shape stays even.
        assert_eq!(
            span(&s, "2026-03-21T02:00:00Z", "2026-03-21T03:00:00Z"),
            Money::from_dollars(36)
        );
        let chat = s.lookup(Dim::Feature, "chat").unwrap();
        assert_eq!(
            s.spend_between(
                Dim::Feature,
                chat,
                utc("2026-03-21T02:20:00Z"),
                utc("2026-03-21T02:25:00Z"),
                now
            )
            .0,
            Money::from_dollars(1)
        );
        // Sent again (a page cut an hour in two, a second read): replaced, not doubled.
        assert_eq!(
            s.add_hour_shapes(&[batch_shape(Dim::Feature, "extract")]),
            1
        );
        assert_eq!(
            span(&s, "2026-03-21T02:20:00Z", "2026-03-21T02:25:00Z"),
            Money::from_dollars(18)
        );
        // The minutes' capture of later hours leaves them (it cannot give one).
        s.prune(now + Duration::hours(5));
        assert_eq!(
            span(&s, "2026-03-21T02:20:00Z", "2026-03-21T02:25:00Z"),
            Money::from_dollars(18)
        );
    }

    #[test]
    fn an_hour_held_by_minute_keeps_its_own_shapes() {
        // 02:00-03:00 seen minute by minute: the batch at 02:40-02:45.
        let start = utc("2026-03-22T02:00:00Z");
        let mut s = Store::new(StoreConfig::default(), start);
        for m in 0..60 {
            let at = start + Duration::minutes(m);
            let mut facts = vec![fact(at, "chat", "alice", "mini", 1)];
            if (40..45).contains(&m) {
                facts.push(fact(at, "extract", "svc_batch", "sonnet", 6));
            }
            s.apply(&FactBatch::of_rows(facts), at + Duration::seconds(1));
        }
        // Until its first minute leaves the minute range, then its shapes are taken.
        let later = start + Duration::hours(4);
        s.prune(later);
        let mut wrong = batch_shape(Dim::Feature, "extract");
        wrong.hour_start = start;
        assert_eq!(s.add_hour_shapes(&[wrong]), 0, "the minutes' shape stays");
        let id = s.lookup(Dim::Feature, "extract").unwrap();
        let (cost, _) = s.spend_between(
            Dim::Feature,
            id,
            utc("2026-03-22T02:40:00Z"),
            utc("2026-03-22T02:45:00Z"),
            later,
        );
        assert_eq!(cost, Money::from_dollars(30));
    }

    #[test]
    fn the_inbox_hands_shapes_to_the_next_apply() {
        let now = utc("2026-03-22T02:25:00Z");
        let mut s = backfilled(now);
        let inbox = s.shape_inbox();
        inbox.put(vec![batch_shape(Dim::Feature, "extract")]);
        let id = s.lookup(Dim::Feature, "extract").unwrap();
        let five = |s: &Store| {
            s.spend_between(
                Dim::Feature,
                id,
                utc("2026-03-21T02:20:00Z"),
                utc("2026-03-21T02:25:00Z"),
                now,
            )
            .0
        };
        assert_eq!(five(&s), Money::from_dollars(3), "not before an apply");
        s.apply(&FactBatch::default(), now);
        assert_eq!(five(&s), Money::from_dollars(18));
        assert!(inbox.take().is_empty(), "taken once");
    }

    #[test]
    fn parts_of_an_hour_follow_its_shape_exactly() {
        let mut costs = [0i128; SLOTS];
        costs[2] = 3_000_000; // minutes 10-15
        costs[3] = 1_000_000; // minutes 15-20
        let w = weights_of(&costs).unwrap();
        let share = |from, to| {
            let (n, d) = part_between(&w, from, to);
            n as f64 / d as f64
        };
        assert!((share(600, 900) - 0.75).abs() < 1e-4);
        assert!((share(600, 1200) - 1.0).abs() < 1e-4);
        assert!((share(750, 900) - 0.375).abs() < 1e-4);
        assert_eq!(share(1800, 2400), 0.0);
        // Even: exactly a twelfth per slot.
        let (n, d) = part_between(&EVEN, 0, 300);
        assert_eq!(
            Money::from_dollars(60).picos() * n / d,
            Money::from_dollars(5).picos()
        );
        assert!(weights_of(&[0; SLOTS]).is_none());
        assert!(distance(&EVEN, &EVEN) < 1e-9);
        assert!(distance(&EVEN, &w) > 0.8);
        assert_eq!(typical(&[w, EVEN, w]), w);
    }
}
