//! Window-overlap mode, for tables with no key at all (the seed article's table as
//! written: `timestamp`, `feature_name`, `cost_usd`; no id, no tx, no request id).
//!
//! Rows cannot be told apart, so they are never read one by one: each poll has the
//! server aggregate the rows of the overlap window (minute groups from the window's
//! start) and replaces what the window contributed before: only the difference
//! reaches the store. A minute that falls behind the window keeps what was counted
//! for it last. Totals equal SQL's for every row that commits no later than the
//! overlap behind its own timestamp; a row committing later than that is missed,
//! and the status bar says so.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::model::{Agg, Fact, FactBatch};

type GroupId = (DateTime<Utc>, [String; 5]);

#[derive(Debug, Clone)]
pub struct WindowTracker {
    overlap: Duration,
    /// The window's start (a whole minute); never moves back. Every group at or
    /// after it is in `counted`, as last counted.
    start: DateTime<Utc>,
    counted: HashMap<GroupId, Agg>,
}

/// What this mode promises, for the status bar and `doctor`.
pub fn guarantee(overlap: std::time::Duration) -> String {
    let o = humantime::format_duration(overlap);
    format!("overlap {o}: rows committed more than {o} late are missed")
}

/// The whole minute at or before `t`.
pub fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap_or(t)
}

impl WindowTracker {
    /// A window starting at `start` with nothing counted in it yet (the backfill
    /// counts only rows before it).
    pub fn new(overlap: std::time::Duration, start: DateTime<Utc>) -> WindowTracker {
        WindowTracker {
            overlap: Duration::from_std(overlap).unwrap_or(Duration::minutes(2)),
            start: minute_floor(start),
            counted: HashMap::new(),
        }
    }

    /// Where the window starts: the start of the backfill's rows, `now` minus the
    /// overlap, floored to a minute.
    pub fn start_for(overlap: std::time::Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        minute_floor(now - Duration::from_std(overlap).unwrap_or(Duration::minutes(2)))
    }

    /// Where the next poll aggregates from.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn overlap(&self) -> std::time::Duration {
        self.overlap.to_std().unwrap_or_default()
    }

    /// Takes the window's groups as the server aggregated them now (every group at
    /// or after `start()`), returns what changed since the last count, and moves the
    /// window on to `now` minus the overlap. A group that shrank (rows deleted or
    /// made cheaper in place) is sent as a negative cost only when its counts did
    /// not shrink; otherwise it keeps its old count (a store only adds requests).
    pub fn replace(&mut self, groups: Vec<Fact>, now: DateTime<Utc>) -> FactBatch {
        let mut batch = FactBatch::default();
        for g in groups {
            if g.at < self.start {
                continue;
            }
            let id = (g.at, g.names);
            let old = self.counted.get(&id).copied().unwrap_or_default();
            let Some(delta) = difference(&g.agg, &old) else {
                tracing::warn!(at = %id.0, "window overlap: a group lost rows; keeping its count");
                continue;
            };
            if delta == Agg::default() {
                continue;
            }
            self.counted.insert(id.clone(), g.agg);
            batch.rows += delta.requests;
            batch.facts.push(Fact {
                at: id.0,
                names: id.1,
                agg: delta,
            });
        }
        let next = Self::start_for(self.overlap(), now);
        if next > self.start {
            self.start = next;
            let start = self.start;
            self.counted.retain(|(at, _), _| *at >= start);
        }
        batch
    }

    /// Groups remembered (those inside the window).
    pub fn remembered(&self) -> usize {
        self.counted.len()
    }
}

/// `new - old`, if no count went down.
fn difference(new: &Agg, old: &Agg) -> Option<Agg> {
    Some(Agg {
        cost: new.cost - old.cost,
        requests: new.requests.checked_sub(old.requests)?,
        input_tokens: new.input_tokens.checked_sub(old.input_tokens)?,
        output_tokens: new.output_tokens.checked_sub(old.output_tokens)?,
        computed: new.computed.checked_sub(old.computed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn names(feature: &str) -> [String; 5] {
        [
            feature.into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]
    }

    fn group(at: DateTime<Utc>, feature: &str, micros: i64, requests: u64) -> Fact {
        Fact {
            at,
            names: names(feature),
            agg: Agg {
                requests,
                ..Agg::one(Money::from_micros(micros), 0, 0)
            },
        }
    }

    fn total(facts: &[Fact]) -> (Money, u64) {
        facts.iter().fold((Money::ZERO, 0), |(c, n), f| {
            (c + f.agg.cost, n + f.agg.requests)
        })
    }

    #[test]
    fn each_poll_sends_only_what_changed_in_the_window() {
        let overlap = std::time::Duration::from_secs(600);
        // 1_800_000_000 is a whole minute (30_000_000 * 60).
        let mut w = WindowTracker::new(overlap, t(0));
        let first = w.replace(vec![group(t(0), "chat", 1_000_000, 2)], t(60));
        assert_eq!(total(&first.facts), (Money::from_micros(1_000_000), 2));
        assert_eq!(first.rows, 2);
        // The same rows again: nothing new. A third row in the same minute, and a
        // late one in an earlier minute of the window: only they are sent.
        assert!(
            w.replace(vec![group(t(0), "chat", 1_000_000, 2)], t(120))
                .facts
                .is_empty()
        );
        let next = w.replace(
            vec![
                group(t(0), "chat", 1_500_000, 3),
                group(t(300), "chat", 250_000, 1),
            ],
            t(180),
        );
        assert_eq!(total(&next.facts), (Money::from_micros(750_000), 2));
        assert_eq!(w.start(), t(0), "ten minutes behind t(180) is before t(0)");
    }

    #[test]
    fn minutes_behind_the_window_are_final() {
        let overlap = std::time::Duration::from_secs(120);
        let mut w = WindowTracker::new(overlap, t(0));
        w.replace(vec![group(t(0), "chat", 10, 1)], t(30));
        w.replace(vec![group(t(0), "chat", 10, 1)], t(185));
        assert_eq!(w.start(), t(60), "185 s - 120 s, floored to the minute");
        assert_eq!(w.remembered(), 0);
        // A row dated t(0) committing now is more than the overlap late: missed,
        // even if a query returned it.
        assert!(
            w.replace(vec![group(t(0), "chat", 20, 2)], t(190))
                .facts
                .is_empty()
        );
        // The window never moves back.
        w.replace(Vec::new(), t(0));
        assert_eq!(w.start(), t(60));
    }

    #[test]
    fn a_group_that_lost_rows_keeps_its_count_and_a_cheaper_one_is_subtracted() {
        let mut w = WindowTracker::new(std::time::Duration::from_secs(600), t(0));
        w.replace(vec![group(t(0), "chat", 500, 2)], t(10));
        assert!(
            w.replace(vec![group(t(0), "chat", 100, 1)], t(20))
                .facts
                .is_empty()
        );
        let cheaper = w.replace(vec![group(t(0), "chat", 300, 2)], t(30));
        assert_eq!(total(&cheaper.facts), (Money::from_micros(-200), 0));
    }

    #[test]
    fn the_window_starts_on_a_whole_minute() {
        assert_eq!(minute_floor(t(59)), t(0));
        assert_eq!(minute_floor(t(-1)), t(-60));
        assert_eq!(
            WindowTracker::start_for(std::time::Duration::from_secs(600), t(659)),
            t(0)
        );
    }
}
