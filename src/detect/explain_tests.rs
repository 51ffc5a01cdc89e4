//! How anomalies explain themselves: the onset, contributors that are parts of the
//! observed spend, and "new" instead of a ratio against nothing.

use chrono::{DateTime, Duration, Utc};

use super::{Anomaly, DetectParams, Severity, detect, ratio_text};
use crate::model::{Agg, Dim, Fact, FactBatch};
use crate::money::Money;
use crate::store::{Store, StoreConfig};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fact(at: DateTime<Utc>, feature: &str, user: &str, model: &str, cost: Money, n: u64) -> Fact {
    Fact {
        at,
        names: [
            feature.into(),
            user.into(),
            model.into(),
            "acme".into(),
            "eu".into(),
        ],
        agg: Agg {
            cost,
            requests: n,
            input_tokens: 100 * n,
            output_tokens: 10 * n,
            computed: 0,
        },
    }
}

/// 14 days of support_qa at $1 a minute over ten users and two models (minute by
/// minute for the last three hours), then `loop_from` on a loop of one user at $8
/// a minute through claude-sonnet-4.
fn busy_hour_with_loop(now: DateTime<Utc>, loop_from: DateTime<Utc>) -> Store {
    let mut store = Store::new(StoreConfig::default(), now);
    let mut facts = Vec::new();
    let mut t = now - Duration::days(14);
    while t < now {
        let minute_wise = now - t <= Duration::hours(3);
        let (step, k) = if minute_wise { (1, 1) } else { (60, 60) };
        for u in 0..10 {
            let model = if u % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
            let user = format!("user_{u:02}");
            let cost = Money::from_micros(100_000).times(k);
            facts.push(fact(t, "support_qa", &user, model, cost, 2 * k));
        }
        if t >= loop_from {
            facts.push(fact(
                t,
                "support_qa",
                "user_loop",
                "claude-sonnet-4",
                Money::from_dollars(8),
                80,
            ));
        }
        t += Duration::minutes(step as i64);
    }
    store.apply(&FactBatch::of_rows(facts), now);
    store
}

fn find<'a>(found: &'a [Anomaly], rule_prefix: &str, dim: Dim, name: &str) -> &'a Anomaly {
    found
        .iter()
        .find(|a| a.rule.starts_with(rule_prefix) && a.dim == dim && a.name == name)
        .unwrap_or_else(|| panic!("no {rule_prefix} on {dim} {name}: {found:#?}"))
}

#[test]
fn an_anomaly_shows_its_onset_not_its_windows_start() {
    // The loop began at 17:09; at 17:14:30 the 15- and 60-minute windows began at
    // 17:00 and 16:15.
    let now = utc("2026-12-07T17:14:30Z");
    let store = busy_hour_with_loop(now, utc("2026-12-07T17:09:00Z"));
    let found = detect(&store, now, &DetectParams::default());
    let spike = find(&found, "spike_", Dim::Feature, "support_qa");
    assert_eq!(spike.since, Some(utc("2026-12-07T17:09:00Z")), "{spike:#?}");
    for a in found.iter().filter(|a| a.name == "user_loop") {
        assert_eq!(a.since, Some(utc("2026-12-07T17:09:00Z")), "{a:#?}");
        // One time for the problem: the message does not name another.
        assert!(!a.message.contains("since"), "{}", a.message);
    }
}

#[test]
fn the_onset_is_not_pulled_back_by_traffic_a_little_above_its_baseline() {
    // The last three hours run 20% above the 14 days before them (a busy day, the
    // baseline's own rhythm), with one user at a few cents since 16:20; the loop
    // begins at 17:09. A running sum of (minute - usual) would find its lowest point
    // at the start of its look-back (16:15) for the feature, and at the user's first
    // cent for the user; the onset is the loop's first minute for both.
    let now = utc("2026-12-07T17:14:30Z");
    let loop_from = utc("2026-12-07T17:09:00Z");
    let mut store = busy_hour_with_loop(now, loop_from);
    let mut facts = Vec::new();
    let mut t = now - Duration::hours(3);
    while t < now {
        for u in 0..2 {
            let model = if u % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
            let user = format!("user_{u:02}");
            facts.push(fact(
                t,
                "support_qa",
                &user,
                model,
                Money::from_micros(100_000),
                2,
            ));
        }
        if t >= utc("2026-12-07T16:20:00Z") && t < loop_from {
            facts.push(fact(
                t,
                "support_qa",
                "user_loop",
                "claude-sonnet-4",
                Money::from_micros(20_000),
                1,
            ));
        }
        t += Duration::minutes(1);
    }
    store.apply(&FactBatch::of_rows(facts), now);
    let found = detect(&store, now, &DetectParams::default());
    let spike = find(&found, "spike_", Dim::Feature, "support_qa");
    assert_eq!(spike.since, Some(loop_from), "{spike:#?}");
    for a in found.iter().filter(|a| a.name == "user_loop") {
        assert_eq!(a.since, Some(loop_from), "{a:#?}");
    }
}

#[test]
fn contributors_are_parts_of_the_observed_spend() {
    // A 5-minute spike in a busy hour: each contributor's amount is its spend in
    // the window on the feature, so none exceeds the observed total, the parts of a
    // dimension add up to at most it, and each share is amount / observed.
    let now = utc("2026-12-07T17:14:30Z");
    let store = busy_hour_with_loop(now, utc("2026-12-07T17:11:00Z"));
    let found = detect(&store, now, &DetectParams::default());
    let mut checked = 0;
    for a in found.iter().filter(|a| !a.contributors.is_empty()) {
        for dim in [Dim::User, Dim::Model, Dim::Feature] {
            let parts: Vec<_> = a.contributors.iter().filter(|c| c.dim == dim).collect();
            let sum: Money = parts.iter().map(|c| c.cost).sum();
            assert!(sum <= a.observed, "{dim} parts {sum:?} > observed: {a:#?}");
            for c in parts {
                assert!(c.cost <= a.observed, "{a:#?}");
                let share = c.cost.as_f64() / a.observed.as_f64();
                assert!((c.share - share).abs() < 1e-9, "{c:?} of {a:#?}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 2, "{found:#?}");
    let spike = find(&found, "spike_", Dim::Feature, "support_qa");
    // The loop is most of the window and the top user; its model likewise.
    let top_user = spike
        .contributors
        .iter()
        .find(|c| c.dim == Dim::User)
        .unwrap();
    assert_eq!(top_user.name, "user_loop");
    assert!(top_user.share > 0.6, "{spike:#?}");
    let top_model = spike
        .contributors
        .iter()
        .find(|c| c.dim == Dim::Model)
        .unwrap();
    assert_eq!(top_model.name, "claude-sonnet-4");
    assert!(top_model.cost <= spike.observed);
}

#[test]
fn against_nothing_it_says_new_and_the_cap_reads_the_same_everywhere() {
    assert_eq!(
        ratio_text(Money::from_dollars(3), Money::ZERO, 999.0),
        "new"
    );
    assert_eq!(
        ratio_text(Money::from_dollars(3000), Money::from_micros(1), 999.0),
        ">999x"
    );
    assert_eq!(
        ratio_text(Money::from_dollars(4), Money::from_dollars(1), 4.0),
        "4.0x"
    );
    assert_eq!(ratio_text(Money::ZERO, Money::ZERO, 1.0), "1.0x");

    // A user never seen at this hour sends a loop: its spike and its request rate
    // are "new", never "12649x" or "999.0x".
    let now = utc("2026-12-07T17:14:30Z");
    let store = busy_hour_with_loop(now, utc("2026-12-07T17:01:00Z"));
    let found = detect(&store, now, &DetectParams::default());
    let by_rate = find(&found, "runaway_requests", Dim::User, "user_loop");
    assert!(
        by_rate.message.contains("vs typical 0 (busiest "),
        "{}",
        by_rate.message
    );
    assert!(
        by_rate.message.contains("), new: a loop?"),
        "{}",
        by_rate.message
    );
    let spike = find(&found, "runaway_user", Dim::User, "user_loop");
    assert!(
        spike.message.contains("vs typical $0.00, new"),
        "{}",
        spike.message
    );
    for a in &found {
        assert!(!a.message.contains("999"), "{}", a.message);
    }
    assert!(found.iter().any(|a| a.severity >= Severity::Warning));
}
