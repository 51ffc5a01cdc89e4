//! Recurring jobs against the short-window rules, with fixed clocks: a job at the
//! same minutes of every hour or of every night is part of its own baseline; the
//! same job at a new time, or twice its size, still shows.

use chrono::{DateTime, Duration, Utc};

use super::{Anomaly, DetectParams, DetectorState, detect, evaluate};
use crate::calendar::Calendar;
use crate::model::{Agg, Dim, Fact, FactBatch, NameShape};
use crate::money::Money;
use crate::sim::recurring::{Every, RecurringJob};
use crate::store::{Store, StoreConfig};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fact(at: DateTime<Utc>, feature: &str, user: &str, model: &str, cents: i64, n: u64) -> Fact {
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
            cost: Money::from_micros(cents * 10_000),
            requests: n,
            input_tokens: 100 * n,
            output_tokens: 10 * n,
            computed: 0,
        },
    }
}

/// Everyday traffic of minute `t`: chat at $12/h over gpt-4o-mini and summarize at
/// $1.20/h over gpt-4o, spread over five users each.
fn background(t: DateTime<Utc>) -> Vec<Fact> {
    let u = Calendar::minute_index(t).rem_euclid(5);
    vec![
        fact(t, "chat", &format!("chat_user_{u}"), "gpt-4o-mini", 20, 4),
        fact(t, "summarize", &format!("sum_user_{u}"), "gpt-4o", 2, 1),
    ]
}

/// Facts of `[from, to)` minute by minute: background plus the jobs.
fn minutes(from: DateTime<Utc>, to: DateTime<Utc>, jobs: &[RecurringJob]) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut t = from;
    while t < to {
        facts.extend(background(t));
        t += Duration::minutes(1);
    }
    for job in jobs {
        facts.extend(job.facts(from, to));
    }
    facts
}

/// A dashboard that has watched `days` days of `history` jobs: every hour fed as it
/// happened (minute buckets, aged into hour buckets and their five-minute shapes),
/// up to `now`, whose hour runs `today` instead.
fn watched(
    now: DateTime<Utc>,
    days: i64,
    history: &[RecurringJob],
    today: &[RecurringJob],
) -> Store {
    let cal = Calendar::default();
    let this_hour = cal.hour_start(cal.hour_index(now));
    let mut t = this_hour - Duration::days(days);
    let mut store = Store::new(StoreConfig::default(), t);
    while t < this_hour {
        let next = t + Duration::hours(1);
        store.apply(&FactBatch::of_rows(minutes(t, next, history)), next);
        store.prune(next);
        t = next;
    }
    store.apply(&FactBatch::of_rows(minutes(this_hour, now, today)), now);
    store
}

/// `days` days as the PostgreSQL backfill sends them: hour buckets, then minutes
/// for the last three hours, and nothing else seen.
fn backfilled(now: DateTime<Utc>, days: i64, jobs: &[RecurringJob]) -> Store {
    backfilled_with(now, days, jobs, jobs)
}

/// As `backfilled`, with `recent` jobs instead in the hours sent by minute.
fn backfilled_with(
    now: DateTime<Utc>,
    days: i64,
    jobs: &[RecurringJob],
    recent: &[RecurringJob],
) -> Store {
    let cal = Calendar::default();
    let minute_from = now - Duration::hours(3);
    let from = cal.hour_start(cal.hour_index(now)) - Duration::days(days);
    let mut store = Store::new(StoreConfig::default(), now);
    let mut hours: Vec<Fact> = Vec::new();
    let mut h = cal.hour_index(from);
    while cal.hour_start(h + 1) <= minute_from {
        // One fact per hour and name: the backfill's grouping.
        let (s, e) = (cal.hour_start(h), cal.hour_start(h + 1));
        let mut grouped: std::collections::BTreeMap<[String; 5], Agg> = Default::default();
        for f in minutes(s, e, jobs) {
            grouped.entry(f.names.clone()).or_default().add(&f.agg);
        }
        hours.extend(
            grouped
                .into_iter()
                .map(|(names, agg)| Fact { at: s, names, agg }),
        );
        h += 1;
    }
    let recent_from = cal.hour_start(h);
    hours.extend(minutes(recent_from, now, recent));
    store.apply(&FactBatch::of_rows(hours), now);
    store
}

/// Evaluations every minute through a whole hour, on a store grown minute by minute
/// from `base` (the hour's facts added up to each instant).
fn through_hour(base: &Store, hour: DateTime<Utc>, jobs: &[RecurringJob]) -> Vec<Anomaly> {
    let p = DetectParams::default();
    let mut state = DetectorState::default();
    let mut store = base.clone();
    let mut out = Vec::new();
    for m in 1..=60 {
        let t = hour + Duration::minutes(m);
        store.apply(
            &FactBatch::of_rows(minutes(t - Duration::minutes(1), t, jobs)),
            t,
        );
        out.extend(evaluate(&store, t, &p, &mut state));
        // A one-shot run (cron `check`) at the same instant agrees.
        if m % 5 == 0 {
            out.extend(detect(&store, t, &p));
        }
    }
    out
}

fn names(found: &[Anomaly]) -> Vec<String> {
    found
        .iter()
        .map(|a| format!("{} {} {}: {}", a.rule, a.dim, a.name, a.message))
        .collect()
}

fn about(found: &[Anomaly], names: &[&str]) -> bool {
    found.iter().any(|a| names.contains(&a.name.as_str()))
}

#[test]
fn an_hourly_job_at_the_same_minutes_is_quiet() {
    let digest = RecurringJob::hourly_digest();
    // 21 days watched, then a whole hour (the digest at :10-:15) minute by minute.
    let hour = utc("2026-03-22T10:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&digest), &[]);
    let found = through_hour(&base, hour, std::slice::from_ref(&digest));
    assert!(found.is_empty(), "{:#?}", names(&found));
}

#[test]
fn an_hourly_job_is_quiet_right_after_a_backfill_too() {
    // A fresh `check` or `watch`: 21 days of hour buckets and 3 hours of minutes.
    // The digest's place in the hour is learned from the hours held by minute.
    let digest = RecurringJob::hourly_digest();
    let p = DetectParams::default();
    for m in 10..=30 {
        let now = utc("2026-03-22T10:00:00Z") + Duration::minutes(m);
        let store = backfilled(now, 21, std::slice::from_ref(&digest));
        let found = detect(&store, now, &p);
        assert!(found.is_empty(), "10:{m}: {:#?}", names(&found));
    }
}

#[test]
fn a_nightly_batch_at_the_same_time_is_quiet() {
    let batch = RecurringJob::nightly_batch();
    let hour = utc("2026-03-22T02:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&batch), &[]);
    let found = through_hour(&base, hour, std::slice::from_ref(&batch));
    assert!(found.is_empty(), "{:#?}", names(&found));
}

#[test]
fn the_hourly_job_at_a_new_minute_shows() {
    let digest = RecurringJob::hourly_digest();
    let moved = digest.at(Every::Hour { minute: 40 });
    let hour = utc("2026-03-22T10:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&digest), &[]);
    let found = through_hour(&base, hour, &[moved]);
    assert!(
        about(&found, &["summarize", "gpt-4o", "svc_digest"]),
        "{:#?}",
        names(&found)
    );
    let first = found
        .iter()
        .find(|a| a.name == "summarize" || a.name == "gpt-4o");
    // Its onset is the new minute, not the start of the window that measured it.
    let since = first.and_then(|a| a.since).expect("a line with an onset");
    assert_eq!(since, utc("2026-03-22T10:40:00Z"), "{:#?}", names(&found));
}

#[test]
fn the_nightly_batch_at_a_new_hour_shows() {
    let batch = RecurringJob::nightly_batch();
    let moved = batch.at(Every::Day {
        hour: 14,
        minute: 20,
    });
    let hour = utc("2026-03-22T14:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&batch), &[]);
    let found = through_hour(&base, hour, &[moved]);
    assert!(
        about(
            &found,
            &["extract_entities", "claude-sonnet-4", "svc_batch"]
        ),
        "{:#?}",
        names(&found)
    );
}

#[test]
fn twice_the_usual_job_shows() {
    let digest = RecurringJob::hourly_digest();
    let hour = utc("2026-03-22T10:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&digest), &[]);
    let found = through_hour(&base, hour, &[digest.times(2)]);
    assert!(
        about(&found, &["summarize", "svc_digest"]),
        "{:#?}",
        names(&found)
    );

    let batch = RecurringJob::nightly_batch();
    let hour = utc("2026-03-22T02:00:00Z");
    let base = watched(hour, 21, std::slice::from_ref(&batch), &[]);
    let found = through_hour(&base, hour, &[batch.times(2)]);
    assert!(
        about(&found, &["extract_entities", "svc_batch"]),
        "{:#?}",
        names(&found)
    );
}

#[test]
fn the_store_keeps_shapes_compactly() {
    // 21 days watched with both jobs: a shape per hour for the few names over $1.
    let jobs = [RecurringJob::hourly_digest(), RecurringJob::nightly_batch()];
    let hour = utc("2026-03-22T10:00:00Z");
    let with = watched(hour, 21, &jobs, &[]);
    let m = with.memory();
    // chat, summarize, gpt-4o-mini, gpt-4o, svc_digest and the nightly three, each
    // 28 bytes a shaped hour: well under 0.5 MB for three weeks.
    let shaped = with.memory().dimension_bytes;
    let bare = backfilled(hour, 21, &jobs).memory().dimension_bytes;
    assert!(
        shaped < bare + 512 * 1024,
        "{m:?}: shapes took {} bytes",
        shaped.saturating_sub(bare)
    );
}

/// What `source::shapes` reads for a store `backfilled` at `now`: per hour sent
/// grouped by hour, the five-minute spend of each feature, model and user spending
/// at least $1 in it (at most 128 per dimension), as the server sums it.
fn server_shapes(now: DateTime<Utc>, days: i64, jobs: &[RecurringJob]) -> Vec<NameShape> {
    let cal = Calendar::default();
    let minute_from = now - Duration::hours(3);
    let mut h = cal.hour_index(cal.hour_start(cal.hour_index(now)) - Duration::days(days));
    let mut out = Vec::new();
    while cal.hour_start(h + 1) <= minute_from {
        let (s, e) = (cal.hour_start(h), cal.hour_start(h + 1));
        let mut sums: std::collections::BTreeMap<(usize, String), [f64; 12]> = Default::default();
        for f in minutes(s, e, jobs) {
            let slot = ((f.at - s).num_minutes() / 5) as usize;
            for dim in [Dim::Feature, Dim::Model, Dim::User] {
                let slots = sums
                    .entry((dim.index(), f.name(dim).to_string()))
                    .or_insert([0.0; 12]);
                slots[slot] += f.agg.cost.as_f64();
            }
        }
        for dim in [Dim::Feature, Dim::Model, Dim::User] {
            let mut big: Vec<(String, [f64; 12])> = sums
                .iter()
                .filter(|((d, _), slots)| *d == dim.index() && slots.iter().sum::<f64>() >= 1.0)
                .map(|((_, n), slots)| (n.clone(), *slots))
                .collect();
            big.sort_by(|a, b| b.1.iter().sum::<f64>().total_cmp(&a.1.iter().sum::<f64>()));
            out.extend(big.into_iter().take(128).map(|(name, slots)| NameShape {
                hour_start: s,
                dim,
                name,
                slots,
            }));
        }
        h += 1;
    }
    out
}

#[test]
fn a_nightly_batch_is_quiet_right_after_a_backfill_with_the_servers_shapes() {
    // A cron `check` at 02:20-02:40: 21 days of hour buckets (the batch's nights
    // among them), 3 hours of minutes (no batch in them), and the hours' shapes.
    let batch = RecurringJob::nightly_batch();
    let p = DetectParams::default();
    let jobs = std::slice::from_ref(&batch);
    let mut fired_without = Vec::new();
    for m in 20..=40 {
        let now = utc("2026-03-22T02:00:00Z") + Duration::minutes(m);
        let mut store = backfilled(now, 21, jobs);
        fired_without.extend(detect(&store, now, &p));
        assert!(store.add_hour_shapes(&server_shapes(now, 21, jobs)) > 0);
        let found = detect(&store, now, &p);
        assert!(found.is_empty(), "02:{m}: {:#?}", names(&found));
    }
    // What the issue saw without them: the batch's feature and model as spikes.
    assert!(
        about(&fired_without, &["extract_entities", "claude-sonnet-4"]),
        "{:#?}",
        names(&fired_without)
    );

    // Twice its size, or at a new time, still shows.
    let now = utc("2026-03-22T02:25:00Z");
    for today in [batch.times(2), batch.at(Every::Day { hour: 2, minute: 0 })] {
        let mut store = backfilled_with(now, 21, jobs, std::slice::from_ref(&today));
        assert!(store.add_hour_shapes(&server_shapes(now, 21, jobs)) > 0);
        let found = detect(&store, now, &p);
        assert!(
            about(
                &found,
                &["extract_entities", "claude-sonnet-4", "svc_batch"]
            ),
            "{today:?}: {:#?}",
            names(&found)
        );
    }
}
