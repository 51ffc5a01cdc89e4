//! Rolling aggregates in memory: exact, bucketed by hour, pruned as the window moves.
//!
//! Every fact lands in one hour bucket (and, if recent, one minute bucket). A bucket
//! keeps its total, a rollup per dimension (feature, user, model, tenant, region) and
//! one cell per combination of the five names, so any drill-down order can be
//! answered without going back to the database. Names are interned; nothing is kept
//! per row, so memory grows with distinct combinations per hour, not with rows.
//! Buckets whose time has passed are packed (`tally`), and names and combinations no
//! retained bucket holds are forgotten (`forget_dead_names`).

mod coarse;
mod combos;
mod intern;
mod subhour;
mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};
// Every map here is keyed by interned ids (or names) and probed millions of times per
// level build: FxHash instead of SipHash (no untrusted keys choose buckets here).
use rustc_hash::FxHashMap;

use coarse::Heavy;
pub use combos::ComboKey;
use combos::{ComboId, Combos};
pub use intern::{Interner, NameId};
use subhour::{HourShapes, SHAPED_DIMS};
use tally::Tally;

use crate::calendar::Calendar;
use crate::model::{Agg, Dim, FactBatch, NONE_NAME, RejectReason};

#[derive(Debug, Default, Clone)]
struct Bucket {
    total: Agg,
    /// Per-name totals; a coarse bucket's user part is empty (see `Store::user_days`).
    by_dim: [Tally; 5],
    /// Per combination of the five names; empty in a coarse bucket.
    cells: Tally,
    /// Where within the hour each name spent, when its minutes were all seen.
    shapes: Option<Box<HourShapes>>,
    /// An hour older than the detail hours: no cells, and its users' totals are
    /// kept per day.
    coarse: bool,
    /// A coarse hour's biggest users: what a user's baselines read there.
    heavy_users: Heavy<NameId>,
    /// A coarse hour's biggest (feature, user) pairs: what a user's usual share
    /// of a feature reads there.
    heavy_pairs: Heavy<(NameId, NameId)>,
}

#[derive(Debug, Default, Clone)]
struct MinuteBucket {
    total: Agg,
    by_dim: [Tally; 5],
    cells: subhour::MinuteCells,
}

/// What the store keeps and how it aligns time.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    pub calendar: Calendar,
    /// Hours of history kept behind the current hour (the month start is kept too).
    pub retention_hours: i64,
    /// Minutes kept at minute resolution, for short-window detection.
    pub minute_retention: i64,
    /// Hours behind the current one whose buckets keep every combination of the five
    /// names (drill-downs in any order) and per-hour user totals; None: every retained
    /// hour. Older hours are coarse: per-hour totals of feature, model, tenant and
    /// region, and per-day user totals, so their memory grows with names and hours,
    /// not with combinations (see `Store::complete_from`).
    pub detail_hours: Option<i64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            calendar: Calendar::default(),
            retention_hours: 35 * 24,
            minute_retention: 180,
            detail_hours: None,
        }
    }
}

/// What the store holds (see `Store::memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreMemory {
    pub hours: usize,
    pub minutes: usize,
    /// (hour, combination of the five names) totals.
    pub cells: usize,
    /// Hours kept coarse (no combinations; users per day).
    pub coarse_hours: usize,
    /// (day, user) totals of the coarse hours.
    pub user_days: usize,
    pub combinations: usize,
    /// Distinct names over the five dimensions.
    pub names: usize,
    /// Approximate heap bytes of all of the above: the sum of the four below.
    pub bytes: u64,
    /// Of `bytes`: the cells of the hour buckets.
    pub cell_bytes: u64,
    /// The per-dimension totals of the hour and minute buckets, and the hours'
    /// five-minute shapes.
    pub dimension_bytes: u64,
    /// The combinations' names, lookup map and per-name lists.
    pub combination_bytes: u64,
    /// The interned names.
    pub name_bytes: u64,
}

/// Counters of what went into the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intake {
    pub rows: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Rows older than the retained history (counted, not aggregated).
    pub too_old: u64,
}

impl Intake {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Rejected rows by reason name, most first (ties by name).
    pub fn rejected_by_reason(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = self
            .rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (r.name(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    cfg: StoreConfig,
    names: [Interner; 5],
    combos: Combos,
    hours: BTreeMap<i64, Bucket>,
    /// Users' totals over the coarse hours of each billing day, keyed by the day's
    /// first hour: only the hours before `detail_floor` (the rest are in the hours).
    user_days: BTreeMap<i64, Tally>,
    minutes: BTreeMap<i64, MinuteBucket>,
    /// Buckets written since they were last sealed (see `seal_past`).
    open_hours: BTreeSet<i64>,
    open_minutes: BTreeSet<i64>,
    intake: Intake,
    /// Oldest hour bucket still accepted.
    floor_hour: i64,
    /// Hours before this are coarse. Only moves forward.
    detail_floor: i64,
    /// Hours up to here have had their shapes taken (or could not).
    shaped_through: i64,
    /// Increments on every change, so views know when to recompute.
    generation: u64,
    newest_event: Option<DateTime<Utc>>,
    shape_inbox: crate::model::ShapeInbox,
}

/// What a query needs from the store (see `Store::complete_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Totals, and per-name totals of feature, model, tenant or region.
    Dims,
    /// Per-name totals of users.
    Users,
    /// Combinations: a filter with a name, or a drill-down path.
    Cells,
}

/// A constraint of a drill-down path: this dimension has this name.
pub type Filter = Vec<(Dim, NameId)>;

/// Per-name results of a query over one dimension.
pub type NameMap<V> = FxHashMap<NameId, V>;

/// What one drill-down level needs from the store, answered in one pass over the
/// buckets by `Store::level_totals`.
#[derive(Debug, Clone)]
pub struct LevelQuery<'a> {
    /// The dimension broken down.
    pub group: Dim,
    /// Only events matching every constraint count.
    pub filter: &'a [(Dim, NameId)],
    /// The window: hour buckets from here on (future-dated rows included).
    pub from: i64,
    /// The baseline's hour buckets, if one is wanted.
    pub baseline: Option<RangeInclusive<i64>>,
    /// Sparkline hour buckets, folded into slots of `step` hours from `spark.start()`.
    pub spark: RangeInclusive<i64>,
    pub step: i64,
}

/// One name of a level: in the window, in the baseline, per sparkline slot (empty
/// when the name has no event in the sparkline's range).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameTotals {
    pub id: NameId,
    pub window: Agg,
    pub baseline: Agg,
    pub series: Vec<Agg>,
}

/// The answer to a `LevelQuery`: every name with events in the window (in no
/// particular order) and the total of the window over all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelTotals {
    pub parent: Agg,
    pub rows: Vec<NameTotals>,
}

impl Store {
    pub fn new(cfg: StoreConfig, now: DateTime<Utc>) -> Self {
        let mut s = Store {
            cfg,
            names: Default::default(),
            combos: Combos::default(),
            hours: BTreeMap::new(),
            user_days: BTreeMap::new(),
            minutes: BTreeMap::new(),
            open_hours: BTreeSet::new(),
            open_minutes: BTreeSet::new(),
            intake: Intake::default(),
            floor_hour: i64::MIN,
            detail_floor: i64::MIN,
            shaped_through: i64::MIN,
            generation: 0,
            newest_event: None,
            shape_inbox: Default::default(),
        };
        s.floor_hour = s.retention_floor(now);
        s.detail_floor = s.detail_floor_at(now);
        s
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }
    pub fn calendar(&self) -> &Calendar {
        &self.cfg.calendar
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn intake(&self) -> &Intake {
        &self.intake
    }
    pub fn newest_event(&self) -> Option<DateTime<Utc>> {
        self.newest_event
    }

    /// The first instant whose rows the store keeps: `retention_hours` back, or the
    /// month start if that is earlier. Sources backfill from here.
    pub fn history_start(cfg: &StoreConfig, now: DateTime<Utc>) -> DateTime<Utc> {
        let cal = &cfg.calendar;
        let by_hours = cal.hour_start(cal.hour_index(now) - cfg.retention_hours);
        by_hours.min(cal.month_start(now))
    }

    /// The first hour that keeps its detail at `now` (see `StoreConfig::detail_hours`).
    fn detail_floor_at(&self, now: DateTime<Utc>) -> i64 {
        match self.cfg.detail_hours {
            // Never fewer than the minutes cover: their combinations explain the
            // short windows.
            Some(h) => {
                let minutes = self.cfg.minute_retention.div_euclid(60) + 1;
                self.cfg.calendar.hour_index(now) - h.max(minutes)
            }
            None => i64::MIN,
        }
    }

    /// Hours before this are coarse: no combinations, users per day.
    pub fn detail_floor(&self) -> i64 {
        self.detail_floor
    }

    /// The first hour of the billing day that holds hour `h`.
    pub fn day_of_hour(&self, h: i64) -> i64 {
        let cal = &self.cfg.calendar;
        cal.hour_index(cal.day_start(cal.hour_start(h)))
    }

    /// From which hour on a query is exact, by what it needs: per-hour totals of
    /// everything and of feature, model, tenant and region are kept for every retained
    /// hour; users per hour, and combinations (any filter or drill-down path), only
    /// from `detail_floor` on. Users over a span that starts at a billing day's start
    /// (today, the month) are exact too: the coarse hours keep them per day.
    pub fn complete_from(&self, need: Need) -> i64 {
        match need {
            Need::Dims => i64::MIN,
            Need::Users | Need::Cells => self.detail_floor,
        }
    }

    /// Whether per-user totals over `[from, ..]` are exact here (see `complete_from`).
    pub fn users_exact_from(&self, from: i64) -> bool {
        from >= self.detail_floor || self.day_of_hour(from) == from
    }

    fn retention_floor(&self, now: DateTime<Utc>) -> i64 {
        self.cfg
            .calendar
            .hour_index(Self::history_start(&self.cfg, now))
    }

    /// Minutes at or after this index are kept at minute resolution.
    pub fn minute_floor(&self, now: DateTime<Utc>) -> i64 {
        Calendar::minute_index(now) - self.cfg.minute_retention
    }

    /// Adds a batch. Facts whose `at` is a minute start within the minute range also
    /// feed the minute buckets; backfill sends minute groups for that range.
    pub fn apply(&mut self, batch: &FactBatch, now: DateTime<Utc>) {
        self.take_inbox_shapes();
        self.intake.rows += batch.rows;
        for (reason, n) in &batch.rejected {
            *self.intake.rejected.entry(*reason).or_default() += n;
        }
        let minute_floor = self.minute_floor(now);
        // Facts come grouped by time: note each bucket as open once per run, and
        // look each hour's day up once per run.
        let (mut last_open_hour, mut last_open_minute) = (None, None);
        let mut day_of = (i64::MIN, i64::MIN);
        for fact in &batch.facts {
            let hour = self.cfg.calendar.hour_index(fact.at);
            if hour < self.floor_hour {
                self.intake.too_old += fact.agg.requests;
                continue;
            }
            let mut key: ComboKey = [0; 5];
            for dim in Dim::ALL {
                let raw = fact.name(dim);
                let name = if raw.is_empty() { NONE_NAME } else { raw };
                key[dim.index()] = self.names[dim.index()].intern(name);
            }
            let coarse = hour < self.detail_floor;
            // Combinations only for hours kept in detail (and their minutes).
            let combo = (!coarse).then(|| self.combos.intern(key));
            let bucket = self.hours.entry(hour).or_default();
            bucket.total.add(&fact.agg);
            if coarse {
                bucket.coarse = true;
                for dim in Dim::ALL {
                    if dim != Dim::User {
                        bucket.by_dim[dim.index()].add(key[dim.index()], &fact.agg);
                    }
                }
                if day_of.0 != hour {
                    day_of = (hour, self.day_of_hour(hour));
                }
                self.user_days
                    .entry(day_of.1)
                    .or_default()
                    .add(key[Dim::User.index()], &fact.agg);
            } else if let Some(combo) = combo {
                bucket.cells.add(combo, &fact.agg);
                for dim in Dim::ALL {
                    bucket.by_dim[dim.index()].add(key[dim.index()], &fact.agg);
                }
            }
            if last_open_hour != Some(hour) {
                self.open_hours.insert(hour);
                last_open_hour = Some(hour);
            }
            let minute = Calendar::minute_index(fact.at);
            if minute >= minute_floor {
                let mb = self.minutes.entry(minute).or_default();
                mb.total.add(&fact.agg);
                for dim in Dim::ALL {
                    mb.by_dim[dim.index()].add(key[dim.index()], &fact.agg);
                }
                if let Some(combo) = combo {
                    mb.cells.add(combo, &fact.agg);
                }
                if last_open_minute != Some(minute) {
                    self.open_minutes.insert(minute);
                    last_open_minute = Some(minute);
                }
            }
            if self.newest_event.is_none_or(|n| fact.at > n) {
                self.newest_event = Some(fact.at);
            }
        }
        self.apply_coarse(&batch.coarse);
        self.apply_heavy(&batch.hour_users, &batch.hour_pairs);
        self.seal_past(now);
        self.generation += 1;
    }

    /// Packs the buckets written since their last seal whose time has passed (every
    /// hour before the current one, every minute before the current one): the
    /// current ones stay hash maps, which take writes cheaper.
    fn seal_past(&mut self, now: DateTime<Utc>) {
        let cur_hour = self.cfg.calendar.hour_index(now);
        let past: Vec<i64> = self.open_hours.range(..cur_hour).copied().collect();
        let mut days = BTreeSet::new();
        for h in past {
            self.open_hours.remove(&h);
            if let Some(b) = self.hours.get_mut(&h) {
                b.cells.seal();
                b.by_dim.iter_mut().for_each(Tally::seal);
                if b.coarse {
                    days.insert(self.day_of_hour(h));
                }
            }
        }
        for d in days {
            if let Some(t) = self.user_days.get_mut(&d) {
                t.seal();
            }
        }
        // The hours still being written (the current one, and any ahead of the
        // clock) seal too once a burst makes their maps large.
        for h in self.open_hours.range(cur_hour..) {
            if let Some(b) = self.hours.get_mut(h) {
                b.cells.seal_if_large();
                b.by_dim.iter_mut().for_each(Tally::seal_if_large);
            }
        }
        let cur_minute = Calendar::minute_index(now);
        let past: Vec<i64> = self.open_minutes.range(..cur_minute).copied().collect();
        for m in past {
            self.open_minutes.remove(&m);
            if let Some(b) = self.minutes.get_mut(&m) {
                b.by_dim.iter_mut().for_each(Tally::seal);
                b.cells.seal();
            }
        }
    }

    /// Drops buckets that fell out of the retained history.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let floor = self.retention_floor(now);
        let minute_floor = self.minute_floor(now);
        let before = (self.hours.len(), self.minutes.len());
        self.floor_hour = self.floor_hour.max(floor);
        self.capture_shapes(minute_floor);
        let kept = self.hours.split_off(&self.floor_hour);
        let dropped = std::mem::replace(&mut self.hours, kept);
        // A day's users go with its last hour.
        let first_day = self.day_of_hour(self.floor_hour);
        self.user_days = self.user_days.split_off(&first_day);
        let detail_floor = self.detail_floor_at(now);
        let coarsened = detail_floor > self.detail_floor;
        if coarsened {
            self.detail_floor = detail_floor;
            self.coarsen_before(detail_floor);
        }
        // Minutes first: a name only an aged-out minute holds is dead too.
        self.minutes = self.minutes.split_off(&minute_floor);
        if !dropped.is_empty() || coarsened {
            self.forget_dead_names();
        }
        self.open_hours = self.open_hours.split_off(&self.floor_hour);
        self.open_minutes = self.open_minutes.split_off(&minute_floor);
        self.seal_past(now);
        if coarsened || before != (self.hours.len(), self.minutes.len()) {
            self.generation += 1;
        }
    }

    /// Names and combinations are interned for good, so a long-running monitor
    /// would keep every name it ever saw: once enough combinations are held by no
    /// retained bucket (a quarter of them, and at least `MIN_DEAD`), they and the
    /// names only they used are dropped and the ids renumbered. Renumbering keeps
    /// the ids' order, so packed buckets stay sorted. Ids never leave the store (the
    /// views keep names), so renumbering is safe between queries.
    fn forget_dead_names(&mut self) {
        const MIN_DEAD: usize = 10_000;
        let live = self.live_combos();
        let dead = live.iter().filter(|l| !**l).count();
        if dead < MIN_DEAD.max(self.combos.len() / 4) {
            return;
        }
        self.forget_dead_names_now(&live);
    }

    /// By combination id: whether a retained hour bucket holds it. Found by reading
    /// every bucket's keys (a few million, once per pruned hour) rather than kept as
    /// a count per combination (4 bytes each, all the time).
    fn live_combos(&self) -> Vec<bool> {
        let mut live = vec![false; self.combos.len()];
        for b in self.hours.values() {
            for c in b.cells.keys() {
                live[c as usize] = true;
            }
        }
        live
    }

    fn forget_dead_names_now(&mut self, live: &[bool]) {
        let mut keep_names: [Vec<bool>; 5] =
            std::array::from_fn(|d| vec![false; self.names[d].len()]);
        for (c, key) in self.combos.iter() {
            if live[c as usize] {
                for d in 0..5 {
                    keep_names[d][key[d] as usize] = true;
                }
            }
        }
        // Names the coarse hours, the users' days and the minutes still hold.
        let mut keep = |d: usize, id: NameId| keep_names[d][id as usize] = true;
        for b in self.hours.values().filter(|b| b.coarse) {
            for (d, t) in b.by_dim.iter().enumerate() {
                t.keys().for_each(|id| keep(d, id));
            }
        }
        for t in self.user_days.values() {
            t.keys().for_each(|id| keep(Dim::User.index(), id));
        }
        for b in self.minutes.values() {
            for (d, t) in b.by_dim.iter().enumerate() {
                t.keys().for_each(|id| keep(d, id));
            }
        }
        let name_map: [Vec<NameId>; 5] =
            std::array::from_fn(|d| self.names[d].retain(&keep_names[d]));
        let combo_map = self.combos.retain(live, &name_map);
        let shaped_maps = SHAPED_DIMS.map(|d| name_map[d.index()].as_slice());
        for b in self.hours.values_mut() {
            b.cells.rename(&combo_map);
            for (d, t) in b.by_dim.iter_mut().enumerate() {
                t.rename(&name_map[d]);
            }
            if let Some(shapes) = &mut b.shapes {
                shapes.rename(shaped_maps);
            }
            let renamed = |d: Dim, id: NameId| {
                name_map[d.index()]
                    .get(id as usize)
                    .copied()
                    .filter(|n| *n != u32::MAX)
            };
            b.heavy_users.rename(|u| renamed(Dim::User, u));
            b.heavy_pairs
                .rename(|(f, u)| Some((renamed(Dim::Feature, f)?, renamed(Dim::User, u)?)));
        }
        for b in self.minutes.values_mut() {
            for (d, t) in b.by_dim.iter_mut().enumerate() {
                t.rename(&name_map[d]);
            }
            b.cells.rename(&combo_map);
        }
        for t in self.user_days.values_mut() {
            t.rename(&name_map[Dim::User.index()]);
        }
        self.generation += 1;
    }

    // ---- names ----

    pub fn name(&self, dim: Dim, id: NameId) -> &str {
        self.names[dim.index()].name(id)
    }
    pub fn lookup(&self, dim: Dim, name: &str) -> Option<NameId> {
        self.names[dim.index()].get(name)
    }
    pub fn distinct_names(&self, dim: Dim) -> usize {
        self.names[dim.index()].len()
    }

    // ---- queries over hours (inclusive bucket ranges) ----

    pub fn hour_index(&self, t: DateTime<Utc>) -> i64 {
        self.cfg.calendar.hour_index(t)
    }

    /// Hour buckets from `from` (inclusive) onward, including any future-dated rows.
    pub fn hours_from(&self, from: DateTime<Utc>) -> RangeInclusive<i64> {
        self.hour_index(from)..=i64::MAX
    }

    pub fn total(&self, hours: RangeInclusive<i64>) -> Agg {
        let mut a = Agg::default();
        for b in self.hours.range(hours).map(|(_, b)| b) {
            a.add(&b.total);
        }
        a
    }

    /// Per-name totals of one dimension over a range. Users of coarse hours count
    /// by day: a day counts when its first hour is in the range (exact for a range
    /// that starts at a day's start: `users_exact_from`).
    pub fn by_dim(&self, dim: Dim, hours: RangeInclusive<i64>) -> NameMap<Agg> {
        let mut out = NameMap::<Agg>::default();
        if dim == Dim::User {
            for (_, t) in self.user_days.range(hours.clone()) {
                for (id, a) in t.iter() {
                    out.entry(id).or_default().add(&a);
                }
            }
        }
        for (_, b) in self.hours.range(hours) {
            for (id, a) in b.by_dim[dim.index()].iter() {
                out.entry(id).or_default().add(&a);
            }
        }
        out
    }

    /// One user's total over the coarse hours of the days whose first hour is in
    /// `hours` (see `by_dim`).
    fn user_days_of(&self, id: NameId, hours: RangeInclusive<i64>) -> Agg {
        let mut a = Agg::default();
        for (_, t) in self.user_days.range(hours) {
            if let Some(x) = t.get(id) {
                a.add(&x);
            }
        }
        a
    }

    /// Per-name totals of `group` among events matching every constraint of `filter`.
    pub fn by_dim_filtered(
        &self,
        group: Dim,
        filter: &[(Dim, NameId)],
        hours: RangeInclusive<i64>,
    ) -> NameMap<Agg> {
        if filter.is_empty() {
            return self.by_dim(group, hours);
        }
        let mut out = NameMap::<Agg>::default();
        let combos = self.matching_combos(filter);
        for (_, b) in self.hours.range(hours).filter(|(_, b)| !b.coarse) {
            self.for_matching_cells(b, filter, &combos, |combo, a| {
                let key = self.combos.key(combo);
                out.entry(key[group.index()]).or_default().add(&a);
            });
        }
        out
    }

    /// Total of the events matching every constraint of `filter`.
    pub fn total_filtered(&self, filter: &[(Dim, NameId)], hours: RangeInclusive<i64>) -> Agg {
        if filter.is_empty() {
            return self.total(hours);
        }
        let mut a = Agg::default();
        let combos = if filter.len() > 1 {
            self.matching_combos(filter)
        } else {
            Vec::new() // one constraint: the rollups answer
        };
        if let [(Dim::User, id)] = filter {
            a.add(&self.user_days_of(*id, hours.clone()));
        }
        for (_, b) in self.hours.range(hours) {
            self.add_matching(b, filter, &combos, &mut a);
        }
        a
    }

    /// Adds a bucket's events matching `filter` (not empty) to `into`: from the
    /// rollup for a single constraint (it holds the same sum), else from the cells.
    fn add_matching(
        &self,
        b: &Bucket,
        filter: &[(Dim, NameId)],
        combos: &[ComboId],
        into: &mut Agg,
    ) {
        if let [(dim, id)] = filter {
            if let Some(a) = b.by_dim[dim.index()].get(*id) {
                into.add(&a);
            }
            return;
        }
        if b.coarse {
            return; // no combinations: see `complete_from`
        }
        self.for_matching_cells(b, filter, combos, |_, cell| into.add(&cell));
    }

    /// The combinations matching every constraint of `filter` (not empty), taken
    /// from the list of its rarest name, or from every key when no name of the
    /// filter is in a dimension that keeps lists.
    fn matching_combos(&self, filter: &[(Dim, NameId)]) -> Vec<ComboId> {
        let rarest = filter
            .iter()
            .filter_map(|(d, id)| self.combos.holding(*d, *id))
            .min_by_key(|combos| combos.len());
        match rarest {
            Some(list) => list
                .iter()
                .copied()
                .filter(|c| self.matches(*c, filter))
                .collect(),
            None => self
                .combos
                .iter()
                .filter(|(_, key)| key_matches(key, filter))
                .map(|(c, _)| c)
                .collect(),
        }
    }

    /// Calls `f` with each cell of a bucket matching `filter`, whose combinations
    /// are `combos` (from `matching_combos`): looked up one by one when they are
    /// fewer than the bucket's cells, else by scanning the cells.
    fn for_matching_cells(
        &self,
        b: &Bucket,
        filter: &[(Dim, NameId)],
        combos: &[ComboId],
        mut f: impl FnMut(ComboId, Agg),
    ) {
        if combos.len() < b.cells.len() {
            for c in combos {
                if let Some(a) = b.cells.get(*c) {
                    f(*c, a);
                }
            }
        } else {
            for (c, a) in b.cells.iter_where(|c| self.matches(c, filter)) {
                f(c, a);
            }
        }
    }

    fn matches(&self, combo: ComboId, filter: &[(Dim, NameId)]) -> bool {
        key_matches(&self.combos.key(combo), filter)
    }

    /// One value per hour over `[from, to]` for one name (or the total with `None`).
    /// A user's coarse hours are an estimate (`user_hour_estimate`), for baselines.
    pub fn hourly_series(&self, dim: Dim, id: Option<NameId>, from: i64, to: i64) -> Vec<Agg> {
        let mut out = vec![Agg::default(); (to - from + 1).max(0) as usize];
        for (h, b) in self.hours.range(from..=to) {
            let slot = &mut out[(h - from) as usize];
            match id {
                None => *slot = b.total,
                Some(id) if dim == Dim::User && b.coarse => {
                    *slot = self.user_hour_estimate(id, *h);
                }
                Some(id) => {
                    if let Some(a) = b.by_dim[dim.index()].get(id) {
                        *slot = a;
                    }
                }
            }
        }
        out
    }

    /// One name's total in hour `h` (bucket `b`); a user's in a coarse hour is the
    /// estimate baselines read (`user_hour_estimate`).
    fn name_in_hour(&self, b: &Bucket, h: i64, dim: Dim, id: NameId) -> Option<Agg> {
        if dim == Dim::User && b.coarse {
            Some(self.user_hour_estimate(id, h)).filter(|a| !a.is_empty())
        } else {
            b.by_dim[dim.index()].get(id)
        }
    }

    /// Hourly series for every name of a dimension at once (one pass over buckets).
    pub fn hourly_series_by_dim(&self, dim: Dim, from: i64, to: i64) -> NameMap<Vec<Agg>> {
        let len = (to - from + 1).max(0) as usize;
        let mut out = NameMap::<Vec<Agg>>::default();
        for (h, b) in self.hours.range(from..=to) {
            for (id, a) in b.by_dim[dim.index()].iter() {
                out.entry(id).or_insert_with(|| vec![Agg::default(); len])[(h - from) as usize] = a;
            }
        }
        out
    }

    /// Hour buckets `[from, to]` folded into slots of `step` hours (slot 0 starts at
    /// `from`), per name of `group`, among events matching every constraint of
    /// `filter`: one pass over the buckets for a whole drill-down level's sparklines.
    pub fn series_by_dim_filtered(
        &self,
        group: Dim,
        filter: &[(Dim, NameId)],
        from: i64,
        to: i64,
        step: i64,
    ) -> NameMap<Vec<Agg>> {
        let step = step.max(1);
        let len = slots(from, to, step);
        let mut out = NameMap::<Vec<Agg>>::default();
        if len == 0 {
            return out;
        }
        let combos = if filter.is_empty() {
            Vec::new()
        } else {
            self.matching_combos(filter)
        };
        for (h, b) in self.hours.range(from..=to) {
            let slot = ((h - from) / step) as usize;
            if filter.is_empty() {
                for (id, a) in b.by_dim[group.index()].iter() {
                    out.entry(id).or_insert_with(|| vec![Agg::default(); len])[slot].add(&a);
                }
                continue;
            }
            if b.coarse {
                continue; // no combinations: see `complete_from`
            }
            self.for_matching_cells(b, filter, &combos, |combo, a| {
                let key = self.combos.key(combo);
                out.entry(key[group.index()])
                    .or_insert_with(|| vec![Agg::default(); len])[slot]
                    .add(&a);
            });
        }
        out
    }

    /// Hour buckets `[from, to]` folded into slots of `step` hours, over the events
    /// matching every constraint of `filter` (all events when it is empty).
    pub fn series_filtered(
        &self,
        filter: &[(Dim, NameId)],
        from: i64,
        to: i64,
        step: i64,
    ) -> Vec<Agg> {
        let step = step.max(1);
        let mut out = vec![Agg::default(); slots(from, to, step)];
        if out.is_empty() {
            return out;
        }
        let combos = if filter.len() > 1 {
            self.matching_combos(filter)
        } else {
            Vec::new() // one constraint: the rollups answer
        };
        for (h, b) in self.hours.range(from..=to) {
            let slot = &mut out[((h - from) / step) as usize];
            if filter.is_empty() {
                slot.add(&b.total);
            } else {
                self.add_matching(b, filter, &combos, slot);
            }
        }
        out
    }

    /// Everything a drill-down level shows, in one pass over the buckets: per name
    /// of `q.group` among the events matching `q.filter`, its totals in the window
    /// and the baseline and its sparkline series, and the window's total. Names are
    /// dense ids, so the per-name state is a vector, not a map.
    pub fn level_totals(&self, q: &LevelQuery) -> LevelTotals {
        const ABSENT: u32 = u32::MAX;
        let step = q.step.max(1);
        let (spark_from, spark_to) = (*q.spark.start(), *q.spark.end());
        let len = slots(spark_from, spark_to, step);
        let mut lo = q.from.min(spark_from);
        if let Some(b) = &q.baseline {
            lo = lo.min(*b.start());
        }
        let in_baseline = |h: i64| q.baseline.as_ref().is_some_and(|b| b.contains(&h));
        let mut out = LevelTotals::default();
        // Index into `rows` by name id; `in_window` says which rows are answers.
        let mut index = vec![ABSENT; self.names[q.group.index()].len()];
        let mut rows: Vec<NameTotals> = Vec::new();
        let mut in_window: Vec<bool> = Vec::new();
        let combos = if q.filter.is_empty() {
            Vec::new()
        } else {
            self.matching_combos(q.filter)
        };
        let mut add = |id: NameId, a: &Agg, window: bool, baseline: bool, slot: Option<usize>| {
            let i = match index[id as usize] {
                ABSENT => {
                    index[id as usize] = rows.len() as u32;
                    rows.push(NameTotals {
                        id,
                        ..NameTotals::default()
                    });
                    in_window.push(false);
                    rows.len() - 1
                }
                i => i as usize,
            };
            let row = &mut rows[i];
            if window {
                row.window.add(a);
                in_window[i] = true;
            }
            if baseline {
                row.baseline.add(a);
            }
            if let Some(slot) = slot {
                if row.series.is_empty() {
                    row.series = vec![Agg::default(); len];
                }
                row.series[slot].add(a);
            }
        };
        let slot_of = |h: i64| {
            (len > 0 && (spark_from..=spark_to).contains(&h))
                .then(|| ((h - spark_from) / step) as usize)
        };
        // Users of the coarse hours, by day (see `by_dim`).
        if q.filter.is_empty() && q.group == Dim::User {
            for (&day, t) in self.user_days.range(lo..) {
                let (window, baseline, slot) = (day >= q.from, in_baseline(day), slot_of(day));
                if window || baseline || slot.is_some() {
                    for (id, a) in t.iter() {
                        add(id, &a, window, baseline, slot);
                    }
                }
            }
        }
        for (&h, b) in self.hours.range(lo..) {
            let window = h >= q.from;
            let baseline = in_baseline(h);
            let slot = slot_of(h);
            if !window && !baseline && slot.is_none() {
                continue;
            }
            if q.filter.is_empty() {
                for (id, a) in b.by_dim[q.group.index()].iter() {
                    add(id, &a, window, baseline, slot);
                }
                if window {
                    out.parent.add(&b.total);
                }
                continue;
            }
            if b.coarse {
                continue; // no combinations: see `complete_from`
            }
            self.for_matching_cells(b, q.filter, &combos, |combo, a| {
                add(
                    self.combos.key(combo)[q.group.index()],
                    &a,
                    window,
                    baseline,
                    slot,
                );
                if window {
                    out.parent.add(&a);
                }
            });
        }
        out.rows = rows
            .into_iter()
            .zip(in_window)
            .filter_map(|(r, w)| w.then_some(r))
            .collect();
        out
    }

    /// Resolves a path of names to interned ids; `None` if any name is unknown (so
    /// nothing can match it).
    pub fn resolve(&self, path: &[(Dim, String)]) -> Option<Filter> {
        path.iter()
            .map(|(d, n)| self.lookup(*d, n).map(|id| (*d, id)))
            .collect()
    }

    /// Sum over minute buckets `[from, to]` per name of a dimension (recent data only).
    pub fn minutes_by_dim(&self, dim: Dim, from: i64, to: i64) -> NameMap<Agg> {
        let mut out = NameMap::<Agg>::default();
        for (_, b) in self.minutes.range(from..=to) {
            for (id, a) in b.by_dim[dim.index()].iter() {
                out.entry(id).or_default().add(&a);
            }
        }
        out
    }

    /// Sum over minute buckets `[from, to]` of one name (or of everything with
    /// `None`): exact, where `prorated` spreads hour buckets evenly.
    pub fn minutes_of(&self, dim: Dim, id: Option<NameId>, from: i64, to: i64) -> Agg {
        let mut a = Agg::default();
        for (_, b) in self.minutes.range(from..=to) {
            match id {
                None => a.add(&b.total),
                Some(id) => {
                    if let Some(x) = b.by_dim[dim.index()].get(id) {
                        a.add(&x);
                    }
                }
            }
        }
        a
    }

    pub fn minutes_total(&self, from: i64, to: i64) -> Agg {
        let mut a = Agg::default();
        for (_, b) in self.minutes.range(from..=to) {
            a.add(&b.total);
        }
        a
    }

    /// Spend and requests of one name (or the total with `None`) over `[start, end)`
    /// from the hour buckets, each bucket counted pro rata to its overlap with the
    /// span (spend is assumed even within an hour). Money stays exact integers; the
    /// request count is fractional for that reason.
    pub fn prorated(
        &self,
        dim: Dim,
        id: Option<NameId>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> (crate::money::Money, f64) {
        use crate::money::Money;
        if end <= start {
            return (Money::ZERO, 0.0);
        }
        let cal = &self.cfg.calendar;
        let first = cal.hour_index(start);
        let last = cal.hour_index(end - Duration::nanoseconds(1));
        let series = self.hourly_series(dim, id, first, last);
        let (mut cost, mut requests) = (Money::ZERO, 0.0);
        for (i, a) in series.iter().enumerate() {
            let h = first + i as i64;
            let (hs, he) = (cal.hour_start(h), cal.hour_start(h + 1));
            let span = (he - hs).num_milliseconds().max(1);
            let overlap = (end.min(he) - start.max(hs))
                .num_milliseconds()
                .clamp(0, span);
            cost += Money::from_picos(a.cost.picos() * overlap as i128 / span as i128);
            requests += a.requests as f64 * overlap as f64 / span as f64;
        }
        (cost, requests)
    }

    /// The oldest hour bucket that holds data.
    pub fn oldest_hour(&self) -> Option<i64> {
        self.hours.keys().next().copied()
    }

    /// Approximate counts for memory accounting: (hour buckets, cells, combos).
    pub fn footprint(&self) -> (usize, usize, usize) {
        let cells = self.hours.values().map(|b| b.cells.len()).sum();
        (self.hours.len(), cells, self.combos.len())
    }

    /// What the store holds and about how many heap bytes that takes (by capacity:
    /// allocator overhead and the B-tree nodes of the bucket maps aside), so a leak
    /// elsewhere can be told from history piling up (`snapshot --json`, the soak).
    pub fn memory(&self) -> StoreMemory {
        use std::mem::size_of;
        let mut m = StoreMemory {
            hours: self.hours.len(),
            minutes: self.minutes.len(),
            combinations: self.combos.len(),
            names: self.names.iter().map(Interner::len).sum(),
            ..StoreMemory::default()
        };
        let mut by_dim = 0usize;
        let mut cell_bytes = 0usize;
        for t in self.user_days.values() {
            m.user_days += t.len();
            by_dim += t.heap_bytes();
        }
        for b in self.hours.values() {
            m.cells += b.cells.len();
            m.coarse_hours += usize::from(b.coarse);
            by_dim += b.heavy_users.heap_bytes() + b.heavy_pairs.heap_bytes();
            cell_bytes += size_of::<Bucket>() + b.cells.heap_bytes();
            by_dim += b.by_dim.iter().map(Tally::heap_bytes).sum::<usize>();
            by_dim += b
                .shapes
                .as_ref()
                .map_or(0, |s| size_of::<HourShapes>() + s.heap_bytes());
        }
        for b in self.minutes.values() {
            by_dim += size_of::<MinuteBucket>();
            by_dim += b.by_dim.iter().map(Tally::heap_bytes).sum::<usize>();
            by_dim += b.cells.heap_bytes();
        }
        let combos = self.combos.heap_bytes();
        let names: usize = self.names.iter().map(Interner::heap_bytes).sum();
        m.cell_bytes = cell_bytes as u64;
        m.dimension_bytes = by_dim as u64;
        m.combination_bytes = combos as u64;
        m.name_bytes = names as u64;
        m.bytes = m.cell_bytes + m.dimension_bytes + m.combination_bytes + m.name_bytes;
        m
    }

    /// The time span covered, for "history since" labels.
    pub fn history_span(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.oldest_hour()
            .map(|h| now - self.cfg.calendar.hour_start(h))
    }
}

/// Slots of `step` hours needed to cover `[from, to]`.
fn slots(from: i64, to: i64, step: i64) -> usize {
    if to < from {
        0
    } else {
        ((to - from) / step + 1) as usize
    }
}

/// Whether a combination's names meet every constraint of `filter`.
fn key_matches(key: &ComboKey, filter: &[(Dim, NameId)]) -> bool {
    filter.iter().all(|(d, id)| key[d.index()] == *id)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
