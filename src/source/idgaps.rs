//! Id-overlap mode (tables without a `tx` column): which ids have been read, which
//! are missing and still awaited, and when to give a missing id up.
//!
//! A bigserial id is taken at INSERT but visible only at COMMIT, so a missing id is
//! either a transaction still running (it will appear) or a rollback (it never
//! will). Each gap is awaited for the settle time, then given up. A row committing
//! later than that is lost: that is the honest limit of this mode.
//!
//! The "seen" set is kept as its complement: everything in `(low_water, max_seen]`
//! has been read except the pending gaps, and everything at or below `low_water` is
//! resolved. So memory grows with the number of gaps, not with rows, and an id is
//! reported new at most once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Pending gaps beyond this are given up at once, lowest first, so a sequence that
/// skips by design (INCREMENT BY 2, shared sequences) cannot grow the tracker or the
/// probe query without bound.
pub const MAX_PENDING_GAPS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    /// Inclusive end of the missing range (the start is the map key).
    end: i64,
    noticed: Instant,
}

#[derive(Debug, Clone)]
pub struct GapTracker {
    low_water: i64,
    max_seen: i64,
    pending: BTreeMap<i64, Gap>,
    given_up: u64,
}

impl GapTracker {
    /// Every id up to and including `start` counts as read.
    pub fn new(start: i64) -> Self {
        GapTracker {
            low_water: start,
            max_seen: start,
            pending: BTreeMap::new(),
            given_up: 0,
        }
    }

    /// Ids at or below this are resolved (read, or given up).
    pub fn low_water(&self) -> i64 {
        self.low_water
    }
    /// The highest id read; new rows are those above it.
    pub fn max_seen(&self) -> i64 {
        self.max_seen
    }
    /// Ids given up so far (a sequence jump counts every id it skipped).
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The missing ranges (inclusive), lowest first, to probe for late commits.
    pub fn pending_ranges(&self) -> Vec<(i64, i64)> {
        self.pending.iter().map(|(s, g)| (*s, g.end)).collect()
    }

    /// How long the oldest gap has been awaited: how far this mode trails.
    pub fn oldest_pending_age(&self, now: Instant) -> Option<Duration> {
        self.pending
            .values()
            .map(|g| now.saturating_duration_since(g.noticed))
            .max()
    }

    /// Records a row read from the table. True if the id is new (count the row); false
    /// for an id already read or given up (skip it).
    pub fn observe(&mut self, id: i64, now: Instant) -> bool {
        if id <= self.low_water {
            return false;
        }
        if id > self.max_seen {
            if id > self.max_seen + 1 {
                self.pending.insert(
                    self.max_seen + 1,
                    Gap {
                        end: id - 1,
                        noticed: now,
                    },
                );
                self.enforce_cap();
            }
            self.max_seen = id;
            self.advance();
            return true;
        }
        // Inside the seen range: new only if it fills part of a pending gap.
        let Some((&start, &gap)) = self.pending.range(..=id).next_back() else {
            return false;
        };
        if id > gap.end {
            return false;
        }
        self.pending.remove(&start);
        if start < id {
            self.pending.insert(
                start,
                Gap {
                    end: id - 1,
                    noticed: gap.noticed,
                },
            );
        }
        if id < gap.end {
            self.pending.insert(
                id + 1,
                Gap {
                    end: gap.end,
                    noticed: gap.noticed,
                },
            );
            self.enforce_cap();
        }
        self.advance();
        true
    }

    /// Gives up gaps awaited for `settle` or longer. Returns how many ids were given up.
    pub fn expire(&mut self, now: Instant, settle: Duration) -> u64 {
        let expired: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, g)| now.saturating_duration_since(g.noticed) >= settle)
            .map(|(s, _)| *s)
            .collect();
        let before = self.given_up;
        for start in expired {
            self.give_up(start);
        }
        self.advance();
        self.given_up - before
    }

    fn give_up(&mut self, start: i64) {
        if let Some(g) = self.pending.remove(&start) {
            let ids = (g.end as i128 - start as i128 + 1).clamp(0, u64::MAX as i128) as u64;
            self.given_up = self.given_up.saturating_add(ids);
        }
    }

    fn enforce_cap(&mut self) {
        while self.pending.len() > MAX_PENDING_GAPS {
            // The lowest gap is (nearly always) the oldest, and giving it up is what
            // lets the low water mark move.
            match self.pending.keys().next().copied() {
                Some(start) => {
                    tracing::warn!(
                        start,
                        "too many pending id gaps; giving the lowest up early"
                    );
                    self.give_up(start);
                }
                None => break,
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        self.low_water = match self.pending.keys().next() {
            Some(first) => first - 1,
            None => self.max_seen,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn in_order_ids_leave_no_gaps() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(0);
        for id in 1..=5 {
            assert!(g.observe(id, t0));
        }
        assert_eq!((g.low_water(), g.max_seen(), g.pending_count()), (5, 5, 0));
        // Re-reading is harmless: already-seen ids are not new.
        assert!(!g.observe(3, t0));
        assert!(!g.observe(5, t0));
    }

    #[test]
    fn out_of_order_commit_fills_its_gap_once() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(100);
        assert!(g.observe(102, t0)); // 101 still running
        assert_eq!(g.pending_ranges(), vec![(101, 101)]);
        assert_eq!(g.low_water(), 100);
        assert_eq!(g.expire(at(t0, 5), Duration::from_secs(60)), 0);
        assert!(g.observe(101, at(t0, 5)));
        assert!(!g.observe(101, at(t0, 6)));
        assert_eq!((g.low_water(), g.pending_count()), (102, 0));
    }

    #[test]
    fn filling_the_middle_of_a_gap_splits_it() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(0);
        assert!(g.observe(10, t0));
        assert_eq!(g.pending_ranges(), vec![(1, 9)]);
        assert!(g.observe(5, at(t0, 1)));
        assert_eq!(g.pending_ranges(), vec![(1, 4), (6, 9)]);
        assert!(g.observe(1, at(t0, 1)));
        assert!(g.observe(9, at(t0, 1)));
        assert_eq!(g.pending_ranges(), vec![(2, 4), (6, 8)]);
        assert_eq!(g.low_water(), 1);
        // Split pieces keep the original notice time.
        assert_eq!(g.expire(at(t0, 10), Duration::from_secs(10)), 6);
        assert_eq!((g.low_water(), g.pending_count(), g.given_up()), (10, 0, 6));
    }

    #[test]
    fn rollback_gap_is_given_up_after_settle_and_late_row_is_not_counted() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(0);
        assert!(g.observe(1, t0));
        assert!(g.observe(3, t0)); // 2 rolled back
        assert!(g.observe(4, at(t0, 30)));
        assert_eq!(
            g.oldest_pending_age(at(t0, 30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(g.expire(at(t0, 59), Duration::from_secs(60)), 0);
        assert_eq!(g.expire(at(t0, 60), Duration::from_secs(60)), 1);
        assert_eq!((g.low_water(), g.given_up()), (4, 1));
        assert_eq!(g.oldest_pending_age(at(t0, 61)), None);
        // A commit after the settle time is below the low water mark: lost, by design.
        assert!(!g.observe(2, at(t0, 61)));
    }

    #[test]
    fn low_water_stops_at_the_oldest_pending_gap() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(0);
        g.observe(2, t0); // gap 1
        g.observe(5, at(t0, 20)); // gap 3..4
        assert_eq!(g.low_water(), 0);
        assert_eq!(g.expire(at(t0, 30), Duration::from_secs(30)), 1);
        assert_eq!(g.low_water(), 2);
        assert!(g.observe(4, at(t0, 31)));
        assert_eq!(g.pending_ranges(), vec![(3, 3)]);
        assert_eq!(g.expire(at(t0, 50), Duration::from_secs(30)), 1);
        assert_eq!((g.low_water(), g.max_seen()), (5, 5));
    }

    #[test]
    fn pending_gaps_are_capped() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(0);
        // A sequence stepping by 2 leaves a gap after every row.
        for i in 0..(MAX_PENDING_GAPS as i64 + 10) {
            g.observe(2 * (i + 1), at(t0, i as u64));
        }
        assert_eq!(g.pending_count(), MAX_PENDING_GAPS);
        assert_eq!(g.given_up(), 10);
        assert_eq!(g.low_water(), 20);
    }
}
