//! The coarse tier (issue 17): hours older than the detail hours keep per-hour
//! totals of the small dimensions and per-day user totals, and answer every query
//! they claim to (`complete_from`, `users_exact_from`) exactly as the full store.

use std::collections::BTreeMap;

use super::*;
use crate::model::{DimFact, Fact};
use crate::money::Money;
use chrono::Timelike;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Three days of traffic from many users, deterministic: every 7 minutes a few
/// requests, spread over 5 features, 40 users, 3 models and 2 tenants.
fn traffic(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Fact> {
    let mut out = Vec::new();
    let mut t = from;
    let mut i: u64 = 0;
    while t < to {
        for k in 0..3u64 {
            i += 1;
            let x = i.wrapping_mul(2_654_435_761) ^ (k << 7);
            out.push(Fact {
                at: t + Duration::seconds((x % 400) as i64),
                names: [
                    format!("f{}", x % 5),
                    format!("u{}", (x / 7) % 40),
                    format!("m{}", (x / 3) % 3),
                    format!("t{}", x % 2),
                    if x % 11 == 0 {
                        String::new()
                    } else {
                        "eu".into()
                    },
                ],
                agg: Agg::one(
                    Money::from_picos(1_000_000 * (1 + (x % 997) as i128)),
                    10 + x % 50,
                    x % 30,
                ),
            });
        }
        t += Duration::minutes(7);
    }
    out
}

fn named<V: Clone>(s: &Store, dim: Dim, m: NameMap<V>) -> BTreeMap<String, V> {
    m.into_iter()
        .map(|(id, v)| (s.name(dim, id).to_string(), v))
        .collect()
}

const NOW: &str = "2026-11-28T12:30:00Z";

fn stores() -> (Store, Store, DateTime<Utc>, Vec<Fact>) {
    let now = utc(NOW);
    let facts = traffic(utc("2026-11-25T00:00:00Z"), now);
    let mut full = Store::new(StoreConfig::default(), now);
    full.apply(&FactBatch::of_rows(facts.clone()), now);
    let cfg = StoreConfig {
        detail_hours: Some(30),
        ..StoreConfig::default()
    };
    let mut tiered = Store::new(cfg, now);
    tiered.apply(&FactBatch::of_rows(facts.clone()), now);
    tiered.prune(now);
    full.prune(now);
    (full, tiered, now, facts)
}

/// The queries the coarse tier answers exactly, compared between two stores.
fn assert_same_answers(full: &Store, tiered: &Store, now: DateTime<Utc>) {
    let cur = full.hour_index(now);
    let floor = tiered.detail_floor();
    let cal = *full.calendar();
    assert_eq!(full.total(0..=i64::MAX), tiered.total(0..=i64::MAX));
    for h in full.oldest_hour().unwrap()..=cur {
        assert_eq!(full.total(h..=h), tiered.total(h..=h), "hour {h}");
        assert_eq!(
            full.hourly_series(Dim::Feature, None, h, h),
            tiered.hourly_series(Dim::Feature, None, h, h)
        );
    }
    for dim in [Dim::Feature, Dim::Model, Dim::Tenant, Dim::Region] {
        for from in [cur - 71, cur - 50, cur - 24, cur - 3, cur] {
            assert_eq!(
                named(full, dim, full.by_dim(dim, from..=i64::MAX)),
                named(tiered, dim, tiered.by_dim(dim, from..=i64::MAX)),
                "{dim:?} from {from}"
            );
        }
    }
    // Users from a day's start, or from within the detail hours.
    let days: Vec<i64> = (0..4)
        .map(|k| full.hour_index(cal.day_start(now - Duration::days(k))))
        .collect();
    for from in days.iter().copied().chain([floor, cur - 2]) {
        assert!(tiered.users_exact_from(from), "{from}");
        assert_eq!(
            named(full, Dim::User, full.by_dim(Dim::User, from..=i64::MAX)),
            named(tiered, Dim::User, tiered.by_dim(Dim::User, from..=i64::MAX)),
            "users from {from}"
        );
        let u = full.lookup(Dim::User, "u7").unwrap();
        let tu = tiered.lookup(Dim::User, "u7").unwrap();
        assert_eq!(
            full.total_filtered(&[(Dim::User, u)], from..=i64::MAX),
            tiered.total_filtered(&[(Dim::User, tu)], from..=i64::MAX)
        );
    }
    // Combinations from the detail floor on.
    assert_eq!(tiered.complete_from(Need::Cells), floor);
    let path = [(Dim::Feature, "f1".to_string()), (Dim::Model, "m2".into())];
    let (fp, tp) = (full.resolve(&path).unwrap(), tiered.resolve(&path).unwrap());
    for from in [floor, cur - 5] {
        assert_eq!(
            named(
                full,
                Dim::User,
                full.by_dim_filtered(Dim::User, &fp, from..=i64::MAX)
            ),
            named(
                tiered,
                Dim::User,
                tiered.by_dim_filtered(Dim::User, &tp, from..=i64::MAX)
            )
        );
        assert_eq!(
            full.total_filtered(&fp, from..=i64::MAX),
            tiered.total_filtered(&tp, from..=i64::MAX)
        );
        let q = |filter| LevelQuery {
            group: Dim::User,
            filter,
            from,
            baseline: None,
            spark: from..=cur,
            step: 1,
        };
        let by_name = |s: &Store, t: LevelTotals| {
            let mut rows: Vec<(String, Agg, Vec<Agg>)> = t
                .rows
                .into_iter()
                .map(|r| (s.name(Dim::User, r.id).to_string(), r.window, r.series))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            (t.parent, rows)
        };
        assert_eq!(
            by_name(full, full.level_totals(&q(&fp))),
            by_name(tiered, tiered.level_totals(&q(&tp)))
        );
    }
    // A level of users from a day's start, without a path.
    let day = days[1];
    let q = LevelQuery {
        group: Dim::User,
        filter: &[],
        from: day,
        baseline: None,
        spark: day..=cur,
        step: 24,
    };
    let window = |s: &Store| {
        let mut rows: Vec<(String, Agg)> = s
            .level_totals(&q)
            .rows
            .into_iter()
            .map(|r| (s.name(Dim::User, r.id).to_string(), r.window))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    assert_eq!(window(full), window(tiered));
}

#[test]
fn coarse_hours_answer_what_they_claim_exactly() {
    let (full, tiered, now, _) = stores();
    let cur = full.hour_index(now);
    assert_eq!(tiered.detail_floor(), cur - 30);
    let (fm, tm) = (full.memory(), tiered.memory());
    assert!(tm.coarse_hours > 40, "{tm:?}");
    assert!(tm.user_days > 0);
    assert!(
        tm.cells * 2 < fm.cells,
        "cells {} vs {}",
        tm.cells,
        fm.cells
    );
    assert_eq!(fm.coarse_hours, 0);
    assert_same_answers(&full, &tiered, now);
    // A week's users start mid-day, before the detail hours: not exact here.
    assert!(!tiered.users_exact_from(cur - 7 * 24 + 1));
    assert!(tiered.users_exact_from(tiered.detail_floor()));
}

#[test]
fn history_sent_coarse_equals_history_coarsened_in_memory() {
    let (full, _, now, facts) = stores();
    let cfg = StoreConfig {
        detail_hours: Some(30),
        ..StoreConfig::default()
    };
    let mut from_source = Store::new(cfg, now);
    let batch = from_source.as_backfilled(facts.clone());
    assert!(batch.facts.len() < facts.len() && !batch.coarse.is_empty());
    from_source.apply(&batch, now);
    from_source.prune(now);
    assert_eq!(from_source.intake().rows, full.intake().rows);
    assert_same_answers(&full, &from_source, now);
}

#[test]
fn hours_become_coarse_as_time_passes_and_late_rows_still_count() {
    let (mut full, mut tiered, now, _) = stores();
    let later = now + Duration::hours(20);
    let late = vec![Fact {
        at: now - Duration::hours(50),
        names: [
            "f9".into(),
            "late_user".into(),
            "m0".into(),
            "t0".into(),
            "eu".into(),
        ],
        agg: Agg::one(Money::from_picos(7_000_000_000), 5, 5),
    }];
    for s in [&mut full, &mut tiered] {
        s.prune(later);
        s.apply(&FactBatch::of_rows(late.clone()), later);
    }
    assert_eq!(tiered.detail_floor(), tiered.hour_index(later) - 30);
    assert_same_answers(&full, &tiered, later);
    let f9 = tiered.lookup(Dim::Feature, "f9").unwrap();
    assert_eq!(
        tiered.by_dim(Dim::Feature, 0..=i64::MAX)[&f9].cost,
        Money::from_picos(7_000_000_000)
    );
}

#[test]
fn names_held_only_by_coarse_hours_are_kept_when_dead_combinations_go() {
    let now = utc(NOW);
    let cfg = StoreConfig {
        detail_hours: Some(4),
        ..StoreConfig::default()
    };
    let mut s = Store::new(cfg, now);
    // 12,000 combinations in an hour that is about to turn coarse, forgotten once
    // it does; their names live on in the hour's and the day's totals.
    let at = now - Duration::hours(4);
    let facts: Vec<Fact> = (0..12_000)
        .map(|i| Fact {
            at,
            names: [
                format!("only_old_{}", i % 3),
                format!("user_{i}"),
                "m".into(),
                "t".into(),
                "r".into(),
            ],
            agg: Agg::one(Money::from_picos(1_000_000), 1, 1),
        })
        .collect();
    s.apply(&FactBatch::of_rows(facts), now);
    assert_eq!(s.memory().combinations, 12_000);
    s.prune(now + Duration::hours(1));
    assert_eq!(s.memory().combinations, 0, "the dead combinations went");
    let by_feature = named(&s, Dim::Feature, s.by_dim(Dim::Feature, 0..=i64::MAX));
    assert_eq!(by_feature.len(), 3);
    assert_eq!(by_feature["only_old_0"].requests, 4_000);
    let day = s.day_of_hour(s.hour_index(at));
    let users = s.by_dim(Dim::User, day..=i64::MAX);
    assert_eq!(users.len(), 12_000);
    assert!(s.lookup(Dim::User, "user_11999").is_some());
}

#[test]
fn a_users_coarse_hours_are_estimated_by_the_days_rhythm_for_baselines() {
    let (full, tiered, now, _) = stores();
    let day = tiered.day_of_hour(tiered.hour_index(now - Duration::days(2)));
    let u = tiered.lookup(Dim::User, "u3").unwrap();
    let fu = full.lookup(Dim::User, "u3").unwrap();
    let est = tiered.hourly_series(Dim::User, Some(u), day, day + 23);
    let real = full.hourly_series(Dim::User, Some(fu), day, day + 23);
    let sum = |v: &[Agg]| v.iter().map(|a| a.cost.picos()).sum::<i128>();
    // The day's total is kept (up to rounding down, a picodollar an hour).
    assert!(
        (sum(&real) - sum(&est)).abs() <= 24,
        "{} {}",
        sum(&real),
        sum(&est)
    );
    assert!(est.iter().all(|a| a.cost.picos() > 0));
}

#[test]
fn a_day_is_the_billing_days_hours_in_any_zone() {
    for (tz, now, first) in [
        (
            chrono_tz::Asia::Kathmandu,
            "2026-11-28T12:30:00Z",
            "2026-11-27T18:15:00Z",
        ),
        (
            chrono_tz::America::New_York,
            "2026-11-01T12:30:00Z", // the day clocks go back: 25 hours
            "2026-11-01T04:00:00Z",
        ),
    ] {
        let cfg = StoreConfig {
            calendar: crate::calendar::Calendar::new(tz),
            ..StoreConfig::default()
        };
        let s = Store::new(cfg, utc(now));
        let h = s.hour_index(utc(now));
        assert_eq!(
            s.calendar().hour_start(s.day_of_hour(h)),
            utc(first),
            "{tz}"
        );
    }
    let cfg = StoreConfig {
        calendar: crate::calendar::Calendar::new(chrono_tz::America::New_York),
        ..StoreConfig::default()
    };
    let s = Store::new(cfg, utc("2026-11-01T12:30:00Z"));
    let first = s.hour_index(utc("2026-11-01T04:00:00Z"));
    assert_eq!(
        s.day_of_hour(first + 24),
        first,
        "the 25th hour is the same day"
    );
    assert_eq!(s.day_of_hour(first + 25), first + 25);
}

/// A nightly batch read from the source's coarse history: its user's baseline
/// sees the batch at its hour, not spread over the day by everyone's rhythm
/// (which made the batch look new every night: issue 17's backtest).
#[test]
fn a_coarse_hours_biggest_users_from_the_source_keep_their_hour() {
    let now = utc(NOW);
    let mut facts = traffic(utc("2026-11-25T00:00:00Z"), now);
    let mut day = utc("2026-11-25T02:10:00Z");
    while day < now {
        facts.push(Fact {
            at: day,
            names: [
                "reindex".into(),
                "batch".into(),
                "m0".into(),
                "t0".into(),
                "eu".into(),
            ],
            agg: Agg::one(Money::from_picos(40 * 1_000_000_000_000), 1000, 10),
        });
        day += Duration::days(1);
    }
    // Daytime chat makes the day's rhythm: about $20 an hour from 08:00 to 20:00,
    // in three requests in even hours and one in odd ones.
    let mut hour = utc("2026-11-25T08:30:00Z");
    while hour < now {
        if (8..20).contains(&hour.hour()) {
            let (n, dollars) = if hour.hour() % 2 == 0 {
                (3, 7)
            } else {
                (1, 20)
            };
            for _ in 0..n {
                facts.push(Fact {
                    at: hour,
                    names: [
                        "chat".into(),
                        "chat_user".into(),
                        "m1".into(),
                        "t0".into(),
                        "eu".into(),
                    ],
                    agg: Agg::one(Money::from_picos(dollars * 1_000_000_000_000), 100, 10),
                });
            }
        }
        hour += Duration::hours(1);
    }
    let cfg = StoreConfig {
        detail_hours: Some(30),
        ..StoreConfig::default()
    };
    let feed = |with_hour_users: bool| {
        let mut s = Store::new(cfg, now);
        let mut batch = s.as_backfilled(facts.clone());
        if !with_hour_users {
            batch.hour_users.clear();
        }
        s.apply(&batch, now);
        s.prune(now);
        s
    };
    let two_days_ago = utc("2026-11-26T00:00:00Z");
    let sent = feed(true);
    let h = sent.day_of_hour(sent.hour_index(two_days_ago));
    assert!(h < sent.detail_floor(), "the day is coarse");
    let id = sent.lookup(Dim::User, "batch").unwrap();
    let series = sent.hourly_series(Dim::User, Some(id), h, h + 23);
    let batch_hour = (sent.hour_index(utc("2026-11-26T02:00:00Z")) - h) as usize;
    for (i, a) in series.iter().enumerate() {
        let want = if i == batch_hour { 40 } else { 0 };
        assert_eq!(
            a.cost,
            Money::from_picos(want * 1_000_000_000_000),
            "hour {i}"
        );
    }
    // Their requests too, as a store that kept every hour has them.
    let mut full = Store::new(StoreConfig::default(), now);
    full.apply(&FactBatch::of_rows(facts.clone()), now);
    for user in ["batch", "chat_user"] {
        let requests = |s: &Store| -> Vec<u64> {
            let id = s.lookup(Dim::User, user).unwrap();
            s.hourly_series(Dim::User, Some(id), h, h + 23)
                .iter()
                .map(|a| a.requests)
                .collect()
        };
        assert_eq!(requests(&sent), requests(&full), "{user}");
    }
    // The traffic's users spend well under a dollar an hour: none is sent, and
    // their hours still follow the day's rhythm.
    let u3 = sent.lookup(Dim::User, "u3").unwrap();
    let u3_series = sent.hourly_series(Dim::User, Some(u3), h, h + 23);
    assert!(u3_series.iter().all(|a| a.cost.picos() > 0));
    // Its usual share of its feature reads the pair in the coarse days too.
    let reindex = sent.lookup(Dim::Feature, "reindex").unwrap();
    let coarse_days = h..=sent.detail_floor() - 1;
    assert_eq!(
        sent.pair_cost_for_baseline(reindex, id, coarse_days.clone()),
        sent.by_dim(Dim::Feature, coarse_days.clone())[&reindex].cost
    );
    assert!(
        sent.pair_cost_for_baseline(reindex, id, coarse_days)
            .picos()
            >= 40 * 1_000_000_000_000
    );
    // Without them (the old query), the batch is spread over the whole day.
    let unsent = feed(false);
    let id = unsent.lookup(Dim::User, "batch").unwrap();
    let spread = unsent.hourly_series(Dim::User, Some(id), h, h + 23);
    assert!(spread[batch_hour].cost < Money::from_picos(10 * 1_000_000_000_000));
    // A retried chunk sends the rows counted since: the amounts add up.
    let mut again = feed(true);
    let extra = DimFact {
        at: utc("2026-11-26T02:00:00Z"),
        dim: Some(Dim::User),
        name: "batch".into(),
        agg: Agg::one(Money::from_picos(2 * 1_000_000_000_000), 1, 1),
    };
    let batch = FactBatch {
        hour_users: vec![extra],
        ..FactBatch::default()
    };
    again.apply(&batch, now);
    let id = again.lookup(Dim::User, "batch").unwrap();
    let series = again.hourly_series(Dim::User, Some(id), h, h + 23);
    assert_eq!(
        series[batch_hour].cost,
        Money::from_picos(42 * 1_000_000_000_000)
    );
}
