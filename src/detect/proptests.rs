//! Property-style tests: detection and forecast on hostile series (empty, zero,
//! constant, huge, negative credits, random mixes, gaps) never panic and never
//! produce NaN or infinity. A small hand-rolled generator keeps this dependency-free
//! and deterministic (no proptest: the cases are few and structured, and a failure
//! prints the case's seed and shape to rerun).

use chrono::{DateTime, Duration, Utc};

use super::stats::SplitMix;
use super::{DetectParams, DetectorState, detect, evaluate, month_forecast};
use crate::calendar::Calendar;
use crate::model::{Agg, Fact, FactBatch};
use crate::money::Money;
use crate::store::{Store, StoreConfig};

#[derive(Debug, Clone, Copy)]
enum Shape {
    Empty,
    Zero,
    Constant,
    Huge,
    Credits,
    Random,
    Sparse,
    OnlyToday,
}

const SHAPES: [Shape; 8] = [
    Shape::Empty,
    Shape::Zero,
    Shape::Constant,
    Shape::Huge,
    Shape::Credits,
    Shape::Random,
    Shape::Sparse,
    Shape::OnlyToday,
];

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cost(shape: Shape, rng: &mut SplitMix) -> Money {
    match shape {
        Shape::Zero => Money::ZERO,
        Shape::Constant => Money::from_dollars(3),
        // A quadrillion dollars an hour: far beyond any bill, still exact.
        Shape::Huge => Money::from_dollars(1_000_000_000_000_000),
        Shape::Credits => Money::from_picos(-(rng.below(5_000_000) as i128) * 1_000_000),
        Shape::Random | Shape::Sparse | Shape::OnlyToday | Shape::Empty => {
            let sign = if rng.below(5) == 0 { -1 } else { 1 };
            Money::from_picos(sign * rng.below(1 << 40) as i128 * 1_000)
        }
    }
}

fn store_of(shape: Shape, now: DateTime<Utc>, seed: u64, cal: Calendar) -> Store {
    let cfg = StoreConfig {
        calendar: cal,
        ..StoreConfig::default()
    };
    let mut s = Store::new(cfg, now);
    let mut rng = SplitMix::new(seed);
    let mut facts = Vec::new();
    if !matches!(shape, Shape::Empty) {
        let hours = if matches!(shape, Shape::OnlyToday) {
            6
        } else {
            35 * 24
        };
        for h in 0..hours {
            let at = now - Duration::minutes(h * 60 + 1);
            if matches!(shape, Shape::Sparse) && rng.below(40) != 0 {
                continue;
            }
            // Minute detail for the last three hours, an hour fact before.
            let n = if h < 3 { 60 } else { 1 };
            for m in 0..n {
                let feature = ["chat", "support_qa", "(none)", ""][rng.below(4)];
                let user = format!("u{}", rng.below(7));
                let model = ["gpt-4o", "new-model"][rng.below(2)];
                let c = cost(shape, &mut rng);
                let tokens = rng.below(3) as u64 * 1000;
                facts.push(Fact {
                    at: at - Duration::minutes(m),
                    names: [feature.into(), user, model.into(), "t".into(), "r".into()],
                    agg: Agg {
                        cost: c,
                        requests: rng.below(3) as u64,
                        input_tokens: tokens,
                        output_tokens: tokens / 10,
                        computed: 0,
                    },
                });
            }
        }
    }
    s.apply(&FactBatch::of_rows(facts), now);
    s
}

fn check(shape: Shape, now: DateTime<Utc>, seed: u64, cal: Calendar) {
    let s = store_of(shape, now, seed, cal);
    let ctx = format!("{shape:?} at {now} seed {seed} in {}", cal.tz().name());
    let mut p = DetectParams::default();
    for budget in [
        None,
        Some(Money::ZERO),
        Some(Money::from_dollars(1)),
        Some(Money::from_dollars(-5)),
    ] {
        p.limits.monthly = budget;
        p.limits.users.insert("u1".into(), Money::from_dollars(1));
        p.limits.tenants.insert("t".into(), Money::from_dollars(10));
        p.limits
            .features
            .insert("chat".into(), Money::from_dollars(2));
        let mut found = detect(&s, now, &p);
        let mut state = DetectorState::default();
        found.extend(evaluate(&s, now, &p, &mut state));
        found.extend(evaluate(&s, now + Duration::minutes(1), &p, &mut state));
        for a in &found {
            assert!(a.ratio.is_finite() && a.ratio >= 0.0, "{ctx}: {a:?}");
            assert!(a.z.is_none_or(f64::is_finite), "{ctx}: {a:?}");
            assert!(
                a.contributors.iter().all(|c| c.share.is_finite()),
                "{ctx}: {a:?}"
            );
            assert!(
                !a.message.contains("NaN") && !a.message.contains("inf"),
                "{ctx}: {a:?}"
            );
            serde_json::to_string(a).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
        let f = month_forecast(&s, now, budget);
        assert!(f.days_elapsed.is_finite(), "{ctx}: {f:?}");
        if let (Some(lo), Some(hi)) = (f.forecast_low, f.forecast_high) {
            assert!(lo <= f.forecast && f.forecast <= hi, "{ctx}: {f:?}");
        }
        serde_json::to_string(&f).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

#[test]
fn detection_and_forecast_survive_hostile_series() {
    let berlin = Calendar::new(chrono_tz::Europe::Berlin);
    let nows = [
        utc("2026-11-28T15:30:20Z"),
        utc("2026-11-01T00:00:00Z"),
        utc("2026-03-29T01:30:00Z"), // Berlin's spring-forward night
        utc("2026-02-28T23:59:59Z"),
    ];
    let mut cases = 0;
    for (i, now) in nows.iter().enumerate() {
        for shape in SHAPES {
            for cal in [Calendar::default(), berlin] {
                check(shape, *now, 17 + i as u64, cal);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, nows.len() * SHAPES.len() * 2);
}

#[test]
fn random_series_over_many_seeds() {
    for seed in 0..12 {
        let mut rng = SplitMix::new(seed);
        let now = utc("2026-11-20T00:00:00Z") + Duration::minutes(rng.below(20_000) as i64);
        let shape = SHAPES[rng.below(SHAPES.len())];
        check(shape, now, seed, Calendar::default());
    }
}
