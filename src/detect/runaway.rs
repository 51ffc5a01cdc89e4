//! Runaway requests: one user's request rate far above its own baseline.
//!
//! An agent stuck in a loop shows first as requests, not dollars: each call may be
//! cheap, but the calls come back to back. The spend rules need the excess to clear a
//! dollar floor per window; this one needs the *count* to be far above what that user
//! sends at this time of the week, with a small dollar floor only so that a loop of
//! free calls pages nobody.

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::rules::{
    Candidate, DetectParams, Onset, baseline_samples, minutes_between, onset, window_contributors,
    window_span,
};
use super::stats::quantile;
use super::{Anomaly, Severity};
use crate::model::Dim;
use crate::money::Money;
use crate::store::{NameId, Store};

/// The windows looked at, in minutes: short enough to show a loop within minutes,
/// long enough that one burst of a busy user is not a loop.
const WINDOWS: [i64; 2] = [5, 15];

/// Users whose requests in the trailing 5 or 15 minutes are at least
/// `runaway_request_ratio` times the higher of their baseline's p90 and one request,
/// at least `runaway_min_requests` above it (scaled to the window), and whose spend in
/// the window is above the baseline's by more than `min_excess`.
pub(super) fn runaway_requests(
    store: &Store,
    now: DateTime<Utc>,
    p: &DetectParams,
) -> Vec<Candidate> {
    let mut best: HashMap<NameId, (f64, Anomaly)> = HashMap::new();
    for w in WINDOWS {
        let (start, from_min, to_min) = window_span(now, w);
        if now <= start {
            continue;
        }
        // The bar on the count scales with the window; the 15-minute one is the
        // configured value.
        let min_requests = (p.runaway_min_requests * w as f64 / 15.0).max(3.0);
        for (id, agg) in store.minutes_by_dim(Dim::User, from_min, to_min) {
            let observed = agg.requests as f64;
            if observed < min_requests {
                continue;
            }
            let Some((costs, requests, label)) =
                baseline_samples(store, Dim::User, id, start, now, now)
            else {
                continue;
            };
            // The baseline's busy end, not its middle: users are bursty, and a user
            // who often sends 40 requests in these minutes is not looping at 60.
            let typical = quantile(&requests, 0.5).unwrap_or(0.0).max(0.0);
            let busy = quantile(&requests, 0.9).unwrap_or(0.0).max(1.0);
            let ratio = observed / busy;
            if ratio < p.runaway_request_ratio || observed - busy < min_requests {
                continue;
            }
            let expected_cost =
                Money::from_f64_lossy(quantile(&costs, 0.5).unwrap_or(0.0).max(0.0));
            let excess = agg.cost - expected_cost;
            if excess <= p.min_excess {
                continue;
            }
            let name = store.name(Dim::User, id).to_string();
            let contributors = window_contributors(
                store,
                &[(Dim::User, id)],
                start,
                now,
                agg.cost,
                p.contributors,
            );
            let top = |d: Dim| contributors.iter().find(|c| c.dim == d && c.share >= 0.2);
            // Against a typical count of nothing, a ratio says nothing: "new".
            let times = if typical < 0.5 {
                "new".to_string()
            } else if observed / typical >= 999.0 {
                ">999x".to_string()
            } else {
                format!("{:.0}x", observed / typical)
            };
            let mut message = format!(
                "user {name} sent {} requests in the last {w}m vs typical {:.0} (busiest {:.0}), {times}: a loop? {} spent",
                agg.requests,
                typical,
                busy,
                agg.cost.display_usd(),
            );
            if let Some(f) = top(Dim::Feature) {
                message.push_str(&format!(" on {}", f.name));
                if let Some(m) = top(Dim::Model) {
                    message.push_str(&format!(" via {}", m.name));
                }
            }
            let severity =
                if ratio >= 3.0 * p.runaway_request_ratio && excess >= p.min_excess.times(10) {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
            let anomaly = Anomaly {
                rule: "runaway_requests".into(),
                dim: Dim::User,
                name,
                window: format!("{w}m"),
                observed: agg.cost,
                expected: expected_cost,
                expected_low: Some(Money::from_f64_lossy(
                    quantile(&costs, 0.1).unwrap_or(0.0).max(0.0),
                )),
                expected_high: Some(Money::from_f64_lossy(
                    quantile(&costs, 0.9).unwrap_or(0.0).max(0.0),
                )),
                ratio: super::rules::ratio(agg.cost, expected_cost),
                z: None,
                severity,
                baseline: format!("its requests, {label}"),
                since: Some(onset(
                    store,
                    (Dim::User, id),
                    start,
                    now,
                    typical / minutes_between(start, now),
                    Onset::Requests,
                )),
                contributors,
                message,
            };
            let keep = best.get(&id).is_none_or(|(s, _)| ratio > *s);
            if keep {
                best.insert(id, (ratio, anomaly));
            }
        }
    }
    best.into_values()
        .map(|(_, anomaly)| Candidate { anomaly })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::detect;
    use crate::model::{Agg, Fact, FactBatch};
    use crate::store::StoreConfig;
    use chrono::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fact(at: DateTime<Utc>, user: &str, cost: Money, requests: u64) -> Fact {
        Fact {
            at,
            names: [
                "chat".into(),
                user.into(),
                "gpt-4o".into(),
                "acme".into(),
                "eu".into(),
            ],
            agg: Agg {
                cost,
                requests,
                input_tokens: 100 * requests,
                output_tokens: 10 * requests,
                computed: 0,
            },
        }
    }

    /// 14 days of chat at $60/h from a steady user (minute by minute for the last
    /// three hours), plus `user` sending `per_15m` requests at $0.01 every 15
    /// minutes.
    fn history(now: DateTime<Utc>, user: &str, per_15m: u64) -> Store {
        let mut store = Store::new(StoreConfig::default(), now);
        let mut facts = Vec::new();
        let start = now - Duration::days(14);
        let mut t = start;
        while t < now - Duration::minutes(20) {
            let minute_wise = now - t < Duration::hours(3);
            let step = if minute_wise {
                Duration::minutes(1)
            } else {
                Duration::minutes(15)
            };
            let per = if minute_wise { 1 } else { 15 };
            facts.push(fact(
                t,
                "steady_user",
                Money::from_dollars(1).times(per),
                20 * per,
            ));
            if (t - start).num_minutes() % 15 == 0 && per_15m > 0 {
                facts.push(fact(
                    t,
                    user,
                    Money::from_micros(10_000).times(per_15m),
                    per_15m,
                ));
            }
            t += step;
        }
        store.apply(&FactBatch::of_rows(facts), now);
        store
    }

    fn feed(store: &mut Store, now: DateTime<Utc>, facts: Vec<Fact>) {
        store.apply(&FactBatch::of_rows(facts), now);
    }

    #[test]
    fn a_cheap_loop_shows_by_its_request_rate_within_minutes() {
        let now = utc("2026-11-28T15:30:00Z");
        let mut store = history(now, "user_77", 1);
        // The last 20 minutes: steady chat as usual, and from 15:22 user_77 sends 30
        // requests a minute at $0.01 each: $0.30 a minute, far under the $5 floor of
        // the spend rules for a user, but 30x its busiest 15 minutes.
        let mut live = Vec::new();
        for m in (1..=20).rev() {
            let at = now - Duration::minutes(m);
            live.push(fact(at, "steady_user", Money::from_dollars(1), 20));
            if m <= 8 {
                live.push(fact(at, "user_77", Money::from_micros(300_000), 30));
            }
        }
        feed(&mut store, now, live);
        let p = DetectParams::default();
        let found = runaway_requests(&store, now, &p);
        assert_eq!(
            found.len(),
            1,
            "{:#?}",
            found.iter().map(|c| &c.anomaly).collect::<Vec<_>>()
        );
        let a = &found[0].anomaly;
        assert_eq!(
            (a.rule.as_str(), a.dim, a.name.as_str()),
            ("runaway_requests", Dim::User, "user_77")
        );
        assert!(a.message.starts_with("user user_77 sent "), "{}", a.message);
        assert!(
            a.message.contains("a loop?") && a.message.contains("on chat"),
            "{}",
            a.message
        );
        assert!(a.observed > a.expected + p.min_excess);
        // Through the whole detector: it is held for the pending evaluations there,
        // and the one-shot `detect` shows it.
        assert!(
            detect(&store, now, &p)
                .iter()
                .any(|a| a.rule == "runaway_requests" && a.name == "user_77")
        );
    }

    #[test]
    fn a_busy_user_at_its_usual_pace_and_a_free_loop_page_nobody() {
        let now = utc("2026-11-28T15:30:00Z");
        // 40 requests every 15 minutes is this user's normal; 60 now is not a loop.
        let mut store = history(now, "user_busy", 40);
        let mut live = Vec::new();
        for m in (1..=15).rev() {
            let at = now - Duration::minutes(m);
            live.push(fact(at, "steady_user", Money::from_dollars(1), 20));
            live.push(fact(at, "user_busy", Money::from_micros(40_000), 4));
            // A loop of free calls: many requests, no spend to speak of.
            live.push(fact(at, "user_free", Money::ZERO, 50));
        }
        feed(&mut store, now, live);
        let found = runaway_requests(&store, now, &DetectParams::default());
        assert!(
            found.is_empty(),
            "{:#?}",
            found.iter().map(|c| &c.anomaly).collect::<Vec<_>>()
        );
    }
}
