//! Keyset-overlap mode (tables with neither a tx nor an id column, such as
//! LiteLLM's spend log): each poll re-reads every row whose timestamp is within the
//! overlap window behind the newest row seen, in (timestamp, key) order, and counts
//! only keys not seen before.
//!
//! A row that commits with a timestamp further behind than the overlap is missed:
//! the honest limit of this mode (LiteLLM writes its spend logs in batches up to a
//! minute late, so its preset re-reads two minutes).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone)]
pub struct KeysetTracker {
    overlap: Duration,
    /// The newest timestamp read (None before any row).
    newest: Option<DateTime<Utc>>,
    /// Rows older than this are final; never moves back.
    cutoff: Option<DateTime<Utc>>,
    /// Keys read with their timestamps, at or after the cutoff.
    seen: HashMap<String, DateTime<Utc>>,
}

impl KeysetTracker {
    pub fn new(overlap: std::time::Duration) -> KeysetTracker {
        KeysetTracker {
            overlap: Duration::from_std(overlap).unwrap_or(Duration::minutes(2)),
            newest: None,
            cutoff: None,
            seen: HashMap::new(),
        }
    }

    /// Where the next poll starts reading: the overlap behind the newest row (or
    /// behind `now` if rows are dated in the future), never earlier than before.
    /// None before any row: read everything.
    pub fn start(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let newest = self.newest?;
        let candidate = newest.min(now) - self.overlap;
        let cutoff = match self.cutoff {
            Some(c) if c > candidate => c,
            _ => candidate,
        };
        self.cutoff = Some(cutoff);
        self.seen.retain(|_, at| *at >= cutoff);
        Some(cutoff)
    }

    /// Records a row; true if its key is new (count it), false if already read.
    pub fn observe(&mut self, key: &str, at: DateTime<Utc>) -> bool {
        if self.cutoff.is_some_and(|c| at < c) {
            // Below the window: final already (cannot come from a poll's query).
            return false;
        }
        if self.newest.is_none_or(|n| at > n) {
            self.newest = Some(at);
        }
        self.seen.insert(key.to_string(), at).is_none()
    }

    /// Sets the newest timestamp if no row was read yet, so the first poll reads
    /// the overlap behind it rather than the whole table.
    pub fn assume_newest(&mut self, at: DateTime<Utc>) {
        self.newest.get_or_insert(at);
    }

    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// Keys remembered (the rows inside the window).
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    pub fn overlap(&self) -> std::time::Duration {
        self.overlap.to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn rows_in_the_window_are_counted_once() {
        let mut k = KeysetTracker::new(std::time::Duration::from_secs(120));
        assert_eq!(k.start(t(0)), None, "nothing read yet: read all");
        assert!(k.observe("a", t(10)));
        assert!(k.observe("b", t(20)));
        assert_eq!(k.start(t(30)), Some(t(20 - 120)));
        assert!(!k.observe("a", t(10)), "re-read in the overlap");
        assert!(!k.observe("b", t(20)));
        // A late row (written a minute late) lands inside the window: counted.
        assert!(k.observe("late", t(-30)));
        assert!(k.observe("c", t(300)));
        assert_eq!(k.start(t(400)), Some(t(180)));
        assert_eq!(k.remembered(), 1, "keys behind the cutoff are forgotten");
        // Behind the window: final, never counted again.
        assert!(!k.observe("a", t(10)));
    }

    #[test]
    fn an_assumed_newest_starts_the_window_but_never_replaces_a_read_one() {
        let mut k = KeysetTracker::new(std::time::Duration::from_secs(60));
        k.assume_newest(t(100));
        assert_eq!(k.start(t(200)), Some(t(40)));
        let mut read = KeysetTracker::new(std::time::Duration::from_secs(60));
        read.observe("a", t(100));
        read.assume_newest(t(500));
        assert_eq!(read.newest(), Some(t(100)));
    }

    #[test]
    fn the_cutoff_never_moves_back_and_future_rows_do_not_jump_it() {
        let mut k = KeysetTracker::new(std::time::Duration::from_secs(60));
        k.observe("future", t(10_000));
        assert_eq!(k.start(t(100)), Some(t(40)), "capped by now");
        assert_eq!(k.start(t(50)), Some(t(40)), "never earlier");
        assert_eq!(k.newest(), Some(t(10_000)));
    }
}
