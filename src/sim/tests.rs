use std::collections::{HashMap, HashSet};

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn gen_with(seed: u64, base_rate: f64, noise: f64, spike: Option<SpikeSpec>) -> Generator {
    Generator::new(GeneratorConfig {
        seed,
        base_rate,
        noise,
        spike,
        ..Default::default()
    })
    .unwrap()
}

/// A Wednesday.
const WED: &str = "2026-03-11T00:00:00Z";

#[test]
fn same_seed_same_events() {
    let from = utc("2026-03-11T13:00:00Z");
    let to = from + Duration::minutes(30);
    let a: Vec<SimEvent> = gen_with(7, 5.0, 1.0, None)
        .events_between(from, to)
        .collect();
    let b: Vec<SimEvent> = gen_with(7, 5.0, 1.0, None)
        .events_between(from, to)
        .collect();
    let c: Vec<SimEvent> = gen_with(8, 5.0, 1.0, None)
        .events_between(from, to)
        .collect();
    assert!(a.len() > 1000, "{} events", a.len());
    assert_eq!(a, b);
    assert_ne!(a, c);
    // In time order, inside the range, microsecond timestamps.
    assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(
        a.iter()
            .all(|e| e.at >= from && e.at < to && e.at.timestamp_subsec_nanos() % 1000 == 0)
    );
    // Weighted facts are deterministic too.
    let fa = gen_with(7, 5.0, 1.0, None).weighted_facts(from, to, from, 100);
    let fb = gen_with(7, 5.0, 1.0, None).weighted_facts(from, to, from, 100);
    assert_eq!(fa, fb);
}

#[test]
fn cost_is_tokens_times_price_exactly() {
    let mut g = gen_with(3, 20.0, 1.0, None);
    let from = utc("2026-03-11T12:00:00Z");
    let events: Vec<SimEvent> = g
        .events_between(from, from + Duration::minutes(10))
        .collect();
    assert!(events.len() > 5000);
    let mut models = HashSet::new();
    for e in &events {
        let m = catalog::MODELS.iter().find(|m| m.name == e.model).unwrap();
        let picos = e.input_tokens as i128 * m.input_picos_per_token
            + e.output_tokens as i128 * m.output_picos_per_token;
        assert_eq!(e.cost.picos(), picos, "{e:?}");
        assert!(e.input_tokens >= 1 && e.output_tokens >= 1);
        models.insert(e.model.to_string());
    }
    assert!(models.len() >= 6, "{models:?}");
    // A known case: gpt-4o at $2.50/$10 per million.
    let gpt4o = &catalog::MODELS[catalog::model_index("gpt-4o").unwrap()];
    assert_eq!(request_cost(gpt4o, 1000, 100).to_string(), "0.0035");
    let flash = &catalog::MODELS[catalog::model_index("gemini-1.5-flash").unwrap()];
    assert_eq!(request_cost(flash, 1, 1).to_string(), "0.000000375");
    // Facts carry the same exact cost.
    let f = to_fact(&events[0]);
    assert_eq!(f.agg.cost, events[0].cost);
    assert_eq!(f.agg.requests, 1);
    assert_eq!(f.name(crate::model::Dim::User), events[0].user);
}

#[test]
fn users_are_zipf_skewed_and_tenants_mostly_in_one_region() {
    let mut g = gen_with(11, 50.0, 0.0, None);
    assert_eq!(g.users(), 5000);
    let from = utc("2026-03-11T14:00:00Z");
    let events: Vec<SimEvent> = g
        .events_between(from, from + Duration::minutes(60))
        .collect();
    let mut per_user: HashMap<&str, u64> = HashMap::new();
    for e in &events {
        *per_user.entry(&e.user).or_default() += 1;
    }
    let mut counts: Vec<u64> = per_user.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = counts.iter().take(50).sum();
    let share = top as f64 / events.len() as f64;
    assert!(share > 0.4, "top 1% of users hold {share:.2} of requests");
    assert!(per_user.len() > 1000, "{} distinct users", per_user.len());

    // Each user has one tenant and one region; a tenant is mostly in its home region.
    let mut user_home: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut tenant_regions: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
    for e in &events {
        let prev = user_home.insert(&e.user, (&e.tenant, &e.region));
        assert!(prev.is_none_or(|p| p == (&*e.tenant, &*e.region)));
        *tenant_regions
            .entry(&e.tenant)
            .or_default()
            .entry(&e.region)
            .or_default() += 1;
    }
    assert!(tenant_regions.len() >= 4, "{tenant_regions:?}");
    for (tenant, regions) in &tenant_regions {
        let total: u64 = regions.values().sum();
        let max = regions.values().max().copied().unwrap_or(0);
        let home = catalog::TENANTS
            .iter()
            .find(|t| t.name == *tenant)
            .unwrap()
            .home_region;
        assert_eq!(
            regions.iter().max_by_key(|r| r.1).unwrap().0,
            &catalog::REGIONS[home]
        );
        assert!(max as f64 / total as f64 > 0.7, "{tenant}: {regions:?}");
    }
}

#[test]
fn request_ids_are_unique() {
    let mut g = gen_with(5, 100.0, 1.0, None);
    let from = utc("2026-03-11T14:00:00Z");
    let ids: Vec<String> = g
        .events_between(from, from + Duration::minutes(30))
        .map(|e| e.request_id)
        .collect();
    assert!(ids.len() > 100_000);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
    assert!(
        ids.iter()
            .all(|id| id.starts_with("req_") && id.len() == 20)
    );
    // Another run id, other ids; the same events otherwise.
    let mut h = Generator::new(GeneratorConfig {
        seed: 5,
        base_rate: 100.0,
        run_id: 9,
        ..Default::default()
    })
    .unwrap();
    let other: Vec<SimEvent> = h
        .events_between(from, from + Duration::seconds(10))
        .collect();
    let mut g = gen_with(5, 100.0, 1.0, None);
    let same: Vec<SimEvent> = g
        .events_between(from, from + Duration::seconds(10))
        .collect();
    assert_eq!(other.len(), same.len());
    assert_ne!(other[0].request_id, same[0].request_id);
    assert_eq!(
        (&other[0].user, other[0].cost),
        (&same[0].user, same[0].cost)
    );
}

fn count(g: &mut Generator, from: &str, minutes: i64) -> usize {
    let from = utc(from);
    g.events_between(from, from + Duration::minutes(minutes))
        .count()
}

#[test]
fn nights_are_quieter_than_business_hours() {
    let mut g = gen_with(2, 10.0, 0.0, None);
    let night = count(&mut g, "2026-03-11T03:00:00Z", 60);
    let day = count(&mut g, "2026-03-11T14:00:00Z", 60);
    assert!(
        (night as f64) < 0.4 * day as f64,
        "night {night} vs day {day}"
    );
    let wed = utc(WED);
    assert!(g.rate_at(wed + Duration::hours(3)) < g.rate_at(wed + Duration::hours(14)) * 0.4);
}

#[test]
fn weekends_are_quieter() {
    let mut g = gen_with(2, 10.0, 0.0, None);
    let wed = count(&mut g, "2026-03-11T14:00:00Z", 60);
    let sat = count(&mut g, "2026-03-14T14:00:00Z", 60);
    let ratio = sat as f64 / wed as f64;
    assert!(
        (0.33..0.47).contains(&ratio),
        "saturday / wednesday = {ratio:.2}"
    );
}

#[test]
fn base_rate_is_the_weekly_average() {
    let mut g = gen_with(4, 2.0, 0.0, None);
    let from = utc("2026-03-09T00:00:00Z");
    let n = g.events_between(from, from + Duration::days(7)).count();
    let expected = 2.0 * 7.0 * 86_400.0;
    assert!(
        (n as f64 / expected - 1.0).abs() < 0.01,
        "{n} events vs {expected}"
    );
    // With noise, day totals vary from day to day (baselines are not degenerate).
    let mut g = gen_with(4, 2.0, 1.0, None);
    let days: Vec<usize> = (0..5)
        .map(|d| {
            let f = from + Duration::days(d);
            g.events_between(f, f + Duration::days(1)).count()
        })
        .collect();
    let mean = days.iter().sum::<usize>() as f64 / days.len() as f64;
    let spread = days
        .iter()
        .map(|&d| (d as f64 / mean - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(spread > 0.02, "weekday totals {days:?} are too regular");
}

#[test]
fn flat_shape_ignores_the_clock() {
    let mut g = Generator::new(GeneratorConfig {
        base_rate: 10.0,
        shape: RateShape::Flat,
        ..Default::default()
    })
    .unwrap();
    let night = count(&mut g, "2026-03-14T03:00:00Z", 10);
    let day = count(&mut g, "2026-03-11T14:00:00Z", 10);
    for n in [night, day] {
        assert!(
            (5700..6300).contains(&n),
            "{n} events in 10 minutes at 10/s"
        );
    }
}

#[test]
fn a_spike_goes_through_one_user_and_one_model() {
    let from = utc("2026-03-11T14:00:00Z");
    let spike = SpikeSpec {
        feature: "support_qa".into(),
        factor: 10.0,
        from,
    };
    let mut spiked = gen_with(9, 10.0, 1.0, Some(spike));
    let target = spiked.spike_target().unwrap();
    let (user, model) = (target.user.to_string(), target.model);
    assert_eq!(target.feature, "support_qa");
    assert_eq!(model, "claude-sonnet-4", "the feature's priciest model");
    let mut normal = gen_with(9, 10.0, 1.0, None);
    let window = (from, from + Duration::minutes(10));
    let with: Vec<SimEvent> = spiked
        .events_between(window.0, window.1)
        .filter(|e| e.feature == "support_qa")
        .collect();
    let without: Vec<SimEvent> = normal
        .events_between(window.0, window.1)
        .filter(|e| e.feature == "support_qa")
        .collect();
    let ratio = with.len() as f64 / without.len() as f64;
    assert!((8.5..11.5).contains(&ratio), "request ratio {ratio:.2}");

    let excess_requests = (with.len() - without.len()) as f64;
    let via_target = with
        .iter()
        .filter(|e| e.user == user && e.model == model)
        .count() as f64;
    assert!(
        via_target / excess_requests > 0.9,
        "{via_target} of {excess_requests} excess requests"
    );

    let cost = |v: &[SimEvent]| v.iter().map(|e| e.cost).sum::<Money>();
    let excess_cost = cost(&with) - cost(&without);
    let target_cost: Money = with.iter().filter(|e| e.user == user).map(|e| e.cost).sum();
    assert!(target_cost.as_f64() / excess_cost.as_f64() > 0.9);
    // Before the spike, the user is nobody special.
    let before: Vec<SimEvent> = normal
        .events_between(from - Duration::hours(1), from)
        .collect();
    let theirs = before.iter().filter(|e| e.user == user).count();
    assert!((theirs as f64) < 0.01 * before.len() as f64);
}

#[test]
fn a_spike_changes_nothing_before_it_starts() {
    let from = utc("2026-03-11T14:00:30.5Z");
    let spike = SpikeSpec {
        feature: "chat".into(),
        factor: 5.0,
        from,
    };
    let start = from - Duration::hours(2);
    let a: Vec<SimEvent> = gen_with(1, 5.0, 1.0, Some(spike))
        .events_between(start, from)
        .collect();
    let b: Vec<SimEvent> = gen_with(1, 5.0, 1.0, None)
        .events_between(start, from)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn a_factor_below_one_quietens_the_feature() {
    let from = utc("2026-03-11T14:00:00Z");
    let spike = SpikeSpec {
        feature: "chat".into(),
        factor: 0.1,
        from,
    };
    let mut g = gen_with(1, 20.0, 0.0, Some(spike));
    let events: Vec<SimEvent> = g
        .events_between(from, from + Duration::minutes(10))
        .collect();
    let chat = events.iter().filter(|e| e.feature == "chat").count() as f64;
    let share = chat / events.len() as f64;
    assert!(share < 0.04, "chat share {share:.3}");
}

#[test]
fn unknown_spike_feature_is_an_error_naming_the_features() {
    let spike = SpikeSpec {
        feature: "nope".into(),
        factor: 2.0,
        from: utc(WED),
    };
    let err = Generator::new(GeneratorConfig {
        spike: Some(spike),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"nope\"") && msg.contains("support_qa"),
        "{msg}"
    );
    assert!(
        Generator::new(GeneratorConfig {
            base_rate: f64::NAN,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Generator::new(GeneratorConfig {
            users: 0,
            ..Default::default()
        })
        .is_err()
    );
}

#[test]
fn weighted_facts_stand_for_the_whole_traffic() {
    let from = utc("2026-03-11T14:00:00Z");
    let to = from + Duration::hours(1);
    let mut g = gen_with(6, 40.0, 0.0, None);
    let expected = g.rate_at(from + Duration::minutes(30)) * 3600.0;
    let facts = g.weighted_facts(from, to, from, 200);
    let requests: u64 = facts.iter().map(|f| f.agg.requests).sum();
    assert!(
        (requests as f64 / expected - 1.0).abs() < 0.02,
        "{requests} vs {expected}"
    );
    assert!(
        facts.len() <= 200 + 3 * catalog::FEATURES.len() + 1,
        "{} facts",
        facts.len()
    );
    for f in &facts {
        assert_eq!(f.at, from);
        let k = f.agg.requests;
        assert!(k >= 1 && f.agg.input_tokens >= k && f.agg.output_tokens >= k);
        let m = catalog::MODELS
            .iter()
            .find(|m| m.name == f.names[2])
            .unwrap();
        assert_eq!(
            request_cost(m, f.agg.input_tokens, f.agg.output_tokens),
            f.agg.cost
        );
    }
    // Average cost per request matches individually drawn events.
    let mut g2 = gen_with(6, 40.0, 0.0, None);
    let events: Vec<SimEvent> = g2.events_between(from, to).collect();
    let cpr_events = events.iter().map(|e| e.cost).sum::<Money>().as_f64() / events.len() as f64;
    let cpr_facts = facts.iter().map(|f| f.agg.cost).sum::<Money>().as_f64() / requests as f64;
    assert!(
        (cpr_facts / cpr_events - 1.0).abs() < 0.05,
        "{cpr_facts} vs {cpr_events}"
    );
    // Few requests: one fact per request.
    let mut g3 = gen_with(6, 0.01, 0.0, None);
    let small = g3.weighted_facts(from, to, from, 200);
    assert!(small.iter().all(|f| f.agg.requests == 1));
}
