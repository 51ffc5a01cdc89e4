//! Fixture data for the UI tests: a realistic night on call, and its variations.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::app::drill::{Metric, SortKey, Window};
use crate::app::view::{
    BackfillProgress, Baseline, DrillChart, DrillRow, DrillView, Driver, FeatureRow, Header,
    Overview, RequestRow, Screen, StatusView, TopState,
};
use crate::detect::{Anomaly, Contributor, Severity};
use crate::model::Agg;
use crate::model::{Connection, Dim, TailMode};
use crate::money::Money;

/// Owns what a `Screen` borrows.
pub struct Fixture {
    pub overview: Overview,
    pub status: StatusView,
    pub backfill: Option<BackfillProgress>,
    pub selected: usize,
    pub color: bool,
    pub drill: Option<DrillView>,
    pub top: TopState,
}

impl Fixture {
    pub fn screen(&self) -> Screen<'_> {
        Screen {
            overview: &self.overview,
            status: &self.status,
            backfill: self.backfill,
            selected: self.selected,
            color: self.color,
            help: None,
            help_scroll: 0,
            anomaly_log: None,
            drill: self.drill.as_ref(),
            top: &self.top,
            window: self.drill.as_ref().map(|d| d.window).unwrap_or_default(),
            alerts: None,
        }
    }
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 14, 3, 12, 7)
        .single()
        .unwrap_or_default()
}

/// Dollars and cents as exact money: usd("41.20").
pub fn usd(s: &str) -> Money {
    s.parse().unwrap_or(Money::ZERO)
}

/// 24 hourly values in micro-dollars: a quiet night, a day curve, and `last`
/// multiplied into the final two hours.
fn day_curve(peak_micros: u64, last_factor: u64) -> Vec<u64> {
    const SHAPE: [u64; 24] = [
        30, 22, 18, 15, 14, 16, 25, 45, 70, 88, 96, 100, 97, 94, 90, 86, 80, 72, 60, 52, 45, 40,
        34, 31,
    ];
    let mut v: Vec<u64> = SHAPE.iter().map(|s| peak_micros * s / 100).collect();
    for x in v.iter_mut().skip(22) {
        *x *= last_factor;
    }
    v
}

fn feature(
    name: &str,
    (hour, today, week): (&str, &str, &str),
    requests_today: u64,
    (per_req, per_1k): (Option<&str>, Option<&str>),
    change: Option<f64>,
    spark: Vec<u64>,
    anomalous: bool,
) -> FeatureRow {
    FeatureRow {
        name: name.into(),
        this_hour: usd(hour),
        today: usd(today),
        last_7d: usd(week),
        requests_today,
        cost_per_request: per_req.map(usd),
        cost_per_1k_tokens: per_1k.map(usd),
        change_vs_7d: change,
        spark_24h: spark,
        anomalous,
        ..FeatureRow::default()
    }
}

fn support_spike() -> Anomaly {
    Anomaly {
        rule: "spike_60m".into(),
        dim: Dim::Feature,
        name: "support_qa".into(),
        window: "60m".into(),
        observed: usd("41.20"),
        expected: usd("9.80"),
        expected_low: Some(usd("7.10")),
        expected_high: Some(usd("12.40")),
        ratio: 4.2,
        z: Some(9.5),
        severity: Severity::Critical,
        baseline: "same hour of week, 4 weeks".into(),
        since: Some(now() - Duration::minutes(31)),
        contributors: vec![
            Contributor {
                dim: Dim::Model,
                name: "gpt-4.1".into(),
                cost: usd("38.70"),
                share: 0.94,
            },
            Contributor {
                dim: Dim::User,
                name: "alice@example.com".into(),
                cost: usd("30.10"),
                share: 0.73,
            },
            Contributor {
                dim: Dim::Tenant,
                name: "acme-corp".into(),
                cost: usd("29.00"),
                share: 0.70,
            },
        ],
        message: "support_qa jumped 320% in the last 60m ($41 vs typical $9.80)".into(),
    }
}

/// A realistic 3 a.m. overview: one feature spiking, budget on track.
pub fn realistic() -> Fixture {
    let now = now();
    let features = vec![
        feature(
            "support_qa",
            ("41.20", "187.40", "1062.18"),
            6_214,
            (Some("0.0301"), Some("0.0048")),
            Some(3.12),
            day_curve(9_000_000, 5),
            true,
        ),
        feature(
            "code_review_bot",
            ("9.85", "58.12", "1420.55"),
            1_310,
            (Some("0.148"), Some("0.0102")),
            Some(-0.18),
            day_curve(24_000_000, 1),
            false,
        ),
        feature(
            "agent_planner",
            ("6.02", "41.90", "402.11"),
            890,
            (Some("0.062"), Some("0.0071")),
            Some(0.64),
            day_curve(5_000_000, 2),
            false,
        ),
        feature(
            "summarize_email",
            ("3.10", "22.47", "318.90"),
            18_234,
            (Some("0.0016"), Some("0.0009")),
            Some(0.07),
            day_curve(4_000_000, 1),
            false,
        ),
        feature(
            "search_rerank",
            ("0.82", "6.11", "71.34"),
            42_118,
            (Some("0.0002"), Some("0.0001")),
            Some(-0.41),
            day_curve(1_000_000, 1),
            false,
        ),
        feature(
            "translate_ui",
            ("0", "1.92", "1.92"),
            312,
            (Some("0.0062"), Some("0.0011")),
            None,
            {
                let mut v = vec![0; 21];
                v.extend([400_000, 900_000, 620_000]);
                v
            },
            false,
        ),
        feature(
            "embeddings_backfill",
            ("0", "0", "512.00"),
            0,
            (Some("0.0004"), Some("0.0001")),
            Some(-1.0),
            vec![0; 24],
            false,
        ),
    ];
    let top_drivers = vec![
        Driver {
            dim: Dim::Feature,
            name: "code_review_bot".into(),
            cost: usd("1420.55"),
            share: 0.372,
            computed_requests: 0,
        },
        Driver {
            dim: Dim::Model,
            name: "claude-sonnet-4".into(),
            cost: usd("1198.40"),
            share: 0.314,
            computed_requests: 0,
        },
        Driver {
            dim: Dim::Feature,
            name: "support_qa".into(),
            cost: usd("1062.18"),
            share: 0.278,
            computed_requests: 0,
        },
        Driver {
            dim: Dim::User,
            name: "batch-indexer@svc".into(),
            cost: usd("512.00"),
            share: 0.134,
            computed_requests: 0,
        },
        Driver {
            dim: Dim::Tenant,
            name: "acme-corp".into(),
            cost: usd("488.20"),
            share: 0.128,
            computed_requests: 0,
        },
    ];
    let trend_cents = [
        14, 15, 15, 14, 13, 0, 0, 14, 15, 16, 15, 14, 14, 13, 13, 14, 15, 15, 16, 16, 15, 14, 0,
        15, 16, 17, 18, 21, 26, 31,
    ];
    let cost_per_request_30d = trend_cents
        .iter()
        .map(|&c| {
            if c == 0 {
                None
            } else {
                Some(Money::from_micros(c * 1000))
            }
        })
        .collect();
    let overview = Overview {
        now,
        header: Header {
            month: "2026-11".into(),
            month_to_date: usd("8412.37"),
            daily_burn: usd("640.61"),
            forecast: usd("19218.30"),
            forecast_low: None,
            forecast_high: None,
            budget_exhausted_on: None,
            forecast_method: "run rate".into(),
            budget: Some(Money::from_dollars(20_000)),
            days_elapsed: 13.13,
            days_in_month: 30,
            time_zone: "UTC".into(),
            loading: false,
        },
        features,
        top_drivers,
        cost_per_request_30d,
        anomalies: vec![support_spike()],
        week_total: usd("3817.10"),
        pending: None,
    };
    let status = StatusView {
        endpoint: "db.internal:5432/billing".into(),
        connection: Connection::Live,
        mode: TailMode::TxWatermark,
        last_refresh: Some(now - Duration::seconds(2)),
        events_per_sec: 41.3,
        rows_read: 1_284_113,
        rejected: 0,
        rejected_by_reason: Vec::new(),
        watermark_lag_secs: Some(1),
        paused: false,
        alerts: Vec::new(),
        alerts_firing: None,
        absent: Vec::new(),
        shared_alerts: Vec::new(),
        source_note: None,
        replay_lag: None,
        keys: Default::default(),
    };
    Fixture {
        overview,
        status,
        backfill: None,
        selected: 0,
        color: true,
        drill: None,
        top: TopState::Closed,
    }
}

/// The realistic overview with a noisier status: best-effort tail, rejected rows,
/// a lagging watermark, paused.
pub fn busy_status() -> Fixture {
    let mut f = realistic();
    f.status.mode = TailMode::IdOverlap;
    f.status.rejected = 37;
    f.status.watermark_lag_secs = Some(42);
    f.status.paused = true;
    f.selected = 2;
    f
}

/// A fresh install: nothing recorded, no budget, still connecting.
pub fn empty() -> Fixture {
    let overview = Overview {
        now: now(),
        header: Header {
            month: "2026-11".into(),
            days_elapsed: 13.13,
            days_in_month: 30,
            time_zone: "UTC".into(),
            forecast_method: "run rate".into(),
            ..Header::default()
        },
        ..Overview::default()
    };
    let status = StatusView {
        endpoint: "localhost:5432/burnrate".into(),
        ..StatusView::default()
    };
    Fixture {
        overview,
        status,
        backfill: None,
        selected: 0,
        color: true,
        drill: None,
        top: TopState::Closed,
    }
}

/// The realistic overview against a budget it has already blown.
pub fn over_budget() -> Fixture {
    let mut f = realistic();
    f.overview.header.budget = Some(Money::from_dollars(7_500));
    f
}

/// The forecast with its 80% interval crossing the budget, and the day the budget
/// runs out.
pub fn forecast_interval() -> Fixture {
    let mut f = realistic();
    let h = &mut f.overview.header;
    h.forecast_low = Some(usd("18110.00"));
    h.forecast_high = Some(usd("21640.00"));
    h.budget_exhausted_on = chrono::NaiveDate::from_ymd_opt(2026, 11, 29);
    h.forecast_method = "weekday rhythm".into();
    f
}

/// Several anomalies at once, one of them with a hostile name.
pub fn many_anomalies() -> Fixture {
    let mut f = realistic();
    let mut spend = support_spike();
    spend.rule = "today_vs_7d".into();
    spend.dim = Dim::Feature;
    spend.name = "agent_planner".into();
    spend.window = "today".into();
    spend.observed = usd("41.90");
    spend.expected = usd("25.55");
    spend.ratio = 1.64;
    spend.severity = Severity::Warning;
    spend.expected_low = None;
    spend.expected_high = None;
    spend.since = None;
    spend.contributors = vec![Contributor {
        dim: Dim::Model,
        name: "o3".into(),
        cost: usd("33.00"),
        share: 0.79,
    }];
    spend.message = "agent_planner is 64% above its 7-day average today ($41.90 vs $25.55)".into();
    let mut new = support_spike();
    new.rule = "spike_5m".into();
    new.dim = Dim::User;
    new.name = HOSTILE.into();
    new.window = "5m".into();
    new.observed = usd("3.10");
    new.expected = Money::ZERO;
    new.ratio = 999.0;
    new.contributors = vec![Contributor {
        dim: Dim::Feature,
        name: HOSTILE.into(),
        cost: usd("3.10"),
        share: 1.0,
    }];
    new.message = format!("{HOSTILE} spent $3.10 in the last 5m with no history");
    new.severity = Severity::Info;
    new.expected_low = None;
    new.expected_high = None;
    f.overview.anomalies.push(spend);
    f.overview.anomalies.push(new);
    f
}

/// Nine anomalies at once, while alerts run: 18 alerts firing in the shared state
/// (some held after their anomaly cleared), Slack off, no desktop session bus.
pub fn nine_anomalies() -> Fixture {
    let mut f = many_anomalies();
    let more: Vec<Anomaly> = (0..6)
        .map(|i| {
            let mut a = support_spike();
            a.name = format!("feature_{i}");
            a.message = format!("feature_{i} jumped 320% in the last 60m ($41 vs typical $9.80)");
            a.severity = Severity::Warning;
            a
        })
        .collect();
    f.overview.anomalies.extend(more);
    let summary = crate::app::alerts::AlertsSummary {
        firing: 18,
        pending: 2,
        shared: true,
        slack: "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)".into(),
        desktop: Some(
            "desktop notifications unavailable: no D-Bus session bus (I/O error: No such file \
             or directory (os error 2))"
                .into(),
        ),
        ..Default::default()
    };
    f.status.alerts = summary.parts(now());
    f.status.alerts_firing = Some(summary.firing);
    f
}

/// The source is down: the numbers on screen are minutes old.
pub fn disconnected() -> Fixture {
    let mut f = realistic();
    let lost = now() - Duration::seconds(252);
    f.status.connection = Connection::Disconnected {
        error: "could not connect to server: Connection refused\n\tIs the server running on host \"db.internal\" \
                (10.0.3.7) and accepting\n\tTCP/IP connections on port 5432?"
            .into(),
        since: lost,
    };
    f.status.last_refresh = Some(lost - Duration::seconds(3));
    f.status.events_per_sec = 0.0;
    f
}

/// History still loading.
/// Loading history with a budget configured, as the App has it: the header knows
/// the calendar and the budget, no figures; 27 of 142 six-hour chunks read.
pub fn backfilling() -> Fixture {
    let mut f = empty();
    let cal = crate::calendar::Calendar::default();
    f.overview.header = Header::before_history(&cal, now(), Some(usd("20000")));
    f.status.connection = Connection::Backfilling {
        done_steps: 27,
        total_steps: 142,
        loaded_from: None,
    };
    f.status.rows_read = 402_551;
    f.status.events_per_sec = 0.0;
    f.backfill = Some(BackfillProgress {
        done_steps: 27,
        total_steps: 142,
        history_days: 35,
        loaded_from: None,
        month_so_far: None,
    });
    f
}

/// The realistic night while the history loads, newest first, as the App has it
/// after `done_steps` six-hour chunks: the history is in from `loaded_from` on,
/// of 35 days from Oct 10 03:00 (the default retention). Figures reaching further back wait (their cells
/// say "…"), detection waits for all of it, the 30-day trend has the days in.
fn loading_from(loaded_from: DateTime<Utc>, done_steps: u64) -> Fixture {
    let mut f = realistic();
    // What the App derives, from the store's calendar and retention.
    let store = crate::store::Store::new(crate::store::StoreConfig::default(), now());
    let pending = crate::app::view::Pending::at(
        &store,
        now(),
        crate::app::progress::Coverage::From(loaded_from),
    )
    .expect("partial");
    let days = f.overview.cost_per_request_30d.len();
    f.overview.cost_per_request_30d[..days - pending.trend_days].fill(None);
    f.overview.anomalies.clear();
    for r in &mut f.overview.features {
        r.anomalous = false;
    }
    f.overview.header.forecast_low = None;
    f.overview.header.forecast_high = None;
    f.overview.pending = Some(pending);
    f.status.connection = Connection::Backfilling {
        done_steps,
        total_steps: 142,
        loaded_from: Some(loaded_from),
    };
    // The first chunk's arrival: the tail starts once the history is in.
    f.status.last_refresh = Some(now() - Duration::seconds(4));
    f.status.events_per_sec = 0.0;
    f.backfill = Some(BackfillProgress {
        done_steps,
        total_steps: 142,
        history_days: 35,
        loaded_from: Some(loaded_from),
        month_so_far: None,
    });
    f
}

/// The first chunk is in (from 03:00 today): this hour shows, the rest waits.
pub fn first_chunk() -> Fixture {
    loading_from(Utc.with_ymd_and_hms(2026, 11, 14, 3, 0, 0).unwrap(), 1)
}

/// Five chunks in (from 03:00 yesterday): this hour, today, the last 24 hours.
pub fn mid_backfill() -> Fixture {
    loading_from(Utc.with_ymd_and_hms(2026, 11, 13, 3, 0, 0).unwrap(), 5)
}

/// Four weeks in (from Oct 17 03:00): the month and the week too; the forecast
/// and detection still wait for the last days.
pub fn late_backfill() -> Fixture {
    loading_from(Utc.with_ymd_and_hms(2026, 10, 17, 3, 0, 0).unwrap(), 113)
}

/// The realistic overview under NO_COLOR.
pub fn no_color() -> Fixture {
    let mut f = realistic();
    f.color = false;
    f
}

/// Clears the screen, retitles the terminal, then reverses what follows.
pub const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07evil\u{202E}gpj.exe";

/// Database text at its worst: escape sequences, bidi overrides, zero-width
/// characters, very long and very wide names, in every place a name appears.
pub fn hostile() -> Fixture {
    let mut f = many_anomalies();
    let names = [
        HOSTILE.to_string(),
        "adm\u{200B}in\u{FEFF}\u{2066}x\u{2069}".to_string(),
        "x".repeat(500),
        "翻訳サービス翻訳サービス翻訳サービス".to_string(),
        "tab\there\r\nnewline\x7f\u{9b}31mC1".to_string(),
        String::new(),
        "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\".to_string(),
    ];
    for (row, name) in f.overview.features.iter_mut().zip(names) {
        row.name = name;
    }
    for d in &mut f.overview.top_drivers {
        d.name = format!("{HOSTILE}{}", "y".repeat(80));
    }
    f.status.endpoint = format!("\x1b[31m{HOSTILE}");
    f.status.connection = Connection::Disconnected {
        error: format!("{HOSTILE}\n\x1b[5mboom"),
        since: now(),
    };
    f.overview.header.time_zone = "\x1b[2JEurope/Berlin\u{202E}".into();
    f.overview.header.forecast_method = "run\x1b[Hrate\u{200B}".into();
    f
}

/// Every number at an extreme: overflow-sized money, zero and negative budgets,
/// NaN and infinite ratios, huge counts, a selection past the end.
pub fn extreme() -> Fixture {
    let mut f = realistic();
    let huge = Money::from_picos(i128::MAX);
    let h = &mut f.overview.header;
    h.month_to_date = huge;
    h.daily_burn = Money::from_picos(i128::MIN);
    h.forecast = huge;
    h.budget = Some(Money::ZERO);
    h.days_elapsed = f64::NAN;
    h.days_in_month = u32::MAX;
    h.month = "".into();
    for r in &mut f.overview.features {
        r.this_hour = huge;
        r.today = Money::from_picos(i128::MIN);
        r.requests_today = u64::MAX;
        r.change_vs_7d = Some(f64::INFINITY);
        r.spark_24h = vec![u64::MAX; 500];
    }
    f.overview.features[1].change_vs_7d = Some(f64::NAN);
    f.overview.features[2].spark_24h.clear();
    for d in &mut f.overview.top_drivers {
        d.share = f64::NAN;
        d.cost = huge;
    }
    f.overview.cost_per_request_30d = vec![Some(huge), Some(Money::from_picos(i128::MIN)), None];
    for a in &mut f.overview.anomalies {
        a.ratio = f64::NAN;
        a.observed = huge;
        for c in &mut a.contributors {
            c.share = f64::NEG_INFINITY;
        }
    }
    f.overview.anomalies = f
        .overview
        .anomalies
        .iter()
        .cycle()
        .take(50)
        .cloned()
        .collect();
    f.status.events_per_sec = f64::INFINITY;
    f.status.rows_read = u64::MAX;
    f.status.rejected = u64::MAX;
    f.status.watermark_lag_secs = Some(i64::MAX);
    f.status.last_refresh = Some(DateTime::<Utc>::MIN_UTC);
    f.overview.now = DateTime::<Utc>::MAX_UTC;
    f.backfill = None;
    f.selected = usize::MAX;
    f
}

/// The extreme numbers while loading, with an impossible progress.
pub fn extreme_backfill() -> Fixture {
    let mut f = extreme();
    f.backfill = Some(BackfillProgress {
        done_steps: u64::MAX,
        total_steps: 0,
        history_days: 0,
        loaded_from: None,
        month_so_far: None,
    });
    f.status.connection = Connection::Backfilling {
        done_steps: u64::MAX,
        total_steps: 1,
        loaded_from: Some(DateTime::<Utc>::MIN_UTC),
    };
    f
}

/// Users behind the support_qa spike, over 24 hours, one of them far ahead; 400
/// rows so only a page is drawn.
pub fn drill_users() -> Fixture {
    let mut f = realistic();
    let mut rows: Vec<DrillRow> = (0..400u64)
        .map(|i| {
            let cost = 4_000_000_000_000i128 / (i as i128 + 1); // $4 / (i+1)
            let requests = 120 + 7 * (400 - i);
            let agg = Agg {
                cost: Money::from_picos(cost),
                requests,
                input_tokens: requests * 900,
                output_tokens: requests * 150,
                computed: 0,
            };
            let prev = Agg {
                cost: Money::from_picos(cost * 2 / 3),
                ..agg
            };
            DrillRow {
                name: format!("user_{:04}", (i * 7919) % 10_000),
                agg,
                prev: Some(prev),
                value: Some(agg.cost.as_f64()),
                share: Some(agg.cost.as_f64() / 26.0),
                change: Some(0.5),
                spark: day_curve(1000 + 10 * (400 - i), if i == 0 { 6 } else { 1 }),
                ..DrillRow::default()
            }
        })
        .collect();
    rows[0].name = "user_4812".into();
    rows[0].change = Some(4.2);
    rows[3].prev = Some(Agg::default());
    rows[3].change = None;
    let parent = rows.iter().fold(Agg::default(), |mut t, r| {
        t.add(&r.agg);
        t
    });
    f.drill = Some(DrillView {
        path: vec![(Dim::Feature, "support_qa".into())],
        dim: Dim::User,
        window: Window::Day,
        window_start: now() - Duration::hours(23),
        metric: Metric::Cost,
        sort: SortKey::Metric,
        reverse: false,
        filter: String::new(),
        editing: false,
        parent,
        baseline: Baseline::PreviousWindow,
        order: (0..rows.len() as u32).collect(),
        rows,
        selected: 1,
        offset: 0,
        chart: Some(DrillChart {
            name: "user_7919".into(),
            metric: Metric::Cost,
            hourly_48h: [day_curve(4_000, 1), day_curve(4_000, 3)].concat(),
            daily_30d: (0..30).map(|d| 50_000 + 3_000 * (d % 7)).collect(),
        }),
        metric_ready: Some(Metric::Cost),
        building: false,
        ..DrillView::default()
    });
    f
}

/// The users table filtered while typing, sorted by change, reversed, scrolled.
pub fn drill_filtered() -> Fixture {
    let mut f = drill_users();
    if let Some(d) = f.drill.as_mut() {
        d.filter = "user_0".into();
        d.editing = true;
        d.sort = SortKey::Change;
        d.reverse = true;
        d.metric = Metric::CostPerRequest;
        d.order = d
            .order
            .iter()
            .copied()
            .filter(|&i| d.rows[i as usize].name.starts_with("user_0"))
            .collect();
        d.offset = 5;
        d.selected = 7;
    }
    f
}

/// The last level with the most expensive requests listed.
pub fn drill_top() -> Fixture {
    let mut f = drill_users();
    let path = vec![
        (Dim::Feature, "support_qa".to_string()),
        (Dim::User, "user_4812".to_string()),
        (Dim::Model, "gpt-4o".to_string()),
    ];
    if let Some(d) = f.drill.as_mut() {
        d.path = path[..2].to_vec();
        d.dim = Dim::Model;
        d.rows.truncate(3);
        d.rows[0].name = "gpt-4o".into();
        d.rows[1].name = "gpt-4o-mini".into();
        d.rows[2].name = "claude-sonnet".into();
        d.order = vec![0, 1, 2];
        d.selected = 0;
    }
    let rows = (0..12)
        .map(|i| RequestRow {
            at: now() - Duration::seconds(37 * i),
            request_id: format!("req_{:016x}", 0x5eed_0000_u64 + i as u64 * 7777),
            feature: "support_qa".into(),
            user: "user_4812".into(),
            model: "gpt-4o".into(),
            tenant: None,
            region: None,
            input_tokens: 24_000 - 1000 * i as u64,
            output_tokens: 1_200,
            cost: Money::from_micros(132_000 - 4_000 * i),
        })
        .collect();
    f.top = TopState::Ready {
        path,
        since: None,
        rows,
    };
    f
}

/// Waiting for the top requests: the spinner.
pub fn drill_loading() -> Fixture {
    let mut f = drill_users();
    f.top = TopState::Loading {
        path: vec![
            (Dim::Feature, "support_qa".to_string()),
            (Dim::User, "user_4812".to_string()),
        ],
        since: None,
        frame: 3,
    };
    f
}

/// Hostile names in the path, the rows, the chart and the requests.
pub fn drill_hostile() -> Fixture {
    let mut f = drill_top();
    if let Some(d) = f.drill.as_mut() {
        d.path[0].1 = HOSTILE.into();
        d.rows[0].name = format!("{HOSTILE}{}", "z".repeat(300));
        d.rows[1].name = "\x1b]8;;https://evil.example/\x1b\\click me".into();
        if let Some(c) = d.chart.as_mut() {
            c.name = HOSTILE.into();
        }
        d.filter = HOSTILE.into();
    }
    if let TopState::Ready { rows, .. } = &mut f.top {
        rows[0].request_id = HOSTILE.into();
        rows[1].user = "\x1b[2Jwipe".into();
    }
    f
}

/// A table that logs no cost for some requests: their costs came from the price
/// list, and the feature, driver and today columns say so.
pub fn priced() -> Fixture {
    let mut f = realistic();
    let features = &mut f.overview.features;
    features[0].computed_hour = 120;
    features[0].computed_today = 1_830;
    features[0].computed_7d = 9_410;
    features[3].computed_7d = 2_002;
    if let Some(d) = f.overview.top_drivers.get_mut(2) {
        d.computed_requests = 9_410;
    }
    f
}

/// The users table with some users' costs computed from the price list.
pub fn drill_priced() -> Fixture {
    let mut f = drill_users();
    if let Some(d) = f.drill.as_mut() {
        for i in [0, 2, 5] {
            d.rows[i].agg.computed = 40 + i as u64;
        }
        d.parent.computed = d.rows.iter().map(|r| r.agg.computed).sum();
    }
    f
}

/// The seed article's table: no user column, so the users level is one "(none)"
/// row, and the breadcrumb says why.
pub fn drill_absent() -> Fixture {
    let mut f = drill_users();
    f.status.absent = vec![Dim::User, Dim::Model, Dim::Tenant, Dim::Region];
    if let Some(d) = f.drill.as_mut() {
        d.rows.truncate(1);
        d.rows[0].name = "(none)".into();
        d.rows[0].key = "(none)".into();
        d.order = vec![0];
    }
    f
}

/// Every fixture, for the sweeps.
pub fn all() -> Vec<(&'static str, Fixture)> {
    vec![
        ("realistic", realistic()),
        ("busy_status", busy_status()),
        ("empty", empty()),
        ("over_budget", over_budget()),
        ("many_anomalies", many_anomalies()),
        ("nine_anomalies", nine_anomalies()),
        ("disconnected", disconnected()),
        ("backfilling", backfilling()),
        ("first_chunk", first_chunk()),
        ("mid_backfill", mid_backfill()),
        ("late_backfill", late_backfill()),
        ("no_color", no_color()),
        ("hostile", hostile()),
        ("extreme", extreme()),
        ("extreme_backfill", extreme_backfill()),
        ("drill_users", drill_users()),
        ("drill_filtered", drill_filtered()),
        ("drill_top", drill_top()),
        ("drill_loading", drill_loading()),
        ("drill_hostile", drill_hostile()),
        ("priced", priced()),
        ("drill_priced", drill_priced()),
        ("drill_absent", drill_absent()),
    ]
}
