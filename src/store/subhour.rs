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
use crate::model::{Agg, Dim};
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

/// One name's share of its hour's cost per five-minute slot, in units that sum to
/// about `u16::MAX` (read as fractions of their sum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Shape {
    pub(super) id: NameId,
    pub(super) slots: [u16; SLOTS],
}

/// The shapes of one hour whose minutes were all seen: per shaped dimension, sorted
/// by id. A name with spend in the hour but no shape spent under the floor: its
/// hour counts as even.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HourShapes {
    pub(super) by_dim: [Vec<Shape>; 3],
}

impl HourShapes {
    /// `Some(None)`: the hour is known and the name has no shape (even spread).
    pub(super) fn fractions(&self, dim: Dim, id: NameId) -> Option<[f64; SLOTS]> {
        let list = &self.by_dim[shaped_index(dim)?];
        let i = list.binary_search_by_key(&id, |s| s.id).ok()?;
        Some(fractions_of(&list[i].slots))
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

/// A shape from per-slot costs (in picodollars); `None` when there is no spend.
pub(super) fn shape_of(id: NameId, slot_costs: &[i128; SLOTS]) -> Option<Shape> {
    let total: i128 = slot_costs.iter().map(|c| (*c).max(0)).sum();
    if total <= 0 {
        return None;
    }
    let mut slots = [0u16; SLOTS];
    for (s, c) in slots.iter_mut().zip(slot_costs) {
        *s = ((*c).max(0) * i128::from(u16::MAX) / total) as u16;
    }
    Some(Shape { id, slots })
}

pub(super) fn fractions_of(slots: &[u16; SLOTS]) -> [f64; SLOTS] {
    let sum: f64 = slots.iter().map(|s| f64::from(*s)).sum();
    let mut out = [1.0 / SLOTS as f64; SLOTS];
    if sum > 0.0 {
        for (o, s) in out.iter_mut().zip(slots) {
            *o = f64::from(*s) / sum;
        }
    }
    out
}

/// The share of an hour's spend in `[from, to)` seconds into it, given the spend's
/// per-slot fractions (a slot cut by the span counts pro rata).
pub fn share_between(fractions: &[f64; SLOTS], from: i64, to: i64) -> f64 {
    const SLOT_SECS: i64 = 3600 / SLOTS as i64;
    let (from, to) = (from.clamp(0, 3600), to.clamp(0, 3600));
    if to <= from {
        return 0.0;
    }
    fractions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (s, e) = (i as i64 * SLOT_SECS, (i as i64 + 1) * SLOT_SECS);
            let overlap = (to.min(e) - from.max(s)).max(0);
            f * overlap as f64 / SLOT_SECS as f64
        })
        .sum()
}

impl Store {
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
            let shapes = self.shapes_from_minutes(h);
            if let Some(b) = self.hours.get_mut(&h) {
                b.shapes = shapes.map(Box::new);
            }
        }
    }

    fn shapes_from_minutes(&self, h: i64) -> Option<HourShapes> {
        let b = self.hours.get(&h)?;
        let m0 = Calendar::minute_index(self.cfg.calendar.hour_start(h));
        let minutes = || self.minutes.range(m0..m0 + 60);
        let mut seen = Agg::default();
        minutes().for_each(|(_, mb)| seen.add(&mb.total));
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
                    let mut slot_costs = [0i128; SLOTS];
                    for (m, mb) in minutes() {
                        if let Some(a) = mb.by_dim[dim.index()].get(*id) {
                            slot_costs[slot_of(m - m0)] += a.cost.picos();
                        }
                    }
                    shape_of(*id, &slot_costs)
                })
                .collect();
            list.sort_by_key(|s| s.id);
            list.shrink_to_fit();
            out.by_dim[i] = list;
        }
        Some(out)
    }

    /// Where within the complete hour `h` a name spent, per five-minute slot: from
    /// the minute buckets when they hold all of its spend in the hour, else from the
    /// hour's shape (even when the name spent under the shape floor). `None` when
    /// the hour is unknown below the hour or the name spent nothing in it.
    fn known_fractions(&self, dim: Dim, id: NameId, h: i64) -> Option<[f64; SLOTS]> {
        let b = self.hours.get(&h)?;
        let hour = b.by_dim[dim.index()].get(id)?;
        let m0 = Calendar::minute_index(self.cfg.calendar.hour_start(h));
        let mut slot_costs = [0i128; SLOTS];
        let mut seen = Agg::default();
        for (m, mb) in self.minutes.range(m0..m0 + 60) {
            if let Some(a) = mb.by_dim[dim.index()].get(id) {
                slot_costs[slot_of(m - m0)] += a.cost.picos();
                seen.add(&a);
            }
        }
        if seen.cost == hour.cost && seen.requests == hour.requests {
            return Some(
                shape_of(id, &slot_costs)
                    .map_or([1.0 / SLOTS as f64; SLOTS], |s| fractions_of(&s.slots)),
            );
        }
        let shapes = b.shapes.as_ref()?;
        shaped_index(dim)?;
        Some(
            shapes
                .fractions(dim, id)
                .unwrap_or([1.0 / SLOTS as f64; SLOTS]),
        )
    }

    /// A name's usual shape for an hour known only by its total: the mean of the
    /// nearest known hours at the same time of day (up to 3, within 4 weeks), else
    /// of its latest known hours (up to 3, within 2 days before `now_hour`: an hourly
    /// rhythm, as a fresh start holds only its last hours by minute). Only complete
    /// hours, before `now_hour`, count.
    fn learned_fractions(
        &self,
        dim: Dim,
        id: NameId,
        h: i64,
        now_hour: i64,
    ) -> Option<[f64; SLOTS]> {
        const WANT: usize = 3;
        let mut found: Vec<[f64; SLOTS]> = Vec::new();
        'days: for k in 1..=28 {
            for cand in [h - 24 * k, h + 24 * k] {
                if cand < now_hour
                    && let Some(f) = self.known_fractions(dim, id, cand)
                {
                    found.push(f);
                    if found.len() >= WANT {
                        break 'days;
                    }
                }
            }
        }
        if found.is_empty() {
            found.extend(
                (1..=48)
                    .filter_map(|j| self.known_fractions(dim, id, now_hour - j))
                    .take(WANT),
            );
        }
        if found.is_empty() {
            return None;
        }
        let mut mean = [0.0; SLOTS];
        for f in &found {
            for (m, x) in mean.iter_mut().zip(f) {
                *m += x / found.len() as f64;
            }
        }
        Some(mean)
    }

    /// Spend and requests of one name over `[start, end)`, an hour cut by the span
    /// counting by where within it the name spends: its minutes or shape when the
    /// hour has them, else its usual shape at that time (see `learned_fractions`),
    /// else evenly. So a job at the same minutes of every hour, or of every night,
    /// is in the baseline of those minutes, not spread over its hours. For spans
    /// that end by `now`.
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
            let Some(a) = b.by_dim[dim.index()].get(id) else {
                continue;
            };
            let hs = cal.hour_start(h);
            let from = (start - hs).num_seconds().clamp(0, 3600);
            let to = (end - hs).num_seconds().clamp(0, 3600);
            if from == 0 && to == 3600 {
                cost += a.cost;
                requests += a.requests as f64;
                continue;
            }
            let known = if h < now_hour {
                self.known_fractions(dim, id, h)
            } else {
                None
            };
            let fractions = known
                .or_else(|| self.learned_fractions(dim, id, h, now_hour))
                .unwrap_or([1.0 / SLOTS as f64; SLOTS]);
            let share = share_between(&fractions, from, to).clamp(0.0, 1.0);
            // The share in parts per 2^20: money is scaled in integers.
            let parts = (share * f64::from(1u32 << 20)).round() as i128;
            cost += Money::from_picos(a.cost.picos() * parts >> 20);
            requests += a.requests as f64 * share;
        }
        (cost, requests)
    }
}

fn slot_of(minute_in_hour: i64) -> usize {
    (minute_in_hour / 5).clamp(0, SLOTS as i64 - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_a_shape_follow_its_slots() {
        let mut costs = [0i128; SLOTS];
        costs[2] = 3_000_000; // minutes 10-15
        costs[3] = 1_000_000; // minutes 15-20
        let s = shape_of(7, &costs).unwrap();
        let f = fractions_of(&s.slots);
        assert!((share_between(&f, 600, 900) - 0.75).abs() < 1e-4);
        assert!((share_between(&f, 600, 1200) - 1.0).abs() < 1e-4);
        assert!((share_between(&f, 750, 900) - 0.375).abs() < 1e-4);
        assert_eq!(share_between(&f, 1800, 2400), 0.0);
        let even = fractions_of(&[0; SLOTS]);
        assert!((share_between(&even, 0, 300) - 1.0 / 12.0).abs() < 1e-12);
        assert!(shape_of(1, &[0; SLOTS]).is_none());
    }
}
