//! The built-in synthetic stream of `burnrate demo`: no database.
//!
//! [`run_demo`] sends, like the PostgreSQL source: a `Status` (endpoint "demo",
//! `TailMode::Demo`, `Backfilling` with progress), the history as `Backfill`
//! batches, newest first, `Status` `Live`, then a `Tail` batch of individual events every ~250 ms.
//!
//! The history covers what the store keeps (`Store::history_start`: 35 days, or the
//! whole month if longer) at the same rate shape as the live stream, so live
//! traffic is not itself an anomaly: the generator's base rate is calibrated so that
//! the rate at start-up is exactly `rate`. Drawing every event of 35 days at 40
//! events/s (~100M) would take minutes, so history hours are drawn as about 240
//! weighted samples per hour (`Generator::weighted_facts`), and the last
//! `minute_retention` minutes as about 120 samples per minute, stamped at minute
//! starts so the store fills its minute buckets for short-window detection.
//!
//! `spike_after` the start, a runaway begins on `spike_feature` (rate x
//! `spike_factor`, the excess from one user through one model), so the anomaly pane
//! lights up within the first minute.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::top::RecentRequests;
use crate::calendar::Calendar;
use crate::cli::DemoArgs;
use crate::model::{Connection, FactBatch, RequestRow, SourceMsg, SourceStatus, TailMode};
use crate::money::Money;
use crate::sim::{
    Generator, GeneratorConfig, RateShape, SimError, SimEvent, SpikeSpec, SpikeTarget,
};
use crate::store::{Store, StoreConfig};

pub const DEMO_ENDPOINT: &str = "demo";
/// Weighted samples per history hour and per recent minute.
const HOUR_SAMPLES: usize = 240;
const MINUTE_SAMPLES: usize = 120;
/// History hours per backfill batch, and minutes per batch in the minute range.
const HOURS_PER_STEP: i64 = 24;
const MINUTES_PER_STEP: i64 = 30;
/// How often live events are sent.
pub const LIVE_INTERVAL: StdDuration = StdDuration::from_millis(250);

/// What `burnrate demo` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    pub seed: u64,
    /// Live events per second at start-up (the history follows the same shape).
    pub rate: f64,
    /// Time from start to the runaway's start.
    pub spike_after: StdDuration,
    pub spike_feature: String,
    /// Multiplier of the feature's request rate during the runaway.
    pub spike_factor: f64,
    /// Size of the user population.
    pub users: u32,
    /// A pause after each history step (zero: none), as a slow database gives.
    pub history_pace: StdDuration,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            seed: 42,
            rate: 40.0,
            spike_after: StdDuration::from_secs(10),
            spike_feature: "support_qa".into(),
            spike_factor: 25.0,
            history_pace: StdDuration::ZERO,
            users: 2_000,
        }
    }
}

impl From<&DemoArgs> for DemoSettings {
    fn from(a: &DemoArgs) -> Self {
        DemoSettings {
            seed: a.seed,
            rate: a.rate,
            spike_after: StdDuration::from_secs(a.spike_after),
            history_pace: a.history_pace.unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// One backfill batch: a time range drawn at hour or minute resolution.
#[derive(Debug, Clone, Copy)]
struct Step {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    minutes: bool,
}

/// The demo's data without the clock and the channel: history batches and live
/// batches for any instants, so tests can run a minute of demo in no time.
#[derive(Debug, Clone)]
pub struct DemoStream {
    generator: Generator,
    store_cfg: StoreConfig,
    start: DateTime<Utc>,
    steps: Vec<Step>,
}

impl DemoStream {
    pub fn new(
        settings: &DemoSettings,
        store_cfg: StoreConfig,
        start: DateTime<Utc>,
    ) -> Result<DemoStream, SimError> {
        let spike_from =
            start + Duration::from_std(settings.spike_after).unwrap_or(Duration::days(36_500));
        let mut generator = Generator::new(GeneratorConfig {
            seed: settings.seed,
            users: settings.users,
            base_rate: 1.0,
            shape: RateShape::Seasonal,
            noise: 1.0,
            spike: Some(SpikeSpec {
                feature: settings.spike_feature.clone(),
                factor: settings.spike_factor,
                from: spike_from,
            }),
            run_id: 0,
        })?;
        if !(settings.rate.is_finite() && settings.rate >= 0.0) {
            return Err(SimError::InvalidRate {
                what: "the demo rate",
                value: settings.rate,
            });
        }
        // Calibrate: the rate at start-up is `rate`, whatever the time of day.
        let shape_now = generator.normal_rate_at(start);
        let base = if shape_now > 0.0 {
            settings.rate / shape_now
        } else {
            settings.rate
        };
        generator.set_base_rate(base)?;
        let steps = plan(&store_cfg, start);
        Ok(DemoStream {
            generator,
            store_cfg,
            start,
            steps,
        })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Who the runaway goes through, and from when.
    pub fn spike_target(&self) -> Option<SpikeTarget<'_>> {
        self.generator.spike_target()
    }

    /// The calibrated base rate: average events per second over a week (the rate at
    /// start-up is `rate`, which is above or below this with the time of day).
    pub fn average_rate(&self) -> f64 {
        self.generator.base_rate()
    }

    /// Expected spend of 30 days of normal traffic (no runaway) at this stream's
    /// scale, e.g. to give the demo a budget it lands near. An estimate.
    pub fn expected_monthly_spend(&self) -> Money {
        let per_s = self.generator.base_rate() * self.generator.mean_cost_per_request();
        Money::from_f64_lossy(per_s * 30.0 * 86_400.0)
    }

    /// Number of history batches.
    pub fn history_steps(&self) -> usize {
        self.steps.len()
    }

    /// Where history step `step` starts.
    pub fn history_step_start(&self, step: usize) -> Option<DateTime<Utc>> {
        self.steps.get(step).map(|s| s.from)
    }

    /// History batch `step` (0-based; each step covers its own time range).
    pub fn history_batch(&mut self, step: usize) -> FactBatch {
        let Some(s) = self.steps.get(step).copied() else {
            return FactBatch::default();
        };
        let cal = self.store_cfg.calendar;
        let mut facts = Vec::new();
        if s.minutes {
            let mut m = Calendar::minute_index(s.from);
            while Calendar::minute_start(m) < s.to {
                let at = Calendar::minute_start(m);
                let (from, to) = (at.max(s.from), Calendar::minute_start(m + 1).min(s.to));
                facts.extend(self.generator.weighted_facts(from, to, at, MINUTE_SAMPLES));
                m += 1;
            }
        } else {
            let mut h = cal.hour_index(s.from);
            while cal.hour_start(h) < s.to {
                let at = cal.hour_start(h);
                let (from, to) = (at.max(s.from), cal.hour_start(h + 1).min(s.to));
                facts.extend(self.generator.weighted_facts(from, to, at, HOUR_SAMPLES));
                h += 1;
            }
        }
        let rows = facts.iter().map(|f| f.agg.requests).sum();
        FactBatch {
            coarse: Vec::new(),
            hour_users: Vec::new(),
            hour_pairs: Vec::new(),
            facts,
            rows,
            rejected: Default::default(),
        }
    }

    /// Every event of `[from, to)` as single-row facts.
    pub fn live(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> FactBatch {
        self.live_recorded(from, to, None)
    }

    /// `live`, also keeping each event in `recent` for "top requests".
    pub fn live_recorded(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        recent: Option<&RecentRequests>,
    ) -> FactBatch {
        let events: Vec<SimEvent> = self.generator.events_between(from, to).collect();
        if let Some(recent) = recent {
            recent.push(events.iter().map(|e| RequestRow {
                at: e.at,
                request_id: e.request_id.clone(),
                feature: e.feature.to_string(),
                user: e.user.clone(),
                model: e.model.to_string(),
                tenant: Some(e.tenant.to_string()),
                region: Some(e.region.to_string()),
                input_tokens: e.input_tokens,
                output_tokens: e.output_tokens,
                cost: e.cost,
            }));
        }
        let facts: Vec<_> = events.into_iter().map(SimEvent::into_fact).collect();
        FactBatch::of_rows(facts)
    }
}

/// History steps: hour-resolution days from the store's history start up to the
/// minute range, then minute-resolution half hours up to `start`.
fn plan(cfg: &StoreConfig, start: DateTime<Utc>) -> Vec<Step> {
    let cal = cfg.calendar;
    let begin = Store::history_start(cfg, start);
    let minute_from =
        Calendar::minute_start(Calendar::minute_index(start) - cfg.minute_retention.max(0))
            .max(begin);
    let mut steps = Vec::new();
    let mut t = begin;
    while t < minute_from {
        let next = cal
            .hour_start(cal.hour_index(t) + HOURS_PER_STEP)
            .min(minute_from);
        steps.push(Step {
            from: t,
            to: next,
            minutes: false,
        });
        t = next;
    }
    while t < start {
        let next = Calendar::minute_start(Calendar::minute_index(t) + MINUTES_PER_STEP).min(start);
        steps.push(Step {
            from: t,
            to: next,
            minutes: true,
        });
        t = next;
    }
    steps
}

fn status(connection: Connection) -> SourceMsg {
    SourceMsg::Status(SourceStatus {
        endpoint: DEMO_ENDPOINT.to_string(),
        connection,
        mode: TailMode::Demo,
        watermark_lag_secs: None,
        absent: Vec::new(),
        note: None,
        replay_lag: None,
    })
}

/// Sends unless shutdown comes first; false when the demo should stop (shutdown,
/// or the receiver is gone).
async fn send<S: Future<Output = ()>>(
    tx: &mpsc::Sender<SourceMsg>,
    msg: SourceMsg,
    shutdown: Pin<&mut S>,
) -> bool {
    tokio::select! {
        biased;
        _ = shutdown => false,
        r = tx.send(msg) => r.is_ok(),
    }
}

/// Runs the demo source until `shutdown` completes or the receiver is dropped.
/// Fails only on invalid settings (unknown spike feature, negative rate).
pub async fn run_demo<S>(
    settings: DemoSettings,
    store_cfg: StoreConfig,
    tx: mpsc::Sender<SourceMsg>,
    shutdown: S,
) -> Result<(), SimError>
where
    S: Future<Output = ()>,
{
    run_demo_recorded(settings, store_cfg, tx, shutdown, None).await
}

/// `run_demo`, keeping the live events in `recent` for "top requests".
pub async fn run_demo_recorded<S>(
    settings: DemoSettings,
    store_cfg: StoreConfig,
    tx: mpsc::Sender<SourceMsg>,
    shutdown: S,
    recent: Option<RecentRequests>,
) -> Result<(), SimError>
where
    S: Future<Output = ()>,
{
    let started = std::time::Instant::now();
    let mut stream = DemoStream::new(&settings, store_cfg, Utc::now())?;
    tokio::pin!(shutdown);
    let total = stream.history_steps() as u64;
    if !send(
        &tx,
        status(Connection::Backfilling {
            done_steps: 0,
            total_steps: total,
            loaded_from: None,
        }),
        shutdown.as_mut(),
    )
    .await
    {
        return Ok(());
    }
    let mut facts = 0usize;
    // Newest first, as the PostgreSQL source reads: the dashboard shows the recent
    // hours while the older ones load.
    for (sent, step) in (0..stream.history_steps()).rev().enumerate() {
        let batch = stream.history_batch(step);
        facts += batch.facts.len();
        let done = step == 0;
        if !send(&tx, SourceMsg::Backfill { batch, done }, shutdown.as_mut()).await {
            return Ok(());
        }
        let progress = Connection::Backfilling {
            done_steps: sent as u64 + 1,
            total_steps: total,
            loaded_from: stream.history_step_start(step),
        };
        if !send(&tx, status(progress), shutdown.as_mut()).await {
            return Ok(());
        }
        if !settings.history_pace.is_zero() {
            tokio::select! {
                _ = shutdown.as_mut() => return Ok(()),
                _ = tokio::time::sleep(settings.history_pace) => {}
            }
        }
    }
    if total == 0
        && !send(
            &tx,
            SourceMsg::Backfill {
                batch: FactBatch::default(),
                done: true,
            },
            shutdown.as_mut(),
        )
        .await
    {
        return Ok(());
    }
    tracing::info!(
        facts,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo history sent"
    );
    if !send(&tx, status(Connection::Live), shutdown.as_mut()).await {
        return Ok(());
    }

    let mut last = stream.start();
    let mut tick = tokio::time::interval(LIVE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return Ok(()),
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        if now <= last {
            continue;
        }
        let batch = stream.live_recorded(last, now, recent.as_ref());
        last = now;
        if !send(
            &tx,
            SourceMsg::Tail {
                batch,
                polled_at: now,
            },
            shutdown.as_mut(),
        )
        .await
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectConfig;
    use crate::detect::{DetectParams, DetectorState, detect, evaluate};
    use crate::model::Dim;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn load_history(stream: &mut DemoStream, store: &mut Store) -> (usize, u64) {
        let (mut facts, mut rows) = (0, 0);
        for step in 0..stream.history_steps() {
            let b = stream.history_batch(step);
            facts += b.facts.len();
            rows += b.rows;
            store.apply(&b, stream.start());
        }
        (facts, rows)
    }

    /// Spend of `feature` in the trailing 5 minutes, and its typical 5 minutes: the
    /// median of the same hour on the previous 7 days, pro rata (as detect's
    /// spike rule does), and the median 5-minute window of the 3 hours before `start`.
    fn five_minutes(
        store: &Store,
        feature: &str,
        now: DateTime<Utc>,
        start: DateTime<Utc>,
    ) -> (Money, Money, Money) {
        let id = store.lookup(Dim::Feature, feature).unwrap();
        let m = Calendar::minute_index(now);
        let observed = store
            .minutes_by_dim(Dim::Feature, m - 4, m)
            .get(&id)
            .map(|a| a.cost)
            .unwrap_or_default();
        let mut days: Vec<Money> = (1..=7)
            .map(|i| {
                let h = store.hour_index(now - Duration::days(i));
                store.hourly_series(Dim::Feature, Some(id), h, h)[0].cost
            })
            .collect();
        days.sort();
        let by_days = Money::from_picos(days[3].picos() * 5 / 60);
        let s = Calendar::minute_index(start);
        let mut windows: Vec<Money> = (1..=35)
            .map(|k| {
                let end = s - 5 * (k - 1) - 1;
                store
                    .minutes_by_dim(Dim::Feature, end - 4, end)
                    .get(&id)
                    .map(|a| a.cost)
                    .unwrap_or_default()
            })
            .collect();
        windows.sort();
        (observed, by_days, windows[windows.len() / 2])
    }

    #[test]
    fn the_runaway_shows_in_the_5_minute_window_within_40_seconds() {
        // A weekday afternoon and a weekday night: the start-up rate is 40/s either way.
        for start in [utc("2026-03-11T14:10:07Z"), utc("2026-03-12T03:27:13Z")] {
            let settings = DemoSettings {
                spike_after: StdDuration::from_secs(20),
                ..DemoSettings::default()
            };
            let cfg = StoreConfig {
                retention_hours: 9 * 24,
                ..Default::default()
            };
            let mut stream = DemoStream::new(&settings, cfg, start).unwrap();
            let target = stream.spike_target().unwrap();
            let (user, model) = (target.user.to_string(), target.model);
            assert_eq!(target.from, start + Duration::seconds(20));
            let mut store = Store::new(cfg, start);
            load_history(&mut stream, &mut store);

            let mut t = start;
            let step = Duration::milliseconds(250);
            // The dashboard's detector, evaluated on every 2-second refresh.
            let params = DetectParams::from(&DetectConfig::default());
            let mut state = DetectorState::default();
            let mut shown_at = None;
            while t < start + Duration::seconds(60) {
                let next = t + step;
                let batch = stream.live(t, next);
                store.apply(&batch, next);
                t = next;
                let at = t - start;
                if at.num_milliseconds() % 2000 == 0 {
                    let found = evaluate(&store, t, &params, &mut state);
                    let spike = found
                        .iter()
                        .find(|a| a.name == "support_qa" && a.rule.starts_with("spike_"));
                    if let Some(spike) = spike
                        && shown_at.is_none()
                    {
                        println!("+{}s: {}", at.num_seconds(), spike.message);
                        assert!(at > Duration::seconds(20), "before the runaway: {spike:?}");
                        assert!(
                            spike.contributors.iter().any(|c| c.name == user),
                            "{spike:?}"
                        );
                        shown_at = Some(at);
                    }
                }
                if at == Duration::seconds(19)
                    || at == Duration::seconds(50)
                    || at == Duration::seconds(60)
                {
                    let (observed, by_days, recent) = five_minutes(&store, "support_qa", t, start);
                    let r_days = observed.as_f64() / by_days.as_f64();
                    let r_recent = observed.as_f64() / recent.as_f64();
                    println!(
                        "{start} +{}s: support_qa 5m {} vs typical {} (7 days) / {} (last 3 h): {r_days:.1}x / {r_recent:.1}x",
                        at.num_seconds(),
                        observed.display_usd(),
                        by_days.display_usd(),
                        recent.display_usd()
                    );
                    if at == Duration::seconds(19) {
                        assert!(
                            r_days < 1.8 && r_recent < 1.8,
                            "live traffic alone looks anomalous"
                        );
                    } else {
                        // 30 s into the runaway: well above detect's 3x spike ratio.
                        assert!(r_days > 3.0 && r_recent > 3.0, "the runaway is not visible");
                        assert!(
                            (observed - by_days).as_f64() > 1.0,
                            "excess below detect's $1 minimum"
                        );
                    }
                }
            }
            // Shown once it has held for two evaluation minutes: within 40 seconds
            // of the runaway's start, or at the next minute after.
            let shown_at = shown_at.expect("the runaway never showed");
            assert!(shown_at <= Duration::seconds(60), "{shown_at}");
            // One-shot detection (snapshot) says the same at the end.
            let found = detect(&store, t, &params);
            assert!(
                found
                    .iter()
                    .any(|a| a.name == "support_qa" && a.rule.starts_with("spike_")),
                "{found:#?}"
            );
            // The contributors: one user and one model carry most of the excess.
            let id = store.lookup(Dim::Feature, "support_qa").unwrap();
            let h = store.hour_index(t);
            let scope = [(Dim::Feature, id)];
            let top = |dim: Dim| {
                let rows = store.by_dim_filtered(dim, &scope, h..=h);
                let total: Money = rows.values().map(|a| a.cost).sum();
                let (best, agg) = rows.iter().max_by_key(|(_, a)| a.cost).unwrap();
                (
                    store.name(dim, *best).to_string(),
                    agg.cost.as_f64() / total.as_f64(),
                )
            };
            let (top_user, user_share) = top(Dim::User);
            assert_eq!(top_user, user);
            assert!(user_share > 0.5, "top user share {user_share:.2}");
            let (top_model, _) = top(Dim::Model);
            assert_eq!(top_model, model);
        }
    }

    #[test]
    fn history_is_a_bounded_number_of_facts_covering_the_retention() {
        let start = utc("2026-03-11T14:10:07Z");
        let cfg = StoreConfig::default();
        let began = std::time::Instant::now();
        let mut stream = DemoStream::new(&DemoSettings::default(), cfg, start).unwrap();
        let mut store = Store::new(cfg, start);
        let (facts, rows) = load_history(&mut stream, &mut store);
        println!(
            "demo history: {} steps, {facts} facts for {rows} requests, generated and stored in {:?}",
            stream.history_steps(),
            began.elapsed()
        );
        let hours = (start - Store::history_start(&cfg, start)).num_hours() as usize;
        assert!(
            facts <= hours * (HOUR_SAMPLES + 40) + 180 * (MINUTE_SAMPLES + 40),
            "{facts} facts"
        );
        // Tens of millions of requests stand behind them.
        assert!(rows > 30_000_000, "{rows} requests");
        assert_eq!(
            store.oldest_hour(),
            Some(store.hour_index(Store::history_start(&cfg, start)))
        );
        // Every minute of the last three hours is at minute resolution.
        let m = Calendar::minute_index(start);
        for k in 1..=180 {
            assert!(
                store.minutes_total(m - k, m - k).requests > 500,
                "minute -{k}"
            );
        }
        assert_eq!(store.intake().rows, rows);
    }

    #[test]
    fn expected_monthly_spend_matches_the_history() {
        let start = utc("2026-03-11T14:10:07Z");
        let cfg = StoreConfig::default();
        let mut stream = DemoStream::new(&DemoSettings::default(), cfg, start).unwrap();
        let mut store = Store::new(cfg, start);
        load_history(&mut stream, &mut store);
        // Four whole weeks before today, scaled to 30 days.
        let today = store.hour_index(cfg.calendar.day_start(start));
        let four_weeks = store.total(today - 28 * 24..=today - 1).cost;
        let actual = four_weeks.as_f64() * 30.0 / 28.0;
        let estimate = stream.expected_monthly_spend().as_f64();
        println!(
            "30 days at the demo's scale: {} (estimate {}), average {:.1} events/s",
            Money::from_f64_lossy(actual).display_usd(),
            stream.expected_monthly_spend().display_usd(),
            stream.average_rate()
        );
        assert!(
            (estimate / actual - 1.0).abs() < 0.1,
            "estimate {estimate} vs {actual}"
        );
    }

    #[test]
    fn history_days_vary_like_real_traffic() {
        let start = utc("2026-03-11T14:10:07Z");
        let cfg = StoreConfig {
            retention_hours: 15 * 24,
            ..Default::default()
        };
        let mut stream = DemoStream::new(&DemoSettings::default(), cfg, start).unwrap();
        let mut store = Store::new(cfg, start);
        load_history(&mut stream, &mut store);
        // The 14:00 hour of the previous weekdays: similar, but not identical.
        let costs: Vec<f64> = (1..=14)
            .map(|d| start - Duration::days(d))
            .filter(|t| {
                !matches!(
                    chrono::Datelike::weekday(t),
                    chrono::Weekday::Sat | chrono::Weekday::Sun
                )
            })
            .map(|t| {
                let h = store.hour_index(t);
                store.hourly_series(Dim::Feature, None, h, h)[0]
                    .cost
                    .as_f64()
            })
            .collect();
        let mean = costs.iter().sum::<f64>() / costs.len() as f64;
        let cv = (costs.iter().map(|c| (c / mean - 1.0).powi(2)).sum::<f64>() / costs.len() as f64)
            .sqrt();
        assert!(
            (0.02..0.3).contains(&cv),
            "weekday 14:00 costs {costs:?}: cv {cv:.3}"
        );
    }

    #[tokio::test]
    async fn run_demo_reports_backfills_streams_and_stops_promptly() {
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let cfg = StoreConfig {
            retention_hours: 48,
            ..Default::default()
        };
        let settings = DemoSettings {
            spike_after: StdDuration::from_millis(300),
            ..Default::default()
        };
        let task = tokio::spawn(run_demo(settings, cfg, tx, async move {
            let _ = stop_rx.await;
        }));
        let mut statuses = Vec::new();
        let mut backfill_done = false;
        let mut tails = 0;
        let mut live_rows = 0;
        while tails < 4 {
            match tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap()
            {
                SourceMsg::Status(s) => {
                    assert_eq!(
                        (s.endpoint.as_str(), s.mode),
                        (DEMO_ENDPOINT, TailMode::Demo)
                    );
                    statuses.push(s.connection);
                }
                SourceMsg::Backfill { done, .. } => {
                    assert!(!backfill_done);
                    backfill_done = done;
                }
                // The demo's history is its own month: it sends no sum first.
                SourceMsg::MonthSoFar { .. } => panic!("the demo sent a month's sum"),
                SourceMsg::Tail { batch, .. } => {
                    assert!(backfill_done, "tail before the end of the backfill");
                    live_rows += batch.rows;
                    tails += 1;
                }
            }
        }
        assert!(matches!(
            statuses[0],
            Connection::Backfilling { done_steps: 0, .. }
        ));
        assert_eq!(statuses.last(), Some(&Connection::Live));
        assert!(live_rows > 0);
        stop_tx.send(()).unwrap();
        let ended = tokio::time::timeout(StdDuration::from_millis(500), task).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "did not stop promptly: {ended:?}"
        );
    }

    #[tokio::test]
    async fn run_demo_stops_when_the_receiver_goes_away() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let cfg = StoreConfig {
            retention_hours: 24,
            ..Default::default()
        };
        let r = tokio::time::timeout(
            StdDuration::from_secs(5),
            run_demo(
                DemoSettings::default(),
                cfg,
                tx,
                std::future::pending::<()>(),
            ),
        )
        .await;
        assert!(matches!(r, Ok(Ok(()))));
    }

    #[test]
    fn bad_settings_are_errors() {
        let start = utc("2026-03-11T14:10:07Z");
        let bad_feature = DemoSettings {
            spike_feature: "nope".into(),
            ..Default::default()
        };
        assert!(matches!(
            DemoStream::new(&bad_feature, StoreConfig::default(), start),
            Err(SimError::UnknownFeature { .. })
        ));
        let bad_rate = DemoSettings {
            rate: -1.0,
            ..Default::default()
        };
        assert!(DemoStream::new(&bad_rate, StoreConfig::default(), start).is_err());
    }
}
