//! Monitor health as alerts, never a silent zero: the database unreachable for a
//! while, and no new events for a while when the same time on previous days had
//! traffic (Grafana's Error and NoData states). Pure functions.

use chrono::{DateTime, Duration, Utc};

use super::{Labels, Observation};
use crate::detect::Severity;
use crate::detect::stats::quantile;
use crate::model::Dim;
use crate::store::Store;

pub const DATABASE_UNREACHABLE: &str = "database_unreachable";
pub const NO_EVENTS: &str = "no_events";

#[derive(Debug, Clone, PartialEq)]
pub struct HealthParams {
    pub database_unreachable_for: Duration,
    pub no_events_for: Duration,
    /// Requests the same span on previous days must have had (median) for silence
    /// to be an alert.
    pub no_events_min_expected: f64,
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams {
            database_unreachable_for: Duration::minutes(5),
            no_events_for: Duration::minutes(15),
            no_events_min_expected: 10.0,
        }
    }
}

fn health(rule: &str, endpoint: &str, summary: String, hint: &str) -> Observation {
    let mut labels = Labels::new();
    labels.insert("database".into(), endpoint.to_string());
    Observation {
        rule: rule.into(),
        labels,
        severity: Severity::Critical,
        summary,
        window: String::new(),
        observed: None,
        expected: None,
        ratio: None,
        baseline: String::new(),
        contributors: Vec::new(),
        hint: hint.into(),
        since: None,
    }
}

/// Firing when the database has failed every attempt since `failing_since` for at
/// least the threshold.
pub fn database_unreachable(
    failing_since: Option<DateTime<Utc>>,
    last_error: &str,
    endpoint: &str,
    now: DateTime<Utc>,
    p: &HealthParams,
) -> Option<Observation> {
    let since = failing_since?;
    let down = now - since;
    if down < p.database_unreachable_for {
        return None;
    }
    let mut o = health(
        DATABASE_UNREACHABLE,
        endpoint,
        format!(
            "PostgreSQL at {endpoint} unreachable for {} min: {last_error}",
            down.num_minutes()
        ),
        "Check that the server is up and reachable from this host; burnrate keeps retrying.",
    );
    o.since = Some(since);
    Some(o)
}

/// Firing when no event arrived for `no_events_for` although the same span of
/// time on the previous 7 days (at least 3 of them in the store) had a median of
/// at least `no_events_min_expected` requests.
pub fn no_events(
    store: &Store,
    endpoint: &str,
    now: DateTime<Utc>,
    p: &HealthParams,
) -> Option<Observation> {
    let last = store.newest_event()?;
    let quiet = now - last;
    if quiet < p.no_events_for {
        return None;
    }
    // The oldest hour is usually covered only from the backfill's start on: a span
    // in it would read low, so samples start with the first whole hour.
    let oldest = store.calendar().hour_start(store.oldest_hour()? + 1);
    let (start, end) = (now - p.no_events_for, now);
    let samples: Vec<f64> = (1..=7)
        .map(|k| Duration::days(k))
        .filter(|d| start - *d >= oldest)
        .map(|d| store.prorated(Dim::Feature, None, start - d, end - d).1)
        .collect();
    if samples.len() < 3 {
        return None;
    }
    let expected = quantile(&samples, 0.5)?;
    if expected < p.no_events_min_expected {
        return None;
    }
    let mut o = health(
        NO_EVENTS,
        endpoint,
        format!(
            "no new cost events for {} min; about {expected:.0} requests are usual at this time",
            quiet.num_minutes()
        ),
        "Check the services that write cost_events (a deploy, a broken logger, a full disk) \
         and that burnrate watches the right table.",
    );
    o.since = Some(last);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agg, Fact, FactBatch};
    use crate::money::Money;
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// 40 requests an hour for `days` days, up to `until`.
    fn traffic(now: DateTime<Utc>, days: i64, until: DateTime<Utc>) -> Store {
        traffic_from(now, now - Duration::days(days), until)
    }

    /// One request every 90 s from `first` to `until`.
    fn traffic_from(now: DateTime<Utc>, first: DateTime<Utc>, until: DateTime<Utc>) -> Store {
        let mut s = Store::new(StoreConfig::default(), now);
        let mut facts = Vec::new();
        let mut t = first;
        while t < until {
            facts.push(Fact {
                at: t,
                names: [
                    "chat".into(),
                    "u".into(),
                    "gpt-4o".into(),
                    "acme".into(),
                    "eu".into(),
                ],
                agg: Agg::one(Money::from_dollars(1), 10, 10),
            });
            t += Duration::seconds(90);
        }
        s.apply(&FactBatch::of_rows(facts), now);
        s
    }

    #[test]
    fn silence_is_an_alert_only_when_traffic_was_expected() {
        let now = utc("2026-11-28T15:00:00Z");
        let p = HealthParams::default();
        // Quiet for 30 minutes after 8 days of steady traffic: an alert.
        let s = traffic(now, 8, now - Duration::minutes(30));
        let o = no_events(&s, "db:5432/x", now, &p).expect("no events while expected");
        assert_eq!(o.rule, NO_EVENTS);
        assert_eq!(o.severity, Severity::Critical);
        assert!(
            o.summary.starts_with("no new cost events for 3")
                && o.summary.contains("about 10 requests are usual"),
            "{}",
            o.summary
        );
        assert_eq!(o.labels["database"], "db:5432/x");
        // Quiet for 10 minutes only: not yet.
        let s = traffic(now, 8, now - Duration::minutes(10));
        assert_eq!(no_events(&s, "d", now, &p), None);
        // Only 2 days of history: no baseline, no alert.
        let s = traffic(now, 2, now - Duration::minutes(30));
        assert_eq!(no_events(&s, "d", now, &p), None);
        // Usually quiet at this time (fewer than the minimum): no alert.
        let s = traffic(now, 8, now - Duration::minutes(30));
        let strict = HealthParams {
            no_events_min_expected: 1000.0,
            ..p.clone()
        };
        assert_eq!(no_events(&s, "d", now, &strict), None);
        // An empty store is not an outage.
        let empty = Store::new(StoreConfig::default(), now);
        assert_eq!(no_events(&empty, "d", now, &p), None);
    }

    #[test]
    fn the_partly_covered_first_hour_is_not_a_sample() {
        let now = utc("2026-11-28T15:00:00Z");
        let p = HealthParams::default();
        let quiet_since = now - Duration::minutes(30);
        // History from 14:40 three days ago: that day's 14:45-15:00 lies in an hour
        // the store holds only from 14:40 on, so two days are samples, too few.
        let first = now - Duration::days(3) - Duration::minutes(20);
        let s = traffic_from(now, first, quiet_since);
        assert_eq!(no_events(&s, "d", now, &p), None);
        // From 13:59 on, the hour 14:00-15:00 is whole: three samples, an alert.
        let first = now - Duration::days(3) - Duration::minutes(61);
        let s = traffic_from(now, first, quiet_since);
        let o = no_events(&s, "d", now, &p).expect("three whole samples");
        assert!(
            o.summary.contains("about 10 requests are usual"),
            "{}",
            o.summary
        );
    }

    #[test]
    fn the_database_must_be_down_for_the_whole_threshold() {
        let now = utc("2026-11-28T15:00:00Z");
        let p = HealthParams::default();
        assert_eq!(database_unreachable(None, "x", "d", now, &p), None);
        let recent = Some(now - Duration::minutes(4));
        assert_eq!(database_unreachable(recent, "x", "d", now, &p), None);
        let long = Some(now - Duration::minutes(7));
        let o = database_unreachable(long, "connection refused", "db:5432/x", now, &p).unwrap();
        assert_eq!(o.rule, DATABASE_UNREACHABLE);
        assert!(
            o.summary
                .contains("db:5432/x unreachable for 7 min: connection refused"),
            "{}",
            o.summary
        );
        assert_eq!(o.since, long);
    }
}
