//! Backtest of burnrate's detection and forecast over simulated months.
//!
//! cargo run --release --example backtest            # the full run of BACKTEST.md
//! cargo run --release --example backtest -- --quick # one seed, fewer trials
//! cargo run --release --example backtest -- --quick --spikes-only
//! cargo run --release --example backtest -- --forecast-only   # clean months only
//! (add --trials to list every runaway trial with the rule that showed it first;
//! --detail-hours 48 keeps older hours coarse, as `snapshot` and `check` do)
//!
//! Scenarios (see `burnrate::backtest`): clean months; injected runaways of 2x to
//! 10x on a feature (through one user and one model, as `simulate --spike` does);
//! a runaway user on a big feature; a 3-week drift; quiet weekends; a holiday; a
//! new feature appearing; recurring jobs (an hourly digest and a nightly batch).
//! `--scenario <text>` runs only the month scans whose name contains the text.
//! Every number is deterministic per seed.

use burnrate::backtest::{Injection, World, generator_config, scan, spike_trial};
use burnrate::detect::{Anomaly, DetectParams};
use burnrate::model::Dim;
use burnrate::sim::recurring::RecurringJob;
use chrono::{DateTime, Duration, NaiveDate, Utc};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--detail-hours N`: keep hours older than N coarse, as `snapshot` and `check` do.
    if let Some(n) = std::env::args()
        .skip_while(|a| a != "--detail-hours")
        .nth(1)
        .and_then(|n| n.parse::<i64>().ok())
    {
        burnrate::backtest::set_store_config(burnrate::store::StoreConfig {
            detail_hours: Some(n),
            ..Default::default()
        });
        println!("(store: hours older than {n} kept coarse)");
    }
    let seeds: Vec<u64> = if quick { vec![1] } else { vec![1, 2, 3] };
    let rate = 5.0;
    let p = DetectParams::default();
    let month = utc("2026-03-01T00:00:00Z");
    let month_end = utc("2026-04-01T00:00:00Z");
    let none = |_: &Anomaly| false;

    // ---- month scans: false alarms and forecast error ----
    struct Row {
        scenario: &'static str,
        weeks: f64,
        false_alarms: usize,
        info: usize,
        by_rule: std::collections::BTreeMap<String, usize>,
        detected: Option<String>,
        examples: Vec<String>,
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut fc: Vec<(u32, f64, f64)> = Vec::new();
    let mut covered: Vec<(u32, bool)> = Vec::new();
    let drift_from = utc("2026-03-06T00:00:00Z");
    let scenarios: Vec<(&'static str, Vec<Injection>)> = vec![
        ("clean", vec![]),
        (
            "quiet weekends (40%)",
            vec![Injection::QuietWeekends { factor: 0.4 }],
        ),
        (
            "holiday (Tue 17 Mar at 20%)",
            vec![Injection::Holiday {
                date: NaiveDate::from_ymd_opt(2026, 3, 17).unwrap(),
                factor: 0.2,
            }],
        ),
        (
            "new feature (from 12 Mar, like summarize)",
            vec![Injection::NewFeature {
                name: "new_feature".into(),
                like: "summarize".into(),
                from: utc("2026-03-12T09:00:00Z"),
                factor: 1.0,
            }],
        ),
        (
            "3-week drift (chat to 1.6x)",
            vec![Injection::Drift {
                feature: "chat".into(),
                from: drift_from,
                days: 21.0,
                to_factor: 1.6,
            }],
        ),
        (
            "recurring jobs (hourly digest, nightly batch)",
            vec![
                Injection::Recurring(RecurringJob::hourly_digest()),
                Injection::Recurring(RecurringJob::nightly_batch()),
            ],
        ),
    ];
    // `--scenario <text>`: only the month scans whose name contains it.
    let only: Option<String> = std::env::args().skip_while(|a| a != "--scenario").nth(1);
    let spikes_only = std::env::args().any(|a| a == "--spikes-only");
    let forecast_only = std::env::args().any(|a| a == "--forecast-only");
    for (name, injections) in scenarios
        .iter()
        .filter(|_| !spikes_only)
        .filter(|(_, i)| !forecast_only || i.is_empty())
        .filter(|(n, _)| only.as_deref().is_none_or(|o| n.contains(o)))
    {
        let mut weeks = 0.0;
        let mut fa = 0;
        let mut info = 0;
        let mut by_rule = std::collections::BTreeMap::new();
        let mut detected = None;
        let mut examples = Vec::new();
        for &seed in &seeds {
            let started = std::time::Instant::now();
            let drift = injections
                .iter()
                .any(|i| matches!(i, Injection::Drift { .. }));
            let expected = |a: &Anomaly| {
                drift && a.rule == "drift" && (a.name == "chat" || a.name == "all features")
            };
            let mut w = World::new(
                generator_config(seed, rate, None),
                month,
                28,
                injections.clone(),
            )
            .unwrap();
            let s = scan(
                &mut w,
                month_end,
                Duration::minutes(5),
                &p,
                if drift { &expected } else { &none },
            );
            weeks += s.weeks;
            fa += s.false_alarms();
            info += s.unexpected_info();
            for e in s.unexpected() {
                *by_rule
                    .entry(format!("{} ({})", e.rule, e.severity.name()))
                    .or_insert(0) += 1;
            }
            if let Some(e) = s.detected()
                && detected.is_none()
            {
                detected = Some(format!(
                    "day {:.1} of the drift (seed {seed})",
                    (e.at - drift_from).num_minutes() as f64 / 1440.0
                ));
            }
            // Every paging episode of a recurring scenario (they are what it is
            // about), else the first three.
            let all = injections
                .iter()
                .any(|i| matches!(i, Injection::Recurring(_)));
            for e in s
                .unexpected()
                .filter(|e| e.severity >= burnrate::detect::Severity::Warning)
                .take(if all { usize::MAX } else { 3 })
            {
                examples.push(format!(
                    "seed {seed} {}: {}",
                    e.at.format("%a %d %H:%M"),
                    e.message
                ));
            }
            if injections.is_empty() {
                fc.extend(s.forecast.at_days.iter().copied());
                covered.extend(s.forecast.covered.iter().copied());
            }
            eprintln!(
                "{name} seed {seed}: {} false alarms, {:.0}s",
                s.false_alarms(),
                started.elapsed().as_secs_f64()
            );
        }
        rows.push(Row {
            scenario: name,
            weeks,
            false_alarms: fa,
            info,
            by_rule,
            detected,
            examples,
        });
    }

    // ---- runaways: recall within 2 five-minute evaluations (10 minutes) ----
    let features = [
        "support_qa",
        "summarize",
        "code_review",
        "translate",
        "doc_qa_rag",
    ];
    let factors = [2.0, 3.0, 5.0, 10.0];
    let mut trials = Vec::new();
    // `--scenario` runs month scans only.
    let trial_seeds: &[u64] = if only.is_some() { &[] } else { &seeds };
    for &seed in trial_seeds {
        let mut w = World::new(generator_config(seed, rate, None), month, 28, vec![]).unwrap();
        // Injection times every 29 hours 13 minutes: all hours of day and weekdays.
        let n = if quick { 8 } else { 20 };
        for k in 0..n {
            w.advance(month + Duration::minutes(k * (29 * 60 + 13)) + Duration::hours(2));
            let feature = features[(k as usize + seed as usize) % features.len()];
            for &factor in &factors {
                trials.push(spike_trial(&w, feature, factor, &p, 30).unwrap());
            }
        }
        // A runaway user: one user adds 40% to chat (the biggest feature).
        eprintln!("seed {seed}: spike trials done");
    }
    let mut runaway = Vec::new();
    for &seed in trial_seeds {
        let mut w = World::new(generator_config(seed, rate, None), month, 28, vec![]).unwrap();
        for k in 0..(if quick { 4 } else { 10 }) {
            w.advance(month + Duration::minutes(k * (41 * 60 + 7)) + Duration::hours(1));
            runaway.push(spike_trial(&w, "chat", 1.4, &p, 60).unwrap());
        }
    }

    // ---- report ----
    println!(
        "## Runaways on a feature (evaluated every minute; caught = an anomaly on the feature or its user)\n"
    );
    println!(
        "| factor | trials | caught <= 10 min (2 x 5-min evaluations) | caught <= 30 min | median latency | user named | material (>= $1 excess in 10 min) caught <= 10 min |"
    );
    println!("|---|---|---|---|---|---|---|");
    let floor = p.min_excess.as_f64();
    for &factor in &factors {
        let t: Vec<_> = trials.iter().filter(|t| t.factor == factor).collect();
        let material: Vec<_> = t.iter().filter(|t| t.excess_10m >= floor).collect();
        let material_caught = material
            .iter()
            .filter(|t| t.latency_min.is_some_and(|l| l <= 10))
            .count();
        let within = |m: i64| {
            t.iter()
                .filter(|t| t.latency_min.is_some_and(|l| l <= m))
                .count()
        };
        let lat: Vec<f64> = t
            .iter()
            .filter_map(|t| t.latency_min.map(|l| l as f64))
            .collect();
        let named = t.iter().filter(|t| t.user_named).count();
        println!(
            "| {factor}x | {} | {} ({:.0}%) | {} ({:.0}%) | {:.0} min | {}/{} | {}/{} ({:.0}%) |",
            t.len(),
            within(10),
            100.0 * within(10) as f64 / t.len() as f64,
            within(30),
            100.0 * within(30) as f64 / t.len() as f64,
            median(lat),
            named,
            t.iter().filter(|t| t.latency_min.is_some()).count(),
            material_caught,
            material.len(),
            100.0 * material_caught as f64 / material.len().max(1) as f64
        );
    }
    let caught = |m: i64| {
        runaway
            .iter()
            .filter(|t| t.latency_min.is_some_and(|l| l <= m))
            .count()
    };
    println!(
        "| runaway user (+40% of chat via one user) | {} | {} | {} (<= 60 min) | {:.0} min | {}/{} | - |",
        runaway.len(),
        caught(10),
        caught(60),
        median(
            runaway
                .iter()
                .filter_map(|t| t.latency_min.map(|l| l as f64))
                .collect()
        ),
        runaway.iter().filter(|t| t.user_named).count(),
        runaway.iter().filter(|t| t.latency_min.is_some()).count()
    );
    // Which rule showed each runaway of 3x and more first, when within 10 minutes.
    let mut first_rules = std::collections::BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.factor >= 3.0 && t.latency_min.is_some_and(|l| l <= 10))
    {
        let rule = t.first_rule.clone().unwrap_or_default();
        let rule = if t.by_one_user {
            format!("{rule} (carried by one user)")
        } else {
            rule
        };
        *first_rules.entry(rule).or_insert(0) += 1;
    }
    println!("\nfirst shown by (3x and more, within 10 min): {first_rules:?}");
    if std::env::args().any(|a| a == "--trials") {
        for t in &trials {
            println!(
                "trial: {}x on {} at {} (excess ${:.2} in 10 min): {:?} min, {}{}",
                t.factor,
                t.feature,
                t.at.format("%a %d %H:%M"),
                t.excess_10m,
                t.latency_min,
                t.first_rule.as_deref().unwrap_or("-"),
                if t.by_one_user {
                    " (carried by one user)"
                } else {
                    ""
                }
            );
        }
    }
    for t in trials
        .iter()
        .filter(|t| t.factor >= 3.0 && t.latency_min.is_none_or(|l| l > 10))
    {
        println!(
            "\nlate: {}x on {} at {} (excess ${:.2} in 10 min): {:?} min, {}",
            t.factor,
            t.feature,
            t.at.format("%a %d %H:%M"),
            t.excess_10m,
            t.latency_min,
            t.first_message.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = trials
        .iter()
        .find(|t| t.factor == 3.0 && t.latency_min.is_some())
    {
        println!("\nexample: {}", t.first_message.as_deref().unwrap_or(""));
    }

    println!(
        "\n## Month scans (one-shot `detect` every 5 minutes, March 2026, {} seed(s))\n",
        seeds.len()
    );
    println!(
        "| scenario | simulated weeks | false alarms (warning/critical) | per week | info lines (not paging) | injected anomaly found |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {} | {:.2} | {} | {} |",
            r.scenario,
            r.weeks,
            r.false_alarms,
            r.false_alarms as f64 / r.weeks,
            r.info,
            r.detected.clone().unwrap_or_else(|| "-".into())
        );
    }
    println!();
    for r in &rows {
        println!(
            "- {}: unexpected episodes by rule {:?}",
            r.scenario, r.by_rule
        );
    }
    for r in &rows {
        for e in &r.examples {
            println!("\n- {} false alarm: {e}", r.scenario);
        }
    }

    println!("\n## Month-end forecast, clean months: median absolute percentage error\n");
    println!(
        "| days elapsed | burnrate (weekday rhythm) | seed formula (MTD / days x 30) | actual inside the 80% interval |"
    );
    println!("|---|---|---|---|");
    for d in [7u32, 14, 21] {
        let ours: Vec<f64> = fc.iter().filter(|x| x.0 == d).map(|x| x.1).collect();
        let seed: Vec<f64> = fc.iter().filter(|x| x.0 == d).map(|x| x.2).collect();
        let cov: Vec<bool> = covered.iter().filter(|x| x.0 == d).map(|x| x.1).collect();
        println!(
            "| {d} | {:.1}% | {:.1}% | {}/{} |",
            100.0 * median(ours),
            100.0 * median(seed),
            cov.iter().filter(|c| **c).count(),
            cov.len()
        );
    }
    let _ = Dim::Feature;
}
