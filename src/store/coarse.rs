//! The coarse tier: hours older than the store's detail hours keep per-hour totals
//! of the small dimensions (feature, model, tenant, region), their users per billing
//! day, and each hour's biggest users (for baselines). What the source's coarse
//! backfill sends lands here, and detailed hours turn coarse here as time passes.

use std::collections::{BTreeMap, BTreeSet};

use super::{Bucket, NameId, Store, subhour};
use crate::model::{Agg, Dim, DimFact, Fact, FactBatch, NONE_NAME, PairFact};

/// A coarse hour's biggest names (users, or (feature, user) pairs) and their
/// spend in picodollars, sorted by key: at least `SHAPE_MIN_COST` each, at most
/// `SHAPE_MAX_NAMES`. What baselines read for an hour whose users are kept per
/// day, where the day's rhythm would spread a nightly batch over the whole day.
#[derive(Debug, Clone)]
pub(super) struct Heavy<K>(Vec<(K, Kept)>);

/// What a coarse hour keeps of one of its biggest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    pub picos: i128,
    /// Its requests, where the source sent them (server shapes carry only spend).
    pub requests: Option<u64>,
}

impl Kept {
    pub(super) fn of(a: &Agg) -> Kept {
        Kept {
            picos: a.cost.picos(),
            requests: Some(a.requests),
        }
    }
}

impl<K> Default for Heavy<K> {
    fn default() -> Self {
        Heavy(Vec::new())
    }
}

impl<K: Ord + Copy> Heavy<K> {
    /// The biggest of these totals.
    fn of(totals: impl Iterator<Item = (K, Kept)>) -> Heavy<K> {
        let mut h = Heavy(totals.collect());
        h.0.sort_by_key(|x| x.0);
        h.cap();
        h
    }

    pub(super) fn get(&self, k: K) -> Option<Kept> {
        self.0
            .binary_search_by_key(&k, |x| x.0)
            .ok()
            .map(|i| self.0[i].1)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds to `k`'s spend and requests (a retried chunk sends the rows counted
    /// since); `cap` once the additions are done.
    pub(super) fn add(&mut self, k: K, more: Kept) {
        match self.0.binary_search_by_key(&k, |x| x.0) {
            Ok(i) => {
                let kept = &mut self.0[i].1;
                kept.picos += more.picos;
                kept.requests = kept.requests.zip(more.requests).map(|(a, b)| a + b);
            }
            Err(i) => self.0.insert(i, (k, more)),
        }
    }

    /// Keeps the biggest `SHAPE_MAX_NAMES` of at least `SHAPE_MIN_COST`.
    fn cap(&mut self) {
        let min = subhour::SHAPE_MIN_COST.picos();
        self.0.retain(|x| x.1.picos >= min);
        if self.0.len() > subhour::SHAPE_MAX_NAMES {
            self.0
                .sort_by(|x, y| y.1.picos.cmp(&x.1.picos).then(x.0.cmp(&y.0)));
            self.0.truncate(subhour::SHAPE_MAX_NAMES);
            self.0.sort_by_key(|x| x.0);
        }
    }

    /// Renames the keys (None: the name is gone, and its entry with it).
    pub(super) fn rename(&mut self, map: impl Fn(K) -> Option<K>) {
        self.0 = std::mem::take(&mut self.0)
            .into_iter()
            .filter_map(|(k, c)| map(k).map(|n| (n, c)))
            .collect();
        self.0.sort_by_key(|x| x.0);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * size_of::<(K, Kept)>()
    }
}

impl Store {
    /// What the source's backfill sends for these facts (rows, or finer groups):
    /// the facts of hours kept in detail as they are; for older hours what
    /// `Sql::backfill_coarse` groups them into: per hour the total and each small
    /// dimension's names, per billing day the users, per hour its biggest users.
    /// For sources that make rows rather than read them (the backtest), and tests.
    pub fn as_backfilled(&self, facts: Vec<Fact>) -> FactBatch {
        let cal = self.cfg.calendar;
        let rows = facts.iter().map(|f| f.agg.requests).sum();
        let mut fine = Vec::new();
        let mut groups: BTreeMap<(i64, Option<Dim>, String), Agg> = BTreeMap::new();
        let mut users_by_hour: BTreeMap<i64, BTreeMap<String, Agg>> = BTreeMap::new();
        let mut pairs_by_hour: BTreeMap<i64, BTreeMap<(String, String), Agg>> = BTreeMap::new();
        for f in facts {
            let h = cal.hour_index(f.at);
            if h >= self.detail_floor {
                fine.push(f);
                continue;
            }
            groups
                .entry((h, None, String::new()))
                .or_default()
                .add(&f.agg);
            for dim in Dim::ALL {
                let at = if dim == Dim::User {
                    self.day_of_hour(h)
                } else {
                    h
                };
                let name = f.name(dim).to_string();
                groups.entry((at, Some(dim), name)).or_default().add(&f.agg);
            }
            users_by_hour
                .entry(h)
                .or_default()
                .entry(f.name(Dim::User).to_string())
                .or_default()
                .add(&f.agg);
            let pair = (
                f.name(Dim::Feature).to_string(),
                f.name(Dim::User).to_string(),
            );
            pairs_by_hour
                .entry(h)
                .or_default()
                .entry(pair)
                .or_default()
                .add(&f.agg);
        }
        let coarse = groups
            .into_iter()
            .map(|((h, dim, name), agg)| DimFact {
                at: cal.hour_start(h),
                dim,
                name,
                agg,
            })
            .collect();
        // The server's choice: at least SHAPE_MIN_COST, the biggest first.
        fn biggest<K: Ord>(totals: BTreeMap<K, Agg>) -> Vec<(K, Agg)> {
            let mut heavy: Vec<(K, Agg)> = totals
                .into_iter()
                .filter(|(_, a)| a.cost >= Store::SHAPE_MIN_COST)
                .collect();
            heavy.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then_with(|| a.0.cmp(&b.0)));
            heavy.truncate(Store::SHAPE_MAX_NAMES);
            heavy
        }
        let mut hour_users = Vec::new();
        for (h, users) in users_by_hour {
            hour_users.extend(biggest(users).into_iter().map(|(name, agg)| DimFact {
                at: cal.hour_start(h),
                dim: Some(Dim::User),
                name,
                agg,
            }));
        }
        let mut hour_pairs = Vec::new();
        for (h, pairs) in pairs_by_hour {
            let pairs = biggest(pairs).into_iter();
            hour_pairs.extend(pairs.map(|((feature, user), agg)| PairFact {
                at: cal.hour_start(h),
                feature,
                user,
                cost: agg.cost,
            }));
        }
        FactBatch {
            facts: fine,
            coarse,
            hour_users,
            hour_pairs,
            rows,
            rejected: Default::default(),
        }
    }

    /// Adds per-dimension totals of hours the source read without combinations (the
    /// backfill of hours older than the detail hours). A total or a name of an hour
    /// that still keeps its detail would leave its cells short, so the source sends
    /// these only for coarse hours; any that land in a detailed hour make it coarse.
    pub(super) fn apply_coarse(&mut self, facts: &[DimFact]) {
        let mut day_of = (i64::MIN, i64::MIN);
        for fact in facts {
            let hour = self.cfg.calendar.hour_index(fact.at);
            // A user's day counts while any of its hours is retained.
            let oldest = match fact.dim {
                Some(Dim::User) => self.day_of_hour(self.floor_hour),
                _ => self.floor_hour,
            };
            if hour < oldest {
                if fact.dim.is_none() {
                    self.intake.too_old += fact.agg.requests;
                }
                continue;
            }
            if hour >= self.detail_floor {
                tracing::warn!(%fact.at, "per-dimension history for an hour kept in detail: made coarse");
                self.coarsen_hour(hour);
            }
            let bucket = self.hours.entry(hour).or_default();
            bucket.coarse = true;
            self.open_hours.insert(hour);
            let Some(dim) = fact.dim else {
                bucket.total.add(&fact.agg);
                if self.newest_event.is_none_or(|n| fact.at > n) {
                    self.newest_event = Some(fact.at);
                }
                continue;
            };
            let name = if fact.name.is_empty() {
                NONE_NAME
            } else {
                &fact.name
            };
            let id = self.names[dim.index()].intern(name);
            if dim == Dim::User {
                if day_of.0 != hour {
                    day_of = (hour, self.day_of_hour(hour));
                }
                self.user_days
                    .entry(day_of.1)
                    .or_default()
                    .add(id, &fact.agg);
            } else {
                bucket.by_dim[dim.index()].add(id, &fact.agg);
            }
        }
    }

    /// Adds the biggest users and (feature, user) pairs of coarse hours
    /// (`FactBatch::hour_users`, `hour_pairs`) to their hours, summing one sent
    /// twice (a retried chunk sends the rows counted since). Hours that are not
    /// coarse keep their users whole and ignore these.
    pub(super) fn apply_heavy(&mut self, users: &[DimFact], pairs: &[PairFact]) {
        let mut touched = BTreeSet::new();
        let coarse_hour = |s: &Store, at| {
            let hour = s.cfg.calendar.hour_index(at);
            s.hours.get(&hour).is_some_and(|b| b.coarse).then_some(hour)
        };
        for fact in users {
            let Some(hour) = coarse_hour(self, fact.at) else {
                continue;
            };
            let id = self.intern_name(Dim::User, &fact.name);
            if let Some(b) = self.hours.get_mut(&hour) {
                b.heavy_users.add(id, Kept::of(&fact.agg));
                touched.insert(hour);
            }
        }
        for pair in pairs {
            let Some(hour) = coarse_hour(self, pair.at) else {
                continue;
            };
            let key = (
                self.intern_name(Dim::Feature, &pair.feature),
                self.intern_name(Dim::User, &pair.user),
            );
            if let Some(b) = self.hours.get_mut(&hour) {
                let kept = Kept {
                    picos: pair.cost.picos(),
                    requests: None,
                };
                b.heavy_pairs.add(key, kept);
                touched.insert(hour);
            }
        }
        for h in touched {
            if let Some(b) = self.hours.get_mut(&h) {
                b.heavy_users.cap();
                b.heavy_pairs.cap();
            }
        }
    }

    /// A (feature, user) pair's spend over `hours`, for a baseline: exact in the
    /// hours kept in detail, the pair's kept amount in coarse hours
    /// (`Bucket::heavy_pairs`: a pair under `SHAPE_MIN_COST` there counts nothing).
    /// Never shown as a figure.
    pub fn pair_cost_for_baseline(
        &self,
        feature: NameId,
        user: NameId,
        hours: std::ops::RangeInclusive<i64>,
    ) -> crate::money::Money {
        // Coarse hours hold no cells: the filtered total is their detailed part.
        let exact =
            self.total_filtered(&[(Dim::Feature, feature), (Dim::User, user)], hours.clone());
        let kept: i128 = self
            .hours
            .range(hours)
            .filter(|(_, b)| b.coarse)
            .filter_map(|(_, b)| b.heavy_pairs.get((feature, user)).map(|k| k.picos))
            .sum();
        exact.cost + crate::money::Money::from_picos(kept)
    }

    /// A name's id, interned (empty: the source's NULL).
    fn intern_name(&mut self, dim: Dim, name: &str) -> NameId {
        let name = if name.is_empty() { NONE_NAME } else { name };
        self.names[dim.index()].intern(name)
    }

    /// Makes the hours before `floor` coarse: their cells go, their users' totals
    /// move into their days.
    pub(super) fn coarsen_before(&mut self, floor: i64) {
        let due: Vec<i64> = self
            .hours
            .range(..floor)
            .filter(|(_, b)| !b.coarse)
            .map(|(h, _)| *h)
            .collect();
        let mut days = BTreeSet::new();
        for h in due {
            self.coarsen_hour(h);
            days.insert(self.day_of_hour(h));
        }
        for d in days {
            if let Some(t) = self.user_days.get_mut(&d) {
                t.seal();
            }
        }
    }

    pub(super) fn coarsen_hour(&mut self, h: i64) {
        let day = self.day_of_hour(h);
        let Some(b) = self.hours.get_mut(&h) else {
            return;
        };
        if b.coarse {
            return;
        }
        b.coarse = true;
        let cells = std::mem::take(&mut b.cells);
        let mut pairs: BTreeMap<(NameId, NameId), Agg> = BTreeMap::new();
        for (combo, a) in cells.iter() {
            let key = self.combos.key(combo);
            pairs
                .entry((key[Dim::Feature.index()], key[Dim::User.index()]))
                .or_default()
                .add(&a);
        }
        b.heavy_pairs = Heavy::of(pairs.iter().map(|(k, a)| (*k, Kept::of(a))));
        let users = std::mem::take(&mut b.by_dim[Dim::User.index()]);
        b.heavy_users = Heavy::of(users.iter().map(|(id, a)| (id, Kept::of(&a))));
        let into = self.user_days.entry(day).or_default();
        for (id, a) in users.iter() {
            into.add(id, &a);
        }
    }

    /// A user's spend in a coarse hour, which keeps users per day only (and the
    /// hour's biggest users, `Bucket::heavy_users`): the kept amount, else the rest
    /// of the user's coarse day in the proportion of the hour to its other coarse
    /// hours (everyone's spend), as if the user followed the day's rhythm. Good
    /// enough for a baseline sample; never shown as a figure.
    pub(super) fn user_hour_estimate(&self, id: NameId, h: i64) -> Agg {
        let day = self.day_of_hour(h);
        let Some(user) = self.user_days.get(&day).and_then(|t| t.get(id)) else {
            return Agg::default();
        };
        let heavy_of = |b: &Bucket| b.heavy_users.get(id);
        let next_day = self.day_of_hour(day + 26).max(day + 1);
        let coarse_hours = || {
            self.hours
                .range(day..next_day)
                .filter(|(_, b)| b.coarse)
                .map(|(_, b)| b)
        };
        let this = self.hours.get(&h);
        // Counts in the proportion of the day's spend (all of it when it cost nothing).
        let part = |x: u64, cost: i128| -> u64 {
            let day_cost = user.cost.picos();
            if day_cost <= 0 {
                let n = coarse_hours().count().max(1) as u64;
                x / n
            } else {
                (x as f64 * (cost as f64 / day_cost as f64)).round() as u64
            }
        };
        // The user's spend and requests this hour: kept if it was among the hour's
        // biggest, else the rest of its day spread over its other hours by
        // everyone's spend.
        let (cost, requests) = match this.and_then(heavy_of) {
            Some(kept) => (
                kept.picos,
                kept.requests
                    .unwrap_or_else(|| part(user.requests, kept.picos)),
            ),
            None => {
                let (mut rest, mut rest_requests, mut others) =
                    (user.cost.picos(), user.requests, 0i128);
                for b in coarse_hours() {
                    match heavy_of(b) {
                        Some(kept) => {
                            rest -= kept.picos;
                            let req = kept
                                .requests
                                .unwrap_or_else(|| part(user.requests, kept.picos));
                            rest_requests = rest_requests.saturating_sub(req);
                        }
                        None => others += b.total.cost.picos(),
                    }
                }
                let hour = this.map_or(0, |b| b.total.cost.picos());
                if others <= 0 || rest <= 0 {
                    (0, 0)
                } else {
                    let share = hour as f64 / others as f64;
                    let cost = match rest.checked_mul(hour) {
                        Some(x) => x / others,
                        None => (rest as f64 * share) as i128,
                    };
                    (cost, (rest_requests as f64 * share).round() as u64)
                }
            }
        };
        Agg {
            cost: crate::money::Money::from_picos(cost),
            requests,
            input_tokens: part(user.input_tokens, cost),
            output_tokens: part(user.output_tokens, cost),
            computed: part(user.computed, cost),
        }
    }
}
