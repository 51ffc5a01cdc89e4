//! The coarse tier (issue 17): hours older than the detail hours keep per-hour
//! totals of the small dimensions and per-day user totals, and answer every query
//! they claim to (`complete_from`, `users_exact_from`) exactly as the full store.

use std::collections::BTreeMap;

use super::*;
use crate::model::Fact;
use crate::money::Money;

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

/// What the backfill's coarse query sends for the facts of the hours before
/// `floor`: per hour the total and each small dimension's names; per billing day
/// the users.
fn coarse_facts(store: &Store, facts: &[Fact], floor: i64) -> Vec<DimFact> {
    let cal = *store.calendar();
    let mut groups: BTreeMap<(i64, Option<Dim>, String), Agg> = BTreeMap::new();
    for f in facts {
        let h = cal.hour_index(f.at);
        if h >= floor {
            continue;
        }
        groups
            .entry((h, None, String::new()))
            .or_default()
            .add(&f.agg);
        for dim in Dim::ALL {
            let at = if dim == Dim::User {
                store.day_of_hour(h)
            } else {
                h
            };
            groups
                .entry((at, Some(dim), f.name(dim).to_string()))
                .or_default()
                .add(&f.agg);
        }
    }
    groups
        .into_iter()
        .map(|((h, dim, name), agg)| DimFact {
            at: cal.hour_start(h),
            dim,
            name,
            agg,
        })
        .collect()
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
    let floor = from_source.detail_floor();
    let coarse = coarse_facts(&from_source, &facts, floor);
    let fine: Vec<Fact> = facts
        .iter()
        .filter(|f| from_source.hour_index(f.at) >= floor)
        .cloned()
        .collect();
    let mut batch = FactBatch::of_rows(fine);
    batch.coarse = coarse;
    batch.rows = facts.len() as u64;
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
