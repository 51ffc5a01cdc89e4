//! The dashboard while the history loads. The backfill reads newest first, so after
//! its first step the store holds every row from some instant on (`Coverage`): a
//! figure whose window starts there or later is final and is shown; one that
//! reaches further back waits, and its pane says for what (`Pending`). Anomaly
//! detection (and so alerting) waits for the whole history: its baselines reach
//! back four weeks and choose their form by how much history there is.

use chrono::{DateTime, Duration, Utc};

use super::view::BackfillProgress;
use crate::store::Store;

/// How much of the history the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// All of it: the backfill is done.
    Complete,
    /// Every row from this instant on (the older ones are still being read).
    From(DateTime<Utc>),
    /// Nothing yet.
    Nothing,
}

impl Coverage {
    /// What a backfill's progress says (None: no backfill runs, or it is done).
    pub fn of(progress: Option<&BackfillProgress>) -> Coverage {
        match progress {
            None => Coverage::Complete,
            Some(p) => p.loaded_from.map_or(Coverage::Nothing, Coverage::From),
        }
    }

    /// Whether every row from `t` on is in the store.
    pub fn covers(self, t: DateTime<Utc>) -> bool {
        match self {
            Coverage::Complete => true,
            Coverage::From(from) => from <= t,
            Coverage::Nothing => false,
        }
    }

    /// Where the loaded history starts while it is partial.
    pub fn loaded_from(self) -> Option<DateTime<Utc>> {
        match self {
            Coverage::From(t) => Some(t),
            _ => None,
        }
    }
}

/// What the overview's figures still wait for while the history loads; the
/// overview has none once it is complete. A figure marked here is drawn as "…",
/// never as the partial number the store holds for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    /// Every row from here on is in.
    pub loaded_from: DateTime<Utc>,
    /// Where the history ends up starting (the store's retention).
    pub history_start: DateTime<Utc>,
    /// Where this month starts (in the billing zone).
    pub month_start: DateTime<Utc>,
    /// This hour's column.
    pub hour: bool,
    /// Today's spend and requests.
    pub today: bool,
    /// The 7-day columns ($/req and $/1k tokens are over 7 days too), the drivers.
    pub week: bool,
    /// Today against the previous 7 days at the same time of day.
    pub change: bool,
    /// Trailing hours of the 24-hour sparkline that are in (24: all).
    pub spark_hours: usize,
    /// Month-to-date, the burn and the "spent" gauge.
    pub month: bool,
    /// The forecast, its interval, the day the budget runs out, its gauge: they
    /// read every day of the history.
    pub forecast: bool,
    /// Trailing days of the 30-day trend that are in (30: all).
    pub trend_days: usize,
    /// Anomaly detection waits for the whole history.
    pub detection: bool,
}

impl Pending {
    /// What waits at `now` with `coverage`; None when the history is complete.
    pub fn at(store: &Store, now: DateTime<Utc>, coverage: Coverage) -> Option<Pending> {
        let loaded_from = match coverage {
            Coverage::Complete => return None,
            Coverage::From(t) => t,
            Coverage::Nothing => now,
        };
        let cal = store.calendar();
        let covers = |t| coverage.covers(t);
        let cur = cal.hour_index(now);
        let today = cal.local_date(now);
        let spark_hours = (0..24)
            .take_while(|back| covers(cal.hour_start(cur - back)))
            .count();
        let trend_days = (0..30)
            .take_while(|back| covers(cal.date_start(today - Duration::days(*back))))
            .count();
        Some(Pending {
            loaded_from,
            history_start: Store::history_start(store.config(), now),
            month_start: cal.month_start(now),
            hour: !covers(cal.hour_start(cur)),
            today: !covers(cal.day_start(now)),
            week: !covers(now - Duration::days(7)),
            change: !covers(cal.date_start(today - Duration::days(7))),
            spark_hours,
            month: !covers(cal.month_start(now)),
            forecast: true,
            trend_days,
            detection: true,
        })
    }

    /// Days of history in, and days it will hold, at `now`: "6 of 35 days".
    pub fn days(&self, now: DateTime<Utc>) -> (f64, f64) {
        days_between(self.loaded_from, self.history_start, now)
    }
}

/// (days in, days in all) of a history starting at `history_start` that is in
/// from `loaded_from` on.
pub fn days_between(
    loaded_from: DateTime<Utc>,
    history_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (f64, f64) {
    let days = |from: DateTime<Utc>| ((now - from).num_seconds().max(0) as f64) / 86_400.0;
    let all = days(history_start);
    (days(loaded_from).min(all), all)
}

/// "12 min of 35 days", "5 h of 35 days", "6 of 35 days": how much history is
/// in, never rounded up.
pub fn days_text(loaded: f64, all: f64) -> String {
    let all = all.round() as i64;
    if loaded < 1.0 / 24.0 {
        format!("{} min of {all} days", (loaded * 1440.0).floor() as i64)
    } else if loaded < 1.0 {
        format!("{} h of {all} days", (loaded * 24.0).floor() as i64)
    } else {
        format!("{} of {all} days", loaded.floor() as i64)
    }
}

/// The least time between two overview builds: while the history loads, a second
/// (each build reads the whole store, and the backfill needs the CPU more).
pub fn build_gap(coverage: Coverage, min_gap: chrono::Duration) -> chrono::Duration {
    match coverage {
        Coverage::Complete => min_gap,
        _ => min_gap.max(chrono::Duration::seconds(1)),
    }
}

impl super::state::App {
    /// How much of the history the store holds now.
    pub fn coverage(&self) -> Coverage {
        Coverage::of(self.backfill.as_ref())
    }
}
