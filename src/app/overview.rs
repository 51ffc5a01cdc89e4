//! Builds the overview's view model from the store, once per data change.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::progress::{Coverage, Pending};
use super::view::{Driver, FeatureRow, Header, Overview};
use crate::detect::{self, DetectParams, DetectorState};
use crate::model::{Agg, Dim};
use crate::money::Money;
use crate::store::Store;

/// Top drivers ranked: the screen shows five, or as many as a tall terminal has
/// rows for.
const DRIVERS: usize = 40;

/// The overview at `now`. While the history loads (`coverage`), figures that reach
/// before it are marked in `Overview::pending` (and the partial ones the UI could
/// mistake for final are left out), and detection waits: `detector` is untouched.
pub fn build_overview(
    store: &Store,
    now: DateTime<Utc>,
    budget: Option<Money>,
    params: &DetectParams,
    detector: &mut DetectorState,
    coverage: Coverage,
) -> Overview {
    let cal = store.calendar();
    let pending = Pending::at(store, now, coverage);
    let mut month = detect::month_forecast(store, now, budget);
    if pending.is_some_and(|p| p.forecast) {
        month.budget_exhausted_on = None;
        month.forecast_low = None;
        month.forecast_high = None;
    }
    // The budget the App was given wins over the one in the params (same source).
    let with_budget;
    let params = if params.limits.monthly.is_none() && budget.is_some() {
        let mut p = params.clone();
        p.limits.monthly = budget;
        with_budget = p;
        &with_budget
    } else {
        params
    };
    let header = Header {
        month: month.month.clone(),
        month_to_date: month.month_to_date,
        daily_burn: month.daily_burn,
        forecast: month.forecast,
        forecast_low: month.forecast_low,
        forecast_high: month.forecast_high,
        budget_exhausted_on: month.budget_exhausted_on,
        forecast_method: month.method.clone(),
        budget,
        days_elapsed: month.days_elapsed,
        days_in_month: month.days_in_month,
        time_zone: cal.tz().name().to_string(),
        loading: false,
    };

    let anomalies = if pending.is_some_and(|p| p.detection) {
        Vec::new()
    } else {
        detect::evaluate(store, now, params, detector)
    };
    let cur = cal.hour_index(now);
    let week_from = now - Duration::days(7);
    let this_hour = store.by_dim(Dim::Feature, cur..=i64::MAX);
    let today = store.by_dim(Dim::Feature, store.hours_from(cal.day_start(now)));
    let week = store.by_dim(Dim::Feature, store.hours_from(week_from));
    let sparks = store.hourly_series_by_dim(Dim::Feature, cur - 23, cur);
    let change: HashMap<_, _> = detect::today_vs_previous_days(store, Dim::Feature, now)
        .into_iter()
        .map(|(id, t, e)| {
            (
                id,
                e.filter(|e| e.picos() > 0)
                    .map(|e| t.as_f64() / e.as_f64() - 1.0),
            )
        })
        .collect();

    let mut features: Vec<FeatureRow> = week
        .iter()
        .map(|(id, w)| {
            let name = store.name(Dim::Feature, *id).to_string();
            let t = today.get(id).copied().unwrap_or_default();
            let h = this_hour.get(id).copied().unwrap_or_default();
            FeatureRow {
                anomalous: anomalies
                    .iter()
                    .any(|a| a.dim == Dim::Feature && a.name == name),
                name,
                this_hour: h.cost,
                today: t.cost,
                last_7d: w.cost,
                requests_today: t.requests,
                cost_per_request: w.cost_per_request(),
                cost_per_1k_tokens: w.cost_per_1k_tokens(),
                change_vs_7d: change.get(id).copied().flatten(),
                spark_24h: sparks
                    .get(id)
                    .map(|s| {
                        s.iter()
                            .map(|a| a.cost.round_micros().max(0) as u64)
                            .collect()
                    })
                    .unwrap_or_else(|| vec![0; 24]),
                computed_hour: h.computed,
                computed_today: t.computed,
                computed_7d: w.computed,
            }
        })
        .collect();
    features.sort_by(|a, b| {
        b.today
            .cmp(&a.today)
            .then_with(|| b.last_7d.cmp(&a.last_7d))
            .then_with(|| a.name.cmp(&b.name))
    });

    let week_total = store.total(store.hours_from(week_from)).cost;
    let mut users: Vec<(u32, Agg)> = store
        .by_dim(Dim::User, store.hours_from(week_from))
        .into_iter()
        .collect();
    users.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(&b.0)));
    let top_drivers = users
        .into_iter()
        .take(DRIVERS)
        .map(|(id, a)| Driver {
            dim: Dim::User,
            name: store.name(Dim::User, id).to_string(),
            cost: a.cost,
            share: if week_total.picos() > 0 {
                a.cost.as_f64() / week_total.as_f64()
            } else {
                0.0
            },
            computed_requests: a.computed,
        })
        .collect();

    let mut cost_per_request_30d = daily_cost_per_request(store, now, 30);
    if let Some(p) = &pending {
        // Only the days wholly in: a day half read is not its cost per request.
        let partial = cost_per_request_30d.len().saturating_sub(p.trend_days);
        cost_per_request_30d[..partial].fill(None);
    }
    Overview {
        now,
        header,
        features,
        top_drivers,
        cost_per_request_30d,
        anomalies,
        week_total,
        pending,
    }
}

/// Cost per request for each of the last `days` local days, oldest first.
fn daily_cost_per_request(store: &Store, now: DateTime<Utc>, days: i64) -> Vec<Option<Money>> {
    let cal = store.calendar();
    let today = cal.local_date(now);
    (0..days)
        .rev()
        .map(|i| {
            let d = today - Duration::days(i);
            let from = cal.hour_index(cal.date_start(d));
            let to = cal.hour_index(cal.date_start(d + Duration::days(1))) - 1;
            store.total(from..=to).cost_per_request()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fact, FactBatch};
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rows_sparklines_and_drivers() {
        let now = utc("2026-11-28T12:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        let mk = |at: DateTime<Utc>, f: &str, u: &str, c: i64| Fact {
            at,
            names: [f.into(), u.into(), "m".into(), "t".into(), "r".into()],
            agg: Agg {
                cost: Money::from_dollars(c),
                requests: 2,
                input_tokens: 1500,
                output_tokens: 500,
                computed: 0,
            },
        };
        let facts = vec![
            mk(now, "chat", "alice", 4),
            mk(now - Duration::hours(3), "chat", "bob", 2),
            mk(now - Duration::days(3), "search", "alice", 10),
        ];
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                rows: 3,
                facts,
                rejected: Default::default(),
            },
            now,
        );
        let params = DetectParams {
            today_ratio: 1.5,
            spike_ratio: 3.0,
            min_excess: Money::from_dollars(1000),
            contributors: 3,
            ..DetectParams::default()
        };
        let o = build_overview(
            &s,
            now,
            Some(Money::from_dollars(100)),
            &params,
            &mut DetectorState::default(),
            Coverage::Complete,
        );
        assert_eq!(o.features[0].name, "chat", "today's spend first");
        assert_eq!(o.features[0].today, Money::from_dollars(6));
        assert_eq!(o.features[0].this_hour, Money::from_dollars(4));
        assert_eq!(
            o.features[0].cost_per_request,
            Some(Money::from_dollars(6).div_count(4).unwrap())
        );
        assert_eq!(
            o.features[0].cost_per_1k_tokens,
            Some("1.5".parse().unwrap()),
            "$6 over 4,000 tokens"
        );
        assert_eq!(o.features[0].spark_24h.len(), 24);
        assert_eq!(o.features[0].spark_24h[23], 4_000_000);
        assert_eq!(o.features[0].spark_24h[20], 2_000_000);
        assert_eq!(o.features[1].name, "search");
        assert_eq!(o.top_drivers[0].name, "alice");
        assert_eq!(o.top_drivers[0].cost, Money::from_dollars(14));
        assert_eq!(o.week_total, Money::from_dollars(16));
        assert_eq!(o.cost_per_request_30d.len(), 30);
        assert_eq!(o.cost_per_request_30d[29], Some("1.5".parse().unwrap()));
        assert_eq!(o.header.month_to_date, Money::from_dollars(16));
        assert_eq!(o.header.days_in_month, 30);
    }
}
