//! The coarse tier: hours older than the store's detail hours keep per-hour totals
//! of the small dimensions (feature, model, tenant, region), their users per billing
//! day, and each hour's biggest users (for baselines). What the source's coarse
//! backfill sends lands here, and detailed hours turn coarse here as time passes.

use std::collections::{BTreeMap, BTreeSet};

use super::{Bucket, NameId, Store, Tally, subhour};
use crate::model::{Agg, Dim, DimFact, Fact, FactBatch, NONE_NAME};

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
        let mut hour_users = Vec::new();
        for (h, users) in users_by_hour {
            let mut heavy: Vec<(String, Agg)> = users
                .into_iter()
                .filter(|(_, a)| a.cost >= Self::SHAPE_MIN_COST)
                .collect();
            heavy.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then_with(|| a.0.cmp(&b.0)));
            heavy.truncate(Self::SHAPE_MAX_NAMES);
            hour_users.extend(heavy.into_iter().map(|(name, agg)| DimFact {
                at: cal.hour_start(h),
                dim: Some(Dim::User),
                name,
                agg,
            }));
        }
        FactBatch {
            facts: fine,
            coarse,
            hour_users,
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

    /// Adds the biggest users of coarse hours (`FactBatch::hour_users`) to their
    /// hours' `heavy_users`, summing a user sent twice (a retried chunk sends the
    /// rows counted since) and keeping the biggest `SHAPE_MAX_NAMES`. Hours that
    /// are not coarse keep their users whole and ignore these.
    pub(super) fn apply_hour_users(&mut self, facts: &[DimFact]) {
        let mut touched = BTreeSet::new();
        for fact in facts {
            let hour = self.cfg.calendar.hour_index(fact.at);
            if !self.hours.get(&hour).is_some_and(|b| b.coarse) {
                continue;
            }
            let name = if fact.name.is_empty() {
                NONE_NAME
            } else {
                &fact.name
            };
            let id = self.names[Dim::User.index()].intern(name);
            let Some(b) = self.hours.get_mut(&hour) else {
                continue;
            };
            match b.heavy_users.binary_search_by_key(&id, |x| x.0) {
                Ok(i) => b.heavy_users[i].1 += fact.agg.cost.picos(),
                Err(i) => b.heavy_users.insert(i, (id, fact.agg.cost.picos())),
            }
            touched.insert(hour);
        }
        for h in touched {
            if let Some(b) = self.hours.get_mut(&h)
                && b.heavy_users.len() > subhour::SHAPE_MAX_NAMES
            {
                b.heavy_users
                    .sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
                b.heavy_users.truncate(subhour::SHAPE_MAX_NAMES);
                b.heavy_users.sort_by_key(|x| x.0);
            }
        }
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
        b.cells = Tally::default();
        let users = std::mem::take(&mut b.by_dim[Dim::User.index()]);
        let mut heavy: Vec<(NameId, i128)> = users
            .iter()
            .filter(|(_, a)| a.cost >= subhour::SHAPE_MIN_COST)
            .map(|(id, a)| (id, a.cost.picos()))
            .collect();
        heavy.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        heavy.truncate(subhour::SHAPE_MAX_NAMES);
        heavy.sort_by_key(|x| x.0);
        b.heavy_users = heavy;
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
        let heavy_of = |b: &Bucket| {
            b.heavy_users
                .binary_search_by_key(&id, |x| x.0)
                .ok()
                .map(|i| b.heavy_users[i].1)
        };
        let next_day = self.day_of_hour(day + 26).max(day + 1);
        let coarse_hours = || {
            self.hours
                .range(day..next_day)
                .filter(|(_, b)| b.coarse)
                .map(|(_, b)| b)
        };
        let this = self.hours.get(&h);
        // The user's spend this hour: kept if it was among the hour's biggest, else
        // the rest of its day spread over its other hours by everyone's spend.
        let cost = match this.and_then(heavy_of) {
            Some(c) => c,
            None => {
                let (mut rest, mut others) = (user.cost.picos(), 0i128);
                for b in coarse_hours() {
                    match heavy_of(b) {
                        Some(c) => rest -= c,
                        None => others += b.total.cost.picos(),
                    }
                }
                let hour = this.map_or(0, |b| b.total.cost.picos());
                if others <= 0 || rest <= 0 {
                    0
                } else {
                    match rest.checked_mul(hour) {
                        Some(x) => x / others,
                        None => (rest as f64 * (hour as f64 / others as f64)) as i128,
                    }
                }
            }
        };
        // Counts in the proportion of the day's spend (all of it when it cost nothing).
        let part = |x: u64| -> u64 {
            let day_cost = user.cost.picos();
            if day_cost <= 0 {
                let n = coarse_hours().count().max(1) as u64;
                x / n
            } else {
                (x as f64 * (cost as f64 / day_cost as f64)).round() as u64
            }
        };
        Agg {
            cost: crate::money::Money::from_picos(cost),
            requests: part(user.requests),
            input_tokens: part(user.input_tokens),
            output_tokens: part(user.output_tokens),
            computed: part(user.computed),
        }
    }
}
