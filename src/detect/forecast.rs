//! Month-end forecast: month-to-date plus the expected spend of the rest of the
//! month, with weekday rhythm, the real number of days in the month, an 80%
//! interval and the day the budget runs out.
//!
//! y_d = L x w(weekday of d): w is the median of that weekday over the last weeks
//! divided by the overall median, L the median over the last 14 days of daily / w.
//! The rest of today is y_today times the share of an average day still to come.
//! The interval is a moving-block bootstrap (7-day blocks, 1000 draws, fixed seed)
//! of the ratios actual / predicted of the last 28 days, each draw also resampling
//! the 14 days the level is the median of. With under 7 days of
//! history the remaining days are priced at the plain run rate, and say so.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::stats::{SplitMix, median, quantile};
use crate::model::Dim;
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
    /// The 80% interval (p10-p90) of the forecast; null for the run rate.
    #[serde(rename = "forecast_low_usd")]
    pub forecast_low: Option<Money>,
    #[serde(rename = "forecast_high_usd")]
    pub forecast_high: Option<Money>,
    #[serde(rename = "budget_usd")]
    pub budget: Option<Money>,
    /// The local date the month's spend reaches the budget on the forecast curve
    /// (or reached it), null when it does not this month or without a budget.
    pub budget_exhausted_on: Option<NaiveDate>,
    /// How the remaining days were estimated: "weekday rhythm" or
    /// "run rate (under 7 days of history)".
    pub method: String,
}

/// Bootstrap draws of the interval.
const DRAWS: usize = 1000;
/// Fixed seed: the same store gives the same interval everywhere.
const SEED: u64 = 0x6275_726e_7261_7465;

/// The month-end forecast at `now`.
pub fn month_forecast(store: &Store, now: DateTime<Utc>, budget: Option<Money>) -> MonthForecast {
    let cal = store.calendar();
    let month_start = cal.month_start(now);
    let mtd = store.total(store.hours_from(month_start)).cost;
    let days_in_month = cal.days_in_month(now);
    let days_elapsed = cal.days_elapsed(now).max(1.0 / 1440.0);
    let remaining_days = (days_in_month as f64 - days_elapsed).max(0.0);
    let daily_burn = Money::from_f64_lossy(finite(mtd.as_f64() / days_elapsed));
    let today = cal.local_date(now);
    let day_start = cal.date_start(today);
    let last_day = cal.local_date(cal.next_month_start(now) - Duration::seconds(1));

    // Full local days of history before today, oldest first (at most 8 weeks).
    let have = store
        .oldest_hour()
        .map(|h| (day_start - cal.hour_start(h)).num_hours() / 24)
        .unwrap_or(0)
        .clamp(0, 56);
    let mut out = MonthForecast {
        month: cal.month_label(now),
        month_to_date: mtd,
        days_in_month,
        days_elapsed,
        daily_burn,
        forecast: mtd,
        forecast_low: None,
        forecast_high: None,
        budget,
        budget_exhausted_on: None,
        method: String::new(),
    };
    if have < 7 {
        out.method = "run rate (under 7 days of history)".into();
        out.forecast = mtd + Money::from_f64_lossy(finite(daily_burn.as_f64() * remaining_days));
        let today_frac = (now - day_start).num_seconds() as f64 / 86_400.0;
        let per_day = daily_burn.as_f64();
        out.budget_exhausted_on = budget.and_then(|b| {
            exhausted_on(
                mtd,
                b,
                today,
                last_day,
                (1.0 - today_frac) * per_day,
                |_| per_day,
            )
        });
        return out;
    }

    let daily: Vec<(NaiveDate, f64)> = (1..=have)
        .rev()
        .map(|k| {
            let d = today - Duration::days(k);
            let (s, e) = (cal.date_start(d), cal.date_start(d + Duration::days(1)));
            (d, store.prorated(Dim::Feature, None, s, e).0.as_f64())
        })
        .collect();
    let w = super::stats::weekday_factors(&daily);
    let wd = |d: NaiveDate| w[d.weekday().num_days_from_monday() as usize];
    let recent: Vec<f64> = daily
        .iter()
        .rev()
        .take(14)
        .map(|(d, c)| c / wd(*d))
        .collect();
    let level = median(&recent).unwrap_or(0.0).max(0.0);

    // Share of an average day still to come at this time of day (last 7 days).
    let elapsed = now - day_start;
    let (mut after, mut whole) = (0.0, 0.0);
    for (d, c) in daily.iter().rev().take(7) {
        let s = cal.date_start(*d);
        let e = cal.date_start(*d + Duration::days(1));
        after += store
            .prorated(Dim::Feature, None, (s + elapsed).min(e), e)
            .0
            .as_f64();
        whole += c;
    }
    let to_come = if whole > 0.0 {
        (after / whole).clamp(0.0, 1.0)
    } else {
        (1.0 - elapsed.num_seconds() as f64 / 86_400.0).clamp(0.0, 1.0)
    };

    let y = |d: NaiveDate| level * wd(d);
    let rest_today = y(today) * to_come;
    let future: Vec<f64> = day_iter(today + Duration::days(1), last_day)
        .map(y)
        .collect();
    let expected_rest = rest_today + future.iter().sum::<f64>();
    out.forecast = mtd + Money::from_f64_lossy(finite(expected_rest));
    out.method = "weekday rhythm".into();

    // 80% interval: moving 7-day blocks of actual / predicted over the last 28 days.
    let ratios: Vec<f64> = daily
        .iter()
        .rev()
        .take(28)
        .rev()
        .filter_map(|(d, c)| {
            let p = y(*d);
            (p > 0.0).then(|| c / p).filter(|r| r.is_finite())
        })
        .collect();
    if ratios.len() >= 7 {
        let mut rng = SplitMix::new(SEED);
        let mut totals = Vec::with_capacity(DRAWS);
        let days: Vec<f64> = std::iter::once(rest_today).chain(future).collect();
        let mut resampled = vec![0.0; recent.len()];
        for _ in 0..DRAWS {
            // The level itself is uncertain too: resample the days it is the
            // median of, so the interval does not understate a level error.
            for x in resampled.iter_mut() {
                *x = recent[rng.below(recent.len())];
            }
            let level_draw = median(&resampled).unwrap_or(level);
            let level_factor = if level > 0.0 { level_draw / level } else { 1.0 };
            let mut sum = 0.0;
            let mut i = 0;
            while i < days.len() {
                let start = rng.below(ratios.len() - 6);
                for r in &ratios[start..start + 7] {
                    if i == days.len() {
                        break;
                    }
                    sum += days[i] * r;
                    i += 1;
                }
            }
            totals.push(sum * level_factor);
        }
        let lo = quantile(&totals, 0.1).unwrap_or(expected_rest);
        let hi = quantile(&totals, 0.9).unwrap_or(expected_rest);
        out.forecast_low = Some(mtd + Money::from_f64_lossy(finite(lo.min(expected_rest))));
        out.forecast_high = Some(mtd + Money::from_f64_lossy(finite(hi.max(expected_rest))));
    }
    out.budget_exhausted_on =
        budget.and_then(|b| exhausted_on(mtd, b, today, last_day, rest_today, y));
    out
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn day_iter(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    std::iter::successors(Some(from), |d| d.succ_opt()).take_while(move |d| *d <= to)
}

/// The day the cumulative spend reaches `budget`: today if it already has, else on
/// the expected curve (the rest of today, then `y` per day), or `None` this month.
fn exhausted_on(
    mtd: Money,
    budget: Money,
    today: NaiveDate,
    last_day: NaiveDate,
    rest_today: f64,
    y: impl Fn(NaiveDate) -> f64,
) -> Option<NaiveDate> {
    if budget.picos() <= 0 || mtd >= budget {
        return Some(today).filter(|_| budget.picos() > 0 || mtd >= budget);
    }
    let mut cum = mtd.as_f64() + finite(rest_today);
    let b = budget.as_f64();
    if cum >= b {
        return Some(today);
    }
    for d in day_iter(today + Duration::days(1), last_day) {
        cum += finite(y(d));
        if cum >= b {
            return Some(d);
        }
    }
    None
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
                    computed: 0,
                },
            })
            .collect();
        store.apply(&FactBatch::of_rows(facts), now);
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
        assert_eq!(f.method, "weekday rhythm");
        assert_eq!(f.forecast_low, Some(Money::from_dollars(672)));
        assert_eq!(f.forecast_high, Some(Money::from_dollars(672)));
        // $336 spent, $24 a day: $504 by the end of the 21st.
        assert_eq!(
            f.budget_exhausted_on,
            Some(NaiveDate::from_ymd_opt(2026, 2, 21).unwrap())
        );
    }

    #[test]
    fn early_in_history_it_says_run_rate() {
        let now = utc("2026-11-03T00:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        hourly(&mut s, now, utc("2026-11-01T00:00:00Z"), 1);
        let f = month_forecast(&s, now, None);
        assert_eq!(f.method, "run rate (under 7 days of history)");
        assert_eq!(f.forecast_low, None);
        assert_eq!(f.forecast, Money::from_dollars(720));
    }
}
