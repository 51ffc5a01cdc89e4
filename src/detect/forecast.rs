//! Month-end forecast of the core dashboard: month-to-date plus the expected spend
//! of the remaining days, with the real number of days in the month.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::money::Money;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthForecast {
    /// "2026-11"
    pub month: String,
    #[serde(rename = "spend_usd")]
    pub month_to_date: Money,
    pub days_in_month: u32,
    /// Days since the month started, today counted as a fraction.
    pub days_elapsed: f64,
    /// Month-to-date per elapsed day.
    #[serde(rename = "daily_burn_usd")]
    pub daily_burn: Money,
    #[serde(rename = "forecast_usd")]
    pub forecast: Money,
    #[serde(rename = "budget_usd")]
    pub budget: Option<Money>,
    /// How the remaining days were estimated: "trailing 7-day average" or "run rate".
    pub method: String,
}

/// The remaining days are priced at the trailing 7-day daily average when a week of
/// history exists (the month's first days say little), else at the run rate.
pub fn month_forecast(store: &Store, now: DateTime<Utc>, budget: Option<Money>) -> MonthForecast {
    let cal = store.calendar();
    let month_start = cal.month_start(now);
    let mtd = store.total(store.hours_from(month_start)).cost;
    let days_in_month = cal.days_in_month(now);
    let days_elapsed = cal.days_elapsed(now).max(1.0 / 1440.0);
    let remaining_days = (days_in_month as f64 - days_elapsed).max(0.0);
    let daily_burn = Money::from_f64_lossy(mtd.as_f64() / days_elapsed);

    let week_ago = now - Duration::days(7);
    let have_week = store
        .oldest_hour()
        .is_some_and(|h| cal.hour_start(h) <= week_ago);
    let (rate, method) = if have_week {
        let week = store.total(store.hours_from(week_ago)).cost;
        // Whole-hour buckets: the window is 7 days plus the current partial hour.
        let span_days =
            (now - cal.hour_start(cal.hour_index(week_ago))).num_seconds() as f64 / 86_400.0;
        (
            Money::from_f64_lossy(week.as_f64() / span_days),
            "trailing 7-day average",
        )
    } else {
        (daily_burn, "run rate")
    };
    let forecast = mtd + Money::from_f64_lossy(rate.as_f64() * remaining_days);
    MonthForecast {
        month: cal.month_label(now),
        month_to_date: mtd,
        days_in_month,
        days_elapsed,
        daily_burn,
        forecast,
        budget,
        method: method.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agg, Fact, FactBatch};
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hourly(store: &mut Store, now: DateTime<Utc>, from: DateTime<Utc>, dollars_per_hour: i64) {
        let cal = *store.calendar();
        let facts: Vec<Fact> = (cal.hour_index(from)..cal.hour_index(now))
            .map(|h| Fact {
                at: cal.hour_start(h),
                names: ["f".into(), "u".into(), "m".into(), "t".into(), "r".into()],
                agg: Agg {
                    cost: Money::from_dollars(dollars_per_hour),
                    requests: 1,
                    input_tokens: 0,
                    output_tokens: 0,
                },
            })
            .collect();
        store.apply(
            &FactBatch {
                rows: facts.len() as u64,
                facts,
                rejected: Default::default(),
            },
            now,
        );
    }

    #[test]
    fn uses_the_real_days_of_the_month() {
        // February 2026 has 28 days: at midnight of the 15th, 14 days at $24/day.
        let now = utc("2026-02-15T00:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        hourly(&mut s, now, utc("2026-02-01T00:00:00Z"), 1);
        let f = month_forecast(&s, now, Some(Money::from_dollars(500)));
        assert_eq!(f.month, "2026-02");
        assert_eq!(f.days_in_month, 28);
        assert_eq!(f.month_to_date, Money::from_dollars(336));
        assert_eq!(f.daily_burn, Money::from_dollars(24));
        assert_eq!(
            f.forecast,
            Money::from_dollars(672),
            "not x30: {}",
            f.forecast
        );
        assert_eq!(f.method, "trailing 7-day average");
    }

    #[test]
    fn early_in_history_it_says_run_rate() {
        let now = utc("2026-11-03T00:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        hourly(&mut s, now, utc("2026-11-01T00:00:00Z"), 1);
        let f = month_forecast(&s, now, None);
        assert_eq!(f.method, "run rate");
        assert_eq!(f.forecast, Money::from_dollars(720));
    }
}
