use super::*;
use crate::model::Fact;
use crate::money::Money;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fact(at: &str, feature: &str, user: &str, model: &str, cost: &str) -> Fact {
    Fact {
        at: utc(at),
        names: [
            feature.into(),
            user.into(),
            model.into(),
            "acme".into(),
            "us-east".into(),
        ],
        agg: Agg::one(cost.parse().unwrap(), 100, 20),
    }
}

fn batch(facts: Vec<Fact>) -> FactBatch {
    FactBatch::of_rows(facts)
}

const NOW: &str = "2026-11-28T12:30:00Z";

#[test]
fn totals_are_exact_sums() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![
            fact("2026-11-28T12:01:00Z", "chat", "u1", "gpt-4o", "0.1"),
            fact("2026-11-28T12:02:00Z", "chat", "u2", "gpt-4o", "0.2"),
            fact(
                "2026-11-28T11:59:00Z",
                "search",
                "u1",
                "claude",
                "0.0000015",
            ),
        ]),
        now,
    );
    let all = s.total(s.hours_from(utc("2026-11-01T00:00:00Z")));
    assert_eq!(all.cost, "0.3000015".parse::<Money>().unwrap());
    assert_eq!(all.requests, 3);
    assert_eq!(all.input_tokens, 300);
    let this_hour = s.total(s.hours_from(utc("2026-11-28T12:00:00Z")));
    assert_eq!(this_hour.cost, "0.3".parse::<Money>().unwrap());
    let by_feature = s.by_dim(Dim::Feature, s.hours_from(utc("2026-11-01T00:00:00Z")));
    let chat = s.lookup(Dim::Feature, "chat").unwrap();
    assert_eq!(by_feature[&chat].requests, 2);
}

#[test]
fn late_event_lands_in_its_own_hour() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![fact("2026-11-28T12:10:00Z", "chat", "u1", "m", "1")]),
        now,
    );
    // Arrives later, but happened three hours ago.
    s.apply(
        &batch(vec![fact("2026-11-28T09:15:00Z", "chat", "u1", "m", "2")]),
        now,
    );
    let h9 = s.hour_index(utc("2026-11-28T09:00:00Z"));
    let series = s.hourly_series(Dim::Feature, None, h9, h9 + 3);
    let costs: Vec<_> = series.iter().map(|a| a.cost.to_string()).collect();
    assert_eq!(costs, ["2", "0", "0", "1"]);
}

#[test]
fn drill_down_filters_by_any_path() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![
            fact("2026-11-28T12:01:00Z", "chat", "u1", "gpt-4o", "1"),
            fact("2026-11-28T12:02:00Z", "chat", "u1", "mini", "2"),
            fact("2026-11-28T12:03:00Z", "chat", "u2", "gpt-4o", "4"),
            fact("2026-11-28T12:04:00Z", "search", "u1", "gpt-4o", "8"),
        ]),
        now,
    );
    let r = s.hours_from(utc("2026-11-01T00:00:00Z"));
    let chat = s.lookup(Dim::Feature, "chat").unwrap();
    let u1 = s.lookup(Dim::User, "u1").unwrap();
    let gpt = s.lookup(Dim::Model, "gpt-4o").unwrap();
    let models = s.by_dim_filtered(
        Dim::Model,
        &[(Dim::Feature, chat), (Dim::User, u1)],
        r.clone(),
    );
    assert_eq!(models[&gpt].cost.to_string(), "1");
    assert_eq!(models.len(), 2);
    let features = s.by_dim_filtered(Dim::Feature, &[(Dim::Model, gpt)], r);
    assert_eq!(features[&chat].cost.to_string(), "5");
}

#[test]
fn prune_drops_old_hours_but_keeps_the_month() {
    let cfg = StoreConfig {
        retention_hours: 24,
        ..Default::default()
    };
    let now = utc("2026-11-28T12:30:00Z");
    let mut s = Store::new(cfg, now);
    s.apply(
        &batch(vec![fact("2026-11-01T00:10:00Z", "chat", "u", "m", "1")]),
        now,
    );
    s.apply(
        &batch(vec![fact("2026-10-31T23:10:00Z", "chat", "u", "m", "1")]),
        now,
    );
    assert_eq!(
        s.intake().too_old,
        1,
        "before the month start and the retention"
    );
    assert_eq!(s.total(0..=i64::MAX).requests, 1);
    // In December, November's hours fall out.
    let later = utc("2026-12-03T00:00:00Z");
    s.prune(later);
    assert_eq!(s.total(0..=i64::MAX).requests, 0);
}

#[test]
fn empty_names_become_none() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![fact("2026-11-28T12:01:00Z", "", "", "m", "1")]),
        now,
    );
    assert!(s.lookup(Dim::Feature, NONE_NAME).is_some());
}

#[test]
fn minute_buckets_cover_recent_minutes_only() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![
            fact("2026-11-28T12:29:10Z", "chat", "u", "m", "1"),
            fact("2026-11-28T12:29:50Z", "chat", "u", "m", "1"),
            fact("2026-11-28T06:00:00Z", "chat", "u", "m", "5"),
        ]),
        now,
    );
    let m = Calendar::minute_index(now);
    assert_eq!(s.minutes_total(m - 1, m).cost.to_string(), "2");
    assert_eq!(
        s.minutes_total(0, m).cost.to_string(),
        "2",
        "06:00 is older than 180 minutes"
    );
}

#[test]
fn memory_is_bounded_by_combinations_not_rows() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    let facts: Vec<Fact> = (0..10_000)
        .map(|i| {
            fact(
                "2026-11-28T12:01:00Z",
                "chat",
                &format!("u{}", i % 10),
                "m",
                "0.01",
            )
        })
        .collect();
    s.apply(&batch(facts), now);
    let (hours, cells, combos) = s.footprint();
    assert_eq!((hours, cells, combos), (1, 10, 10));
    assert_eq!(s.total(0..=i64::MAX).cost.to_string(), "100");
}

#[test]
fn filtered_series_fold_hours_into_slots_and_match_the_filtered_totals() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![
            fact("2026-11-28T09:10:00Z", "chat", "u1", "gpt-4o", "1"),
            fact("2026-11-28T10:10:00Z", "chat", "u1", "claude", "2"),
            fact("2026-11-28T11:10:00Z", "chat", "u2", "gpt-4o", "4"),
            fact("2026-11-28T12:10:00Z", "search", "u1", "gpt-4o", "8"),
        ]),
        now,
    );
    let h9 = s.hour_index(utc("2026-11-28T09:00:00Z"));
    let chat = s.lookup(Dim::Feature, "chat").unwrap();
    let u1 = s.lookup(Dim::User, "u1").unwrap();
    let costs = |v: &[Agg]| v.iter().map(|a| a.cost.to_string()).collect::<Vec<_>>();
    // Two-hour slots over 09..=12: [09+10, 11+12].
    let all = s.series_filtered(&[], h9, h9 + 3, 2);
    assert_eq!(costs(&all), ["3", "12"]);
    let chat_series = s.series_filtered(&[(Dim::Feature, chat)], h9, h9 + 3, 1);
    assert_eq!(costs(&chat_series), ["1", "2", "4", "0"]);
    let by_model = s.series_by_dim_filtered(
        Dim::Model,
        &[(Dim::Feature, chat), (Dim::User, u1)],
        h9,
        h9 + 3,
        1,
    );
    let gpt = s.lookup(Dim::Model, "gpt-4o").unwrap();
    let claude = s.lookup(Dim::Model, "claude").unwrap();
    assert_eq!(costs(&by_model[&gpt]), ["1", "0", "0", "0"]);
    assert_eq!(costs(&by_model[&claude]), ["0", "2", "0", "0"]);
    // Unfiltered per-dimension series use the rollups and agree with the cells.
    let by_user = s.series_by_dim_filtered(Dim::User, &[], h9, h9 + 3, 4);
    assert_eq!(costs(&by_user[&u1]), ["11"]);
    let sum: Agg = by_user.values().fold(Agg::default(), |mut t, v| {
        t.add(&v[0]);
        t
    });
    assert_eq!(sum, s.total(h9..=h9 + 3));
    // Paths resolve by name; an unknown name matches nothing.
    let path = [(Dim::Feature, "chat".to_string())];
    assert_eq!(s.resolve(&path), Some(vec![(Dim::Feature, chat)]));
    assert_eq!(s.resolve(&[(Dim::User, "nobody".to_string())]), None);
    assert!(s.series_filtered(&[], h9, h9 - 1, 1).is_empty());
}

#[test]
fn prorated_spans_count_each_hour_by_its_overlap() {
    let now = utc("2026-11-28T12:30:00Z");
    let mut s = Store::new(StoreConfig::default(), now);
    s.apply(
        &batch(vec![
            fact("2026-11-28T10:00:00Z", "chat", "u", "m", "60"),
            fact("2026-11-28T11:00:00Z", "chat", "u", "m", "120"),
            fact("2026-11-28T11:10:00Z", "chat", "u", "m", "-30"),
        ]),
        now,
    );
    let id = s.lookup(Dim::Feature, "chat");
    // 10:50-11:05: 10 minutes of $60/h and 5 of $90/h.
    let (c, r) = s.prorated(
        Dim::Feature,
        id,
        utc("2026-11-28T10:50:00Z"),
        utc("2026-11-28T11:05:00Z"),
    );
    assert_eq!(c, "17.5".parse().unwrap());
    assert!((r - (1.0 / 6.0 + 2.0 / 12.0)).abs() < 1e-9, "{r}");
    // Empty, reversed and data-free spans are zero, never a panic.
    let t = utc("2026-11-28T10:00:00Z");
    assert_eq!(s.prorated(Dim::Feature, id, t, t).0, Money::ZERO);
    assert_eq!(
        s.prorated(Dim::Feature, id, t, t - Duration::hours(3)).0,
        Money::ZERO
    );
    assert_eq!(
        s.prorated(Dim::Feature, None, utc("2020-01-01T00:00:00Z"), t)
            .0,
        Money::ZERO
    );
    // Whole hours are exact, credits included.
    assert_eq!(
        s.prorated(Dim::Feature, None, t, utc("2026-11-28T12:00:00Z"))
            .0,
        Money::from_dollars(150)
    );
}

/// `level_totals` answers in one pass what the separate queries answer: per name of
/// the group, the window's and the baseline's totals and the sparkline series, and
/// the window's total, for an empty, a single and a double constraint.
#[test]
fn level_totals_in_one_pass_equal_the_separate_queries() {
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    let (features, users, models) = (["chat", "search"], ["u1", "u2", "u3"], ["a", "b"]);
    let mut facts = Vec::new();
    // 60 hours back, some names only early (baseline only), one row future-dated.
    for h in 0..60i64 {
        for (i, f) in features.iter().enumerate() {
            for (j, u) in users.iter().enumerate() {
                if (h + i as i64 + j as i64) % 3 == 0 || (j == 2 && h < 30) {
                    continue;
                }
                let at = now - Duration::hours(h) - Duration::minutes(j as i64);
                let cost = format!("0.{:06}", 1 + h * 7 + i as i64 * 3 + j as i64);
                facts.push(fact(
                    &at.to_rfc3339(),
                    f,
                    u,
                    models[(h as usize + j) % 2],
                    &cost,
                ));
            }
        }
    }
    facts.push(fact("2026-11-28T15:10:00Z", "chat", "u4", "a", "5"));
    s.apply(&batch(facts), now);
    let cur = s.hour_index(now);
    let chat = s.lookup(Dim::Feature, "chat").unwrap();
    let a = s.lookup(Dim::Model, "a").unwrap();
    for filter in [
        vec![],
        vec![(Dim::Feature, chat)],
        vec![(Dim::Feature, chat), (Dim::Model, a)],
    ] {
        for (group, from, baseline, spark, step) in [
            (
                Dim::User,
                cur - 23,
                Some(cur - 47..=cur - 24),
                cur - 23..=cur,
                1,
            ),
            (Dim::User, cur, None, cur - 23..=cur, 1),
            (
                Dim::Model,
                cur - 40,
                Some(cur - 59..=cur - 41),
                cur - 40..=cur,
                6,
            ),
        ] {
            let got = s.level_totals(&LevelQuery {
                group,
                filter: &filter,
                from,
                baseline: baseline.clone(),
                spark: spark.clone(),
                step,
            });
            let window = s.by_dim_filtered(group, &filter, from..=i64::MAX);
            let before = baseline
                .clone()
                .map(|b| s.by_dim_filtered(group, &filter, b))
                .unwrap_or_default();
            let series =
                s.series_by_dim_filtered(group, &filter, *spark.start(), *spark.end(), step);
            assert_eq!(got.parent, s.total_filtered(&filter, from..=i64::MAX));
            assert_eq!(got.rows.len(), window.len(), "{filter:?} {group:?}");
            for row in &got.rows {
                assert_eq!(row.window, window[&row.id]);
                assert_eq!(
                    row.baseline,
                    before.get(&row.id).copied().unwrap_or_default()
                );
                assert_eq!(row.series, series.get(&row.id).cloned().unwrap_or_default());
            }
            assert!(!got.rows.is_empty());
        }
    }
    // The future-dated row counts in the window but in no sparkline slot.
    let u4 = s.lookup(Dim::User, "u4").unwrap();
    let got = s.level_totals(&LevelQuery {
        group: Dim::User,
        filter: &[],
        from: cur,
        baseline: None,
        spark: cur - 23..=cur,
        step: 1,
    });
    let row = got.rows.iter().find(|r| r.id == u4).unwrap();
    assert_eq!(row.window.cost, Money::from_dollars(5));
    assert!(row.series.is_empty());
    // The single-constraint shortcut of the filtered series agrees with the cells.
    let by_cells: Agg = s
        .by_dim_filtered(Dim::Model, &[(Dim::Feature, chat)], cur - 59..=cur)
        .values()
        .fold(Agg::default(), |mut t, v| {
            t.add(v);
            t
        });
    let series = s.series_filtered(&[(Dim::Feature, chat)], cur - 59, cur, 60);
    assert_eq!(series, vec![by_cells]);
}

/// Everything the queries can tell about a store, by name, to compare two stores
/// whose ids differ.
fn by_names(s: &Store, now: DateTime<Utc>) -> Vec<String> {
    let all = s.hours_from(utc("2026-10-01T00:00:00Z"));
    let mut out = vec![format!("total {:?}", s.total(all.clone()))];
    for dim in Dim::ALL {
        for (id, a) in s.by_dim(dim, all.clone()) {
            out.push(format!("{dim:?} {} {a:?}", s.name(dim, id)));
        }
        let from = s.minute_floor(now);
        for (id, a) in s.minutes_by_dim(dim, from, from + 1000) {
            out.push(format!("minutes {dim:?} {} {a:?}", s.name(dim, id)));
        }
    }
    let chat = s.lookup(Dim::Feature, "chat").expect("chat is live");
    for (id, a) in s.by_dim_filtered(Dim::User, &[(Dim::Feature, chat)], all.clone()) {
        out.push(format!("chat user {} {a:?}", s.name(Dim::User, id)));
    }
    let q = LevelQuery {
        group: Dim::Model,
        filter: &[(Dim::Feature, chat)],
        from: *all.start(),
        baseline: None,
        spark: *all.start()..=s.hour_index(now),
        step: 24,
    };
    let level = s.level_totals(&q);
    out.push(format!("level parent {:?}", level.parent));
    for r in level.rows {
        out.push(format!(
            "level {} {:?} {:?}",
            s.name(Dim::Model, r.id),
            r.window,
            r.series
        ));
    }
    out.sort();
    out
}

#[test]
fn names_only_pruned_hours_held_are_forgotten_and_ids_renumbered() {
    let cfg = StoreConfig {
        retention_hours: 24,
        ..StoreConfig::default()
    };
    // October's users (12,000 one-off users and two that come back) fall out of the
    // history on November 2nd, when it starts at the month's start.
    let old_now = utc("2026-10-31T23:30:00Z");
    let mut s = Store::new(cfg, old_now);
    let mut old: Vec<Fact> = (0..12_000)
        .map(|i| {
            fact(
                "2026-10-31T22:10:00Z",
                "chat",
                &format!("once_{i}"),
                "m1",
                "0.01",
            )
        })
        .collect();
    old.push(fact(
        "2026-10-31T22:20:00Z",
        "search",
        "back_1",
        "m2",
        "0.02",
    ));
    old.push(fact("2026-10-31T22:20:00Z", "chat", "back_2", "m1", "0.03"));
    s.apply(&batch(old), old_now);
    let now = utc("2026-11-02T12:30:00Z");
    let recent = || {
        batch(vec![
            fact("2026-11-01T03:00:00Z", "chat", "back_1", "m1", "0.5"),
            fact("2026-11-02T11:00:00Z", "chat", "back_2", "m1", "0.25"),
            fact("2026-11-02T12:10:00Z", "chat", "new_1", "m3", "0.125"),
            fact("2026-11-02T12:11:00Z", "search", "new_1", "m3", "1"),
        ])
    };
    s.apply(&recent(), now);
    let names_before = s.distinct_names(Dim::User);
    s.prune(now);
    assert!(names_before > 12_000);
    assert_eq!(s.distinct_names(Dim::User), 3, "back_1, back_2, new_1");
    assert_eq!(s.footprint().2, 4, "four live combinations");
    assert_eq!(s.lookup(Dim::User, "once_7"), None);
    let mut fresh = Store::new(cfg, now);
    fresh.apply(&recent(), now);
    assert_eq!(by_names(&s, now), by_names(&fresh, now));
    // New names after the renumbering get fresh ids and land where they should.
    let more = || {
        batch(vec![fact(
            "2026-11-02T12:20:00Z",
            "chat",
            "new_2",
            "m1",
            "2",
        )])
    };
    s.apply(&more(), now);
    fresh.apply(&more(), now);
    assert_eq!(by_names(&s, now), by_names(&fresh, now));
}

#[test]
fn memory_counts_what_is_held_and_sealing_an_hour_shrinks_it() {
    let now = utc("2026-11-28T12:59:00Z");
    let mut s = Store::new(StoreConfig::default(), now);
    let facts: Vec<Fact> = (0..3_000)
        .map(|i| {
            fact(
                "2026-11-28T12:10:00Z",
                "chat",
                &format!("u{i}"),
                "m",
                "0.01",
            )
        })
        .collect();
    s.apply(&batch(facts), now);
    let open = s.memory();
    assert_eq!(
        (open.hours, open.cells, open.combinations),
        (1, 3_000, 3_000)
    );
    assert_eq!(open.names, 3_000 + 4);
    // Each cell holds at least its key and a packed total, and the open hour's
    // maps take more than that (under `seal_if_large`'s bar, they stay maps).
    assert!(open.bytes > 3_000 * 2 * 28, "{open:?}");
    let parts = open.cell_bytes + open.dimension_bytes + open.combination_bytes + open.name_bytes;
    assert_eq!(parts, open.bytes);
    assert!(open.cell_bytes > 3_000 * 28 && open.name_bytes > 3_000 * 2 * 2);
    // An hour later the 12:00 bucket (and its minutes) are packed.
    s.apply(&batch(Vec::new()), utc("2026-11-28T13:00:30Z"));
    let sealed = s.memory();
    assert_eq!(sealed.cells, open.cells);
    assert!(sealed.bytes * 10 < open.bytes * 7, "{open:?} -> {sealed:?}");
}

#[test]
fn a_burst_in_the_current_hour_is_sealed_as_it_comes_and_stays_exact() {
    // 30,000 new users in the current hour, in batches as the tail sends them: the
    // hour's maps are sealed along the way instead of holding every cell in a map.
    let now = utc(NOW);
    let mut s = Store::new(StoreConfig::default(), now);
    for chunk in 0..30 {
        let facts: Vec<Fact> = (0..1_000)
            .map(|i| {
                let user = format!("bot_{:05}", chunk * 1_000 + i);
                fact(
                    "2026-11-28T12:10:00Z",
                    "support_qa",
                    &user,
                    "gpt-4o",
                    "0.25",
                )
            })
            .collect();
        s.apply(&batch(facts), now);
    }
    // A second pass over the same users lands on sealed cells, in place.
    let again: Vec<Fact> = (0..30_000)
        .map(|i| {
            let user = format!("bot_{i:05}");
            fact("2026-11-28T12:20:00Z", "support_qa", &user, "gpt-4o", "0.5")
        })
        .collect();
    s.apply(&batch(again), now);
    let m = s.memory();
    assert!(
        m.cell_bytes < 30_000 * 40,
        "cells sealed as they come: {} bytes for 30,000",
        m.cell_bytes
    );
    let hour = s.hours_from(utc("2026-11-28T12:00:00Z"));
    let total = s.total(hour.clone());
    assert_eq!(total.requests, 60_000);
    assert_eq!(total.cost, "22500".parse::<Money>().unwrap());
    let users = s.by_dim(Dim::User, hour);
    assert_eq!(users.len(), 30_000);
    let one = s.lookup(Dim::User, "bot_12345").unwrap();
    assert_eq!(users[&one].cost, "0.75".parse::<Money>().unwrap());
    assert_eq!(users[&one].requests, 2);
}
