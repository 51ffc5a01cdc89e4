//! The anomaly rules. Each is a pure function of the store at an instant; the only
//! memory is [`DetectorState`] (the pending state of the fast rules), passed in and
//! out explicitly.
//!
//! - spikes per feature, model and user over the trailing 5, 15 and 60 minutes, in
//!   log space against a robust baseline (median and MAD of the same window at the
//!   same hour of the week, else of the day, else the last 24 hours);
//! - a user's share of a feature jumping (agent loops), unpriced usage;
//! - today against the previous 7 days at the same time of day, and EWMA drift;
//! - the seed article's four alert conditions (daily average, daily budget pace,
//!   quotas, forecast over budget) and per-feature budgets.

use std::collections::{BTreeMap, HashMap};

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::stats::{Robust, ewma_chart, ln_cost, quantile};
use super::{Anomaly, Contributor, Severity, month_forecast, sort_anomalies};
use crate::calendar::Calendar;
use crate::config::{Config, DetectConfig};
use crate::model::{Agg, Dim};
use crate::money::Money;
use crate::store::{NameId, Store};

/// Budgets and quotas, from `[budget]` and `[quota]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    pub monthly: Option<Money>,
    pub features: BTreeMap<String, Money>,
    pub tenants: BTreeMap<String, Money>,
    pub users: BTreeMap<String, Money>,
    /// Share of a quota or feature budget that warns (0.8).
    pub warn_at: f64,
    /// Forecast above the budget by more than this share alerts (0.10).
    pub forecast_over: f64,
    /// The day's total above monthly budget / days in month alerts.
    pub daily_pace: bool,
}

/// Thresholds, from `[detect]` (and `[budget]`, `[quota]`) in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectParams {
    pub today_ratio: f64,
    /// The 5-minute spike ratio.
    pub spike_ratio: f64,
    pub min_excess: Money,
    /// Contributors listed per anomaly, per dimension.
    pub contributors: usize,
    pub spike_ratio_15m: f64,
    pub spike_ratio_60m: f64,
    pub spike_z: f64,
    pub today_z: f64,
    pub mad_floor: f64,
    pub pending: u32,
    pub runaway_min_excess: Money,
    pub runaway_share: f64,
    pub runaway_request_ratio: f64,
    pub runaway_min_requests: f64,
    pub daily_average_ratio: f64,
    pub drift_lambda: f64,
    pub drift_sigmas: f64,
    pub drift_min_ratio: f64,
    pub limits: Limits,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams::from(&DetectConfig::default())
    }
}

impl From<&DetectConfig> for DetectParams {
    fn from(c: &DetectConfig) -> Self {
        DetectParams {
            today_ratio: c.today_vs_week_ratio,
            spike_ratio: c.spike_ratio,
            min_excess: c.min_excess_usd,
            contributors: 3,
            spike_ratio_15m: c.spike_ratio_15m,
            spike_ratio_60m: c.spike_ratio_60m,
            spike_z: c.spike_z,
            today_z: c.today_z,
            mad_floor: c.mad_floor,
            pending: c.pending_evaluations,
            runaway_min_excess: c.runaway_min_excess_usd,
            runaway_share: c.runaway_share,
            runaway_request_ratio: c.runaway_request_ratio,
            runaway_min_requests: c.runaway_min_requests,
            daily_average_ratio: c.daily_average_ratio,
            drift_lambda: c.drift_lambda,
            drift_sigmas: c.drift_sigmas,
            drift_min_ratio: c.drift_min_ratio,
            limits: Limits {
                warn_at: 0.8,
                forecast_over: 0.10,
                daily_pace: true,
                ..Limits::default()
            },
        }
    }
}

impl From<&Config> for DetectParams {
    fn from(c: &Config) -> Self {
        let mut p = DetectParams::from(&c.detect);
        p.limits = Limits {
            monthly: c.budget.monthly_usd,
            features: c.budget.features.clone(),
            tenants: c.quota.tenants.clone(),
            users: c.quota.users.clone(),
            warn_at: c.quota.warn_at,
            forecast_over: c.budget.forecast_over_ratio,
            daily_pace: c.budget.daily_pace,
        };
        p
    }
}

impl DetectParams {
    /// (minutes, ratio bar, z bar) of the spike windows, shortest first: the shorter
    /// the window, the higher the bar (as multi-window burn-rate alerts do).
    pub fn spike_bars(&self) -> [(i64, f64, f64); 3] {
        [
            (5, self.spike_ratio, self.spike_z + 1.0),
            (15, self.spike_ratio_15m, self.spike_z + 0.5),
            (60, self.spike_ratio_60m, self.spike_z),
        ]
    }
}

/// The windows of the spike rule, shortest first.
pub fn spike_windows() -> [i64; 3] {
    [5, 15, 60]
}

// ---------------------------------------------------------------------------
// Pending state

/// What the detector remembers between evaluations: for every fast-rule condition
/// (spikes, runaways, unpriced usage), since when and for how many consecutive
/// evaluations it has held. An evaluation is one minute: evaluating twice within
/// the same minute does not count twice, and a minute without the condition resets
/// it. Small and explicit: pass the same value to every [`evaluate`] call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorState {
    /// Keyed by (rule family, dimension, name): see [`rule_family`].
    tracks: HashMap<(String, Dim, String), Track>,
}

/// The condition a rule id belongs to: "spike" for `spike_5m`, `spike_15m` and
/// `spike_60m`, else the id itself. A spike reports the window that clears its bar
/// by the most, and that window moves as an incident goes on (5 minutes first, 15
/// and 60 as the excess fills them), sometimes between two evaluations a second
/// apart. It is one condition throughout: it is confirmed, fingerprinted and
/// silenced by its family, never restarted because its strongest window changed.
pub fn rule_family(rule: &str) -> &str {
    if rule.starts_with("spike_") {
        "spike"
    } else {
        rule
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Track {
    /// The rule id last seen for the condition (a spike's current window).
    rule: String,
    /// When the condition began, the earliest onset seen in this streak.
    since: DateTime<Utc>,
    /// The minute of the last evaluation that saw it.
    minute: i64,
    /// Consecutive evaluation minutes that saw it.
    streak: u32,
}

impl DetectorState {
    /// Conditions held but not yet shown.
    pub fn pending(&self, p: &DetectParams) -> usize {
        self.tracks
            .values()
            .filter(|t| t.streak < p.pending)
            .count()
    }

    /// The conditions held but not yet shown, with their streaks: the alert
    /// lifecycle's Pending state reads them (it never counts evaluations itself).
    pub fn pending_conditions(&self, p: &DetectParams) -> Vec<PendingCondition> {
        let mut out: Vec<PendingCondition> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.streak < p.pending.max(1))
            .map(|((_, dim, name), t)| PendingCondition {
                rule: t.rule.clone(),
                dim: *dim,
                name: name.clone(),
                since: t.since,
                streak: t.streak,
                needed: p.pending.max(1),
            })
            .collect();
        out.sort_by(|a, b| (&a.rule, a.dim, &a.name).cmp(&(&b.rule, b.dim, &b.name)));
        out
    }
}

/// A fast-rule condition seen in `streak` consecutive evaluation minutes, shown
/// once it reaches `needed`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCondition {
    pub rule: String,
    pub dim: Dim,
    pub name: String,
    pub since: DateTime<Utc>,
    pub streak: u32,
    pub needed: u32,
}

/// A fast-rule finding before the pending state confirms it.
pub(super) struct Candidate {
    pub(super) anomaly: Anomaly,
}

/// Every anomaly at `now`, most severe first, updating the pending state. Fast
/// rules show once they have held for `p.pending` consecutive evaluation minutes.
pub fn evaluate(
    store: &Store,
    now: DateTime<Utc>,
    p: &DetectParams,
    state: &mut DetectorState,
) -> Vec<Anomaly> {
    let minute = eval_minute(now);
    let mut found = Vec::new();
    let mut seen = HashMap::new();
    for c in fast_candidates(store, now, p) {
        let a = c.anomaly;
        let key = (rule_family(&a.rule).to_string(), a.dim, a.name.clone());
        let since = a.since.unwrap_or(now);
        let rule = a.rule.clone();
        let track = match state.tracks.get(&key) {
            Some(t) if t.minute == minute => Track { rule, ..t.clone() },
            Some(t) if t.minute == minute - 1 => Track {
                rule,
                since: t.since.min(since),
                minute,
                streak: t.streak.saturating_add(1),
            },
            _ => Track {
                rule,
                since,
                minute,
                streak: 1,
            },
        };
        let streak = track.streak;
        let since = track.since;
        seen.insert(key, track);
        if streak >= p.pending.max(1) {
            found.push(Anomaly {
                since: Some(since),
                ..a
            });
        }
    }
    state.tracks = seen;
    found.extend(slow_rules(store, now, p));
    sort_anomalies(&mut found);
    found
}

/// One-shot detection with no memory (e.g. `snapshot` without `--follow`): the
/// pending state is rebuilt by evaluating the end of the previous minute first, so
/// a spike shows if it held then and holds now, as a running dashboard would say.
pub fn detect(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    detect_with_state(store, now, p).0
}

/// [`detect`], also returning the rebuilt pending state (for the alert lifecycle
/// of one-shot runs such as `burnrate check`).
pub fn detect_with_state(
    store: &Store,
    now: DateTime<Utc>,
    p: &DetectParams,
) -> (Vec<Anomaly>, DetectorState) {
    let mut state = DetectorState::default();
    let minute = eval_minute(now);
    for back in (1..p.pending.max(1) as i64).rev() {
        // The end of minute `minute - back`: its evaluation sees that minute last.
        let t = Calendar::minute_start(minute - back + 1);
        evaluate(store, t.min(now), p, &mut state);
    }
    let found = evaluate(store, now, p, &mut state);
    (found, state)
}

// ---------------------------------------------------------------------------
// Baselines

/// Baseline samples of a span `[start, end)` for one name: the same span at the same
/// hour of the week over 4 weeks when 3 weeks of history exist, else at the same hour
/// of day over 14 days (at least 3), else each of the last 24 hours' same span.
/// An hour cut by a span counts by where within it the name spends (its five-minute
/// shape, see `Store::spend_between`), so a job at the same minutes of every hour or
/// night is part of its own baseline. Returns (costs in dollars, requests, label).
pub(super) fn baseline_samples(
    store: &Store,
    dim: Dim,
    id: NameId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(Vec<f64>, Vec<f64>, &'static str)> {
    let cal = store.calendar();
    let oldest = cal.hour_start(store.oldest_hour()?);
    let shifted = |step: Duration, k: i64| {
        let (s, e) = (start - step * k as i32, end - step * k as i32);
        (s >= oldest).then(|| usual_spend(store, dim, id, s, e, now))
    };
    let collect = |step: Duration, n: i64| -> Vec<(Money, f64)> {
        (1..=n).filter_map(|k| shifted(step, k)).collect()
    };
    let weekly = collect(Duration::days(7), 4);
    let (samples, label) = if weekly.len() >= 3 {
        (weekly, "same hour of week, 4 weeks")
    } else {
        let daily = collect(Duration::days(1), 14);
        if daily.len() >= 3 {
            (daily, "same hour of day, 14 days")
        } else {
            let hourly = collect(Duration::hours(1), 24);
            if hourly.is_empty() {
                return None;
            }
            (hourly, "last 24 hours")
        }
    };
    let costs = samples.iter().map(|(c, _)| c.as_f64()).collect();
    let requests = samples.iter().map(|(_, r)| *r).collect();
    Some((costs, requests, label))
}

/// A baseline sample of `[start, end)`: the name's spend there read by where within
/// its hours it spends (`Store::spend_between`), but never below the hours' even
/// share. The shape only lifts minutes where the name usually spends (a job at the
/// same minutes of every hour or night); for traffic without a rhythm a few lumpy
/// watched days are noise, and a lower baseline would page on it (measured:
/// BACKTEST.md, session 5).
fn usual_spend(
    store: &Store,
    dim: Dim,
    id: NameId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Money, f64) {
    let shaped = store.spend_between(dim, id, start, end, now);
    let even = store.prorated(dim, Some(id), start, end);
    (shaped.0.max(even.0), shaped.1.max(even.1))
}

/// The robust comparison of one observation with its baseline samples.
struct Verdict {
    expected: f64,
    low: f64,
    high: f64,
    ratio: f64,
    z: f64,
    /// The z against the baseline's own spread only, without the Poisson floor of
    /// the request count: what counts once the excess is known to be one user's.
    z_spread: f64,
    /// The baseline's typical request count in the span (its median).
    typical_requests: f64,
}

fn judge(observed: f64, costs: &[f64], requests: &[f64], p: &DetectParams) -> Option<Verdict> {
    let logs: Vec<f64> = costs.iter().map(|c| ln_cost(*c)).collect();
    // Short windows of small features are Poisson-noisy in a way hourly samples do
    // not show: the scale is at least about 1.5 / sqrt(expected requests).
    let typical_requests = quantile(requests, 0.5).unwrap_or(0.0).max(0.0);
    let floor = p.mad_floor.max(1.5 / typical_requests.max(1.0).sqrt());
    let r = Robust::of(&logs, floor)?;
    let spread = Robust::of(&logs, p.mad_floor)?;
    let expected = (r.median.exp() - super::stats::LOG_EPS).max(0.0);
    let z = r.z(ln_cost(observed));
    let ratio = ratio_f(observed, expected);
    Some(Verdict {
        expected,
        low: quantile(costs, 0.1).unwrap_or(0.0).max(0.0),
        high: quantile(costs, 0.9).unwrap_or(0.0).max(0.0),
        ratio,
        z,
        z_spread: spread.z(ln_cost(observed)),
        typical_requests,
    })
}

/// Observed over expected, capped at 999 (and 999 for something against nothing,
/// 1 for nothing against nothing or a non-finite input): the one ratio the rules
/// report.
fn ratio_f(observed: f64, expected: f64) -> f64 {
    if !observed.is_finite() || !expected.is_finite() {
        return 1.0;
    }
    if expected <= 0.0 {
        if observed > 0.0 { 999.0 } else { 1.0 }
    } else {
        (observed / expected).clamp(0.0, 999.0)
    }
}

pub(super) fn ratio(observed: Money, expected: Money) -> f64 {
    ratio_f(observed.as_f64(), expected.as_f64())
}

fn usd(x: f64) -> Money {
    Money::from_f64_lossy(if x.is_finite() { x } else { 0.0 })
}

// ---------------------------------------------------------------------------
// Fast rules: spikes, runaways, unpriced usage

/// The minute an evaluation at `now` belongs to: the one holding the instant just
/// before `now` (an evaluation at 12:00:00 sees 11:59 last).
fn eval_minute(now: DateTime<Utc>) -> i64 {
    Calendar::minute_index(now - Duration::nanoseconds(1))
}

/// The trailing `w` minutes ending now: the span `[start, now)` and its minute range.
pub(super) fn window_span(now: DateTime<Utc>, w: i64) -> (DateTime<Utc>, i64, i64) {
    // The current minute is partial: count it, and end the span at `now`.
    let end_min = eval_minute(now);
    let start_min = end_min - w + 1;
    (Calendar::minute_start(start_min), start_min, end_min)
}

/// The length of `[start, now)` in minutes (a window's current minute is partial).
pub(super) fn minutes_between(start: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    ((now - start).num_milliseconds() as f64 / 60_000.0).max(1.0 / 60.0)
}

/// What an onset is found in: spend, or the request count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Onset {
    Cost,
    Requests,
}

/// When an excess seen over `[start, now)` began, to the minute: the first minute
/// of the last run of a CUSUM with an allowance of half the gap between the usual
/// rate and the window's level. Minutes nearer the usual rate than the excess reset
/// it, so ordinary noise or a level drifting a little above its baseline before the
/// problem is not taken for the problem (a plain running sum walked back to the
/// start of its look-back on such traffic), while a dip inside a strong excess does
/// not cut it. Looked for over the window and, for short windows, the hour before
/// its end, within the minutes the store holds by minute. A window's start says
/// when the measuring began, not when the problem did.
pub(super) fn onset(
    store: &Store,
    (dim, id): (Dim, NameId),
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    usual_per_minute: f64,
    by: Onset,
) -> DateTime<Utc> {
    let end_min = eval_minute(now);
    let from_min = Calendar::minute_index(start)
        .min(end_min - 59)
        .max(store.minute_floor(now));
    if from_min > end_min || !usual_per_minute.is_finite() {
        return start;
    }
    let usual = usual_per_minute.max(0.0);
    let minute = |m: i64| {
        let a = store.minutes_of(dim, Some(id), m, m);
        match by {
            Onset::Cost => a.cost.as_f64(),
            Onset::Requests => a.requests as f64,
        }
    };
    let window_from = Calendar::minute_index(start).max(from_min);
    let level = (window_from..=end_min).map(minute).sum::<f64>() / minutes_between(start, now);
    if level <= usual {
        return start;
    }
    let bar = usual + 0.5 * (level - usual);
    let (mut sum, mut run_start, mut onset_min) = (0.0_f64, None, None);
    for m in from_min..=end_min {
        let next = (sum + minute(m) - bar).max(0.0);
        if next > 0.0 {
            let began = *run_start.get_or_insert(m);
            onset_min = Some(began);
        } else {
            run_start = None;
        }
        sum = next;
    }
    onset_min.map_or(start, Calendar::minute_start)
}

fn fast_candidates(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Candidate> {
    let mut out = Vec::new();
    for dim in [Dim::Feature, Dim::Model, Dim::User] {
        out.extend(spikes(store, now, p, dim));
    }
    out.extend(user_share(store, now, p));
    out.extend(super::runaway::runaway_requests(store, now, p));
    out.extend(unpriced(store, now, p));
    out
}

fn spikes(store: &Store, now: DateTime<Utc>, p: &DetectParams, dim: Dim) -> Vec<Candidate> {
    let mut best: HashMap<NameId, (f64, Anomaly)> = HashMap::new();
    let user = dim == Dim::User;
    let min_excess = if user {
        p.runaway_min_excess.max(p.min_excess)
    } else {
        p.min_excess
    };
    let bars = p.spike_bars();
    // Users' spend and requests per window, read once and only when needed.
    let mut user_minutes: HashMap<i64, crate::store::NameMap<Agg>> = HashMap::new();
    for (i, &(w, bar_ratio, bar_z)) in bars.iter().enumerate() {
        // A user's 5 minutes are too noisy to judge; its 15 and 60 minutes are held
        // to the 5-minute ratio bar (one user is noisier than a feature).
        if user && i == 0 {
            continue;
        }
        let bar_ratio = if user { bars[0].1 } else { bar_ratio };
        let (start, from_min, to_min) = window_span(now, w);
        if now <= start {
            continue;
        }
        for (id, agg) in store.minutes_by_dim(dim, from_min, to_min) {
            // The excess can be no more than the observation: skip the small fry.
            if agg.cost <= min_excess {
                continue;
            }
            let Some((costs, requests, label)) = baseline_samples(store, dim, id, start, now, now)
            else {
                continue;
            };
            // A feature or model never seen before is new, not a spike.
            if !user && costs.iter().all(|c| *c <= 0.0) {
                continue;
            }
            let x = agg.cost.as_f64();
            let Some(v) = judge(x, &costs, &requests, p) else {
                continue;
            };
            let expected = usd(v.expected);
            let excess = agg.cost - expected;
            if !(v.ratio > bar_ratio && excess > min_excess) {
                continue;
            }
            // Below the z bar, a feature's (or model's) jump still counts when one
            // user carries it (a runaway loop): the Poisson floor of the bar models
            // the noise of many independent requests, which spreads over users; one
            // user adding more requests than the whole feature usually sends is not
            // that noise. The jump must then clear the bar against the baseline's
            // own spread.
            let by_one_user = if v.z > bar_z {
                None
            } else if user || v.z_spread <= bar_z {
                continue;
            } else {
                let users_now = user_minutes
                    .entry(w)
                    .or_insert_with(|| store.minutes_by_dim(Dim::User, from_min, to_min));
                match one_user_behind(
                    store,
                    (dim, id),
                    start,
                    now,
                    v.typical_requests,
                    excess,
                    users_now,
                ) {
                    Some(u) => Some(u),
                    None => continue,
                }
            };
            // A spike is also a jump from the last three hours: a level that has
            // held for hours (a new feature's traffic moving onto a model, a
            // planned launch) is a matter for today-vs-7-days and drift, and does
            // not page all day until the baseline catches up.
            // So the window's ratio must clear the bar over the ratio of the three
            // hours before it to their own baseline. Those three hours are read
            // exactly (see `recent_spend`): the window itself must not leak into
            // them. Their baseline is the same span hours, days or weeks earlier,
            // whose hour buckets all end by `start`.
            let recent_from = start - Duration::hours(3);
            // Three hours' spend under the excess floor is no level at all: against
            // a baseline of nothing (an office-hours feature at night) one ordinary
            // request would make the ratio 999 and hide any spike.
            let recent = recent_spend(store, dim, id, recent_from, start, now);
            let recent_ratio = if recent <= min_excess {
                1.0
            } else {
                baseline_samples(store, dim, id, recent_from, start, now)
                    .and_then(|(c, _, _)| super::stats::median(&c))
                    .map(|m| ratio_f(recent.as_f64(), m))
                    .unwrap_or(1.0)
                    .max(1.0)
            };
            if v.ratio / recent_ratio <= bar_ratio {
                continue;
            }
            let name = store.name(dim, id).to_string();
            let window = format!("{w}m");
            let contributors =
                window_contributors(store, &[(dim, id)], start, now, agg.cost, p.contributors);
            let severity = if v.ratio >= 2.0 * bar_ratio && excess >= min_excess.times(10) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let a = Anomaly {
                rule: if user {
                    "runaway_user".into()
                } else {
                    format!("spike_{w}m")
                },
                dim,
                message: message(dim, &name, agg.cost, expected, &window, &contributors),
                name,
                window,
                observed: agg.cost,
                expected,
                expected_low: Some(usd(v.low)),
                expected_high: Some(usd(v.high)),
                ratio: v.ratio,
                z: Some(v.z),
                severity,
                baseline: match &by_one_user {
                    None => label.to_string(),
                    Some(u) => format!(
                        "{label}; {ONE_USER_BASELINE}: {} sent {:.0} requests vs {:.0} usual (the feature's usual {:.0})",
                        store.name(Dim::User, u.id),
                        u.requests,
                        u.usual_requests,
                        v.typical_requests
                    ),
                },
                since: Some(onset(
                    store,
                    (dim, id),
                    start,
                    now,
                    v.expected / minutes_between(start, now),
                    Onset::Cost,
                )),
                contributors,
            };
            // One line per name: the window that clears its bar by the most.
            let strength = v.ratio / bar_ratio;
            let keep = best.get(&id).is_none_or(|(s, _)| strength > *s);
            if keep {
                best.insert(id, (strength, a));
            }
        }
    }
    best.into_values()
        .map(|(_, anomaly)| Candidate { anomaly })
        .collect()
}

/// Spend of one name over `[from, to)` (minute-aligned), exact from the minute
/// buckets for the part the store holds by minute at `now`, from the hour buckets
/// (by the name's shape within the hour) only before that. Prorating the hour that holds `to` would count part of
/// whatever happened in that hour after `to` (a spike measured from `to` on) as
/// spend before it.
fn recent_spend(
    store: &Store,
    dim: Dim,
    id: NameId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Money {
    let split = Calendar::minute_start(store.minute_floor(now)).clamp(from, to);
    let (older, _) = store.spend_between(dim, id, from, split, now);
    if split >= to {
        return older;
    }
    let last_minute = Calendar::minute_index(to - Duration::nanoseconds(1));
    older
        + store
            .minutes_of(dim, Some(id), Calendar::minute_index(split), last_minute)
            .cost
}

/// A user's part in a feature's window, as bounded from the store: minute buckets
/// hold users and features apart, so the user's share of the window on the feature
/// is its window total less what it spent elsewhere in the window's hours.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OneUser {
    id: NameId,
    /// Requests on the feature in the window (a lower bound).
    requests: f64,
    /// Its usual requests on the feature in such a window: its share of the feature's
    /// requests over the previous 7 days times the feature's typical count.
    usual_requests: f64,
}

/// Marks the `baseline` of a feature spike shown below the z bar because one user
/// carries it (the rest of that text names the user and its requests).
pub const ONE_USER_BASELINE: &str = "one user carries it";

/// At least this many requests above its usual for one user to carry a jump: fewer
/// are within reach of chance whatever the feature's count.
const ONE_USER_MIN_REQUESTS: f64 = 10.0;

/// Whether one user carries a feature's jump: it spent at least half the feature's
/// excess on it, and its requests on it exceed its usual count by at least the
/// feature's whole typical count (and [`ONE_USER_MIN_REQUESTS`]). Honest traffic
/// spreads over users, so one user alone doubling the feature is a loop, not noise.
fn carried_by_one_user(
    user_requests: f64,
    user_usual_requests: f64,
    feature_typical_requests: f64,
    user_cost: f64,
    feature_excess: f64,
) -> bool {
    let finite = [
        user_requests,
        user_usual_requests,
        feature_typical_requests,
        user_cost,
        feature_excess,
    ]
    .iter()
    .all(|x| x.is_finite());
    finite
        && feature_excess > 0.0
        && user_cost >= 0.5 * feature_excess
        && user_requests - user_usual_requests.max(0.0)
            >= feature_typical_requests.max(ONE_USER_MIN_REQUESTS)
}

/// The part of `hours` whose combinations the store keeps (see
/// `Store::complete_from`): a user's share of a feature compares two totals over
/// the same hours, so both are taken over this part when the oldest hours are kept
/// coarse (a share over the last days rather than the whole week).
fn with_combinations(store: &Store, hours: RangeInclusive<i64>) -> RangeInclusive<i64> {
    let floor = store.complete_from(crate::store::Need::Cells);
    (*hours.start()).max(floor)..=*hours.end()
}

/// "7 days", or the hours a shortened span (`with_combinations`) covers.
fn span_label(hours: &RangeInclusive<i64>) -> String {
    match hours.end() - hours.start() + 1 {
        168 => "7 days".into(),
        n => format!("the last {n} hours"),
    }
}

/// The user most behind the excess of a feature (or model) in `[start, now)`, if it
/// carries it (see [`carried_by_one_user`]). `users_now` holds every user's window
/// totals.
fn one_user_behind(
    store: &Store,
    scope: (Dim, NameId),
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    feature_typical_requests: f64,
    feature_excess: Money,
    users_now: &crate::store::NameMap<Agg>,
) -> Option<OneUser> {
    let cal = store.calendar();
    let hours = cal.hour_index(start)..=cal.hour_index(now - Duration::nanoseconds(1));
    let on_feature = store.by_dim_filtered(Dim::User, &[scope], hours.clone());
    let everywhere = store.by_dim(Dim::User, hours.clone());
    // Lower bounds of each user's spend and requests on the feature in the window.
    let (id, cost, requests) = on_feature
        .iter()
        .filter_map(|(uid, on)| {
            let window = users_now.get(uid)?;
            let all = everywhere.get(uid).copied().unwrap_or(*on);
            let elsewhere_cost = all.cost - on.cost;
            let elsewhere_requests = all.requests.saturating_sub(on.requests);
            let cost = (window.cost - elsewhere_cost).min(on.cost);
            let requests = window
                .requests
                .saturating_sub(elsewhere_requests)
                .min(on.requests);
            Some((*uid, cost, requests))
        })
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
    let week = with_combinations(store, (hours.start() - 7 * 24)..=(hours.start() - 1));
    let feature_week = store.total_filtered(&[scope], week.clone());
    let user_week = store.total_filtered(&[scope, (Dim::User, id)], week);
    let share = if feature_week.requests > 0 {
        (user_week.requests as f64 / feature_week.requests as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let usual_requests = share * feature_typical_requests;
    carried_by_one_user(
        requests as f64,
        usual_requests,
        feature_typical_requests,
        cost.as_f64(),
        feature_excess.as_f64(),
    )
    .then_some(OneUser {
        id,
        requests: requests as f64,
        usual_requests,
    })
}

/// One user's share of a feature's spend in the last hour (at least 15 minutes of
/// it), against that user's share of the feature over the previous 7 days.
fn user_share(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Candidate> {
    let cal = store.calendar();
    let cur = cal.hour_index(now);
    let into = now - cal.hour_start(cur);
    let from_hour = if into < Duration::minutes(15) {
        cur - 1
    } else {
        cur
    };
    let start = cal.hour_start(from_hour);
    // Over the whole week even where old hours are coarse: a nightly batch is most
    // of its feature at night, and two nights are too few to say so.
    let week = (from_hour - 7 * 24)..=(from_hour - 1);
    let mut out = Vec::new();
    for (fid, fagg) in store.by_dim(Dim::Feature, from_hour..=cur) {
        if fagg.cost <= p.runaway_min_excess {
            continue;
        }
        let scope = [(Dim::Feature, fid)];
        let users = store.by_dim_filtered(Dim::User, &scope, from_hour..=cur);
        let Some((uid, uagg)) = users
            .iter()
            .max_by(|a, b| a.1.cost.cmp(&b.1.cost).then(b.0.cmp(a.0)))
        else {
            continue;
        };
        let share = uagg.cost.as_f64() / fagg.cost.as_f64();
        if !(share.is_finite() && share >= p.runaway_share) {
            continue;
        }
        let feature_week = store.total_filtered(&scope, week.clone()).cost;
        let user_week = store.pair_cost_for_baseline(fid, *uid, week.clone());
        let usual = if feature_week.picos() > 0 {
            (user_week.as_f64() / feature_week.as_f64()).clamp(0.0, 1.0)
        } else {
            // A feature with no history: its spikes are a matter for the spike rule.
            continue;
        };
        let expected = usd(usual * fagg.cost.as_f64());
        let excess = uagg.cost - expected;
        if share < 3.0 * usual || excess <= p.runaway_min_excess {
            continue;
        }
        let fname = store.name(Dim::Feature, fid).to_string();
        let uname = store.name(Dim::User, *uid).to_string();
        // Its models on the feature: the parts of what it spent there.
        let contributors = window_contributors(
            store,
            &[(Dim::Feature, fid), (Dim::User, *uid)],
            start,
            now,
            uagg.cost,
            p.contributors,
        );
        let since = onset(
            store,
            (Dim::User, *uid),
            start,
            now,
            expected.as_f64() / minutes_between(start, now),
            Onset::Cost,
        );
        // The onset is shown beside the message (the `since` of the anomaly), not in
        // it: one time, not two that disagree.
        let message = format!(
            "{uname} is {:.0}% of {fname} ({} of {} in the last {}), usually {:.0}%: a runaway loop?",
            share * 100.0,
            uagg.cost.display_usd(),
            fagg.cost.display_usd(),
            if from_hour < cur { "2h" } else { "60m" },
            usual * 100.0
        );
        out.push(Candidate {
            anomaly: Anomaly {
                rule: "user_share".into(),
                dim: Dim::User,
                name: uname,
                window: if from_hour < cur { "2h" } else { "60m" }.into(),
                observed: uagg.cost,
                expected,
                expected_low: None,
                expected_high: None,
                ratio: ratio(uagg.cost, expected),
                z: None,
                severity: if share >= 0.8 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                baseline: format!("its share of {fname} over {}", span_label(&week)),
                since: Some(since),
                contributors,
                message,
            },
        });
    }
    out
}

/// Models used in the last 60 minutes with tokens but no cost at all: a model
/// missing from the price list otherwise counts as $0.
fn unpriced(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Candidate> {
    let (start, from_min, to_min) = window_span(now, 60);
    let mut out = Vec::new();
    let mut rows: Vec<(NameId, Agg)> = store
        .minutes_by_dim(Dim::Model, from_min, to_min)
        .into_iter()
        .collect();
    rows.sort_by_key(|(id, _)| *id);
    for (id, agg) in rows {
        if !(agg.cost.is_zero() && agg.tokens() > 0 && agg.requests > 0) {
            continue;
        }
        let name = store.name(Dim::Model, id).to_string();
        let contributors = contributors(store, Dim::Model, id, start, p.contributors);
        let message = format!(
            "{name}: {} requests, {} tokens in the last 60m at $0: unpriced (missing from the price list?)",
            agg.requests,
            agg.tokens()
        );
        out.push(Candidate {
            anomaly: Anomaly {
                rule: "unpriced".into(),
                dim: Dim::Model,
                name,
                window: "60m".into(),
                observed: Money::ZERO,
                expected: Money::ZERO,
                expected_low: None,
                expected_high: None,
                ratio: 1.0,
                z: None,
                severity: Severity::Warning,
                baseline: "priced usage has cost > 0".into(),
                since: Some(start),
                contributors,
                message,
            },
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Slow rules: today vs 7 days, drift, the seed's budget and quota rules

fn slow_rules(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    let mut out = Vec::new();
    out.extend(today_vs_week(store, now, p));
    out.extend(daily_average(store, now, p));
    out.extend(drift(store, now, p));
    out.extend(budget_rules(store, now, p));
    out
}

/// Spend of one name (or the total) from each of the previous `days` local days'
/// start up to the same time of day as `now`. The bucket that holds the cut-off
/// counts pro rata, or more where the name usually spends in its first minutes (a
/// nightly batch at 02:20 is all spent by 02:30): see `usual_spend`.
pub fn same_time_previous_days(
    store: &Store,
    dim: Dim,
    id: Option<NameId>,
    now: DateTime<Utc>,
    days: i64,
) -> Vec<Money> {
    let cal = store.calendar();
    let today = cal.local_date(now);
    let elapsed = now - cal.date_start(today);
    (1..=days)
        .map(|i| {
            let start = cal.date_start(today - Duration::days(i));
            match id {
                Some(id) => usual_spend(store, dim, id, start, start + elapsed, now).0,
                None => store.prorated(dim, id, start, start + elapsed).0,
            }
        })
        .collect()
}

/// Full days of history before today (at most `cap`).
fn history_days(store: &Store, now: DateTime<Utc>, cap: i64) -> i64 {
    let cal = store.calendar();
    let today_start = cal.day_start(now);
    store
        .oldest_hour()
        .map(|h| (today_start - cal.hour_start(h)).num_hours() / 24)
        .unwrap_or(0)
        .clamp(0, cap)
}

/// Today so far against the typical day of the previous 7 up to the same time of day,
/// per name of `dim`: (name, today, typical). Typical is the median, not the mean, so
/// two quiet weekend days do not make every weekday look 20% "up", and one bad day
/// does not hide the next.
pub fn today_vs_previous_days(
    store: &Store,
    dim: Dim,
    now: DateTime<Utc>,
) -> Vec<(NameId, Money, Option<Money>)> {
    let cal = store.calendar();
    let have_days = history_days(store, now, 7);
    let today = store.by_dim(dim, store.hours_from(cal.day_start(now)));
    today
        .into_iter()
        .map(|(id, agg)| {
            let expected = (have_days > 0).then(|| {
                let past = same_time_previous_days(store, dim, Some(id), now, have_days);
                median_money(past)
            });
            (id, agg.cost, expected)
        })
        .collect()
}

/// The median; the mean of the middle two of an even count, in exact money.
fn median_money(mut values: Vec<Money>) -> Money {
    values.sort();
    match values.len() {
        0 => Money::ZERO,
        n if n % 2 == 1 => values[n / 2],
        n => Money::from_picos((values[n / 2 - 1].picos() + values[n / 2].picos()) / 2),
    }
}

fn today_vs_week(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    let cal = store.calendar();
    let dim = Dim::Feature;
    let have_days = history_days(store, now, 7);
    if have_days == 0 {
        return Vec::new();
    }
    let day_start = cal.day_start(now);
    let mut out = Vec::new();
    for (id, agg) in store.by_dim(dim, store.hours_from(day_start)) {
        let today = agg.cost;
        if today <= p.min_excess {
            continue;
        }
        let past = same_time_previous_days(store, dim, Some(id), now, have_days);
        let expected = median_money(past.clone());
        let costs: Vec<f64> = past.iter().map(|m| m.as_f64()).collect();
        // A feature with no spend on most previous days is new, not anomalous.
        if expected.picos() <= 0 {
            continue;
        }
        let logs: Vec<f64> = costs.iter().map(|c| ln_cost(*c)).collect();
        // Early in the day few requests make a noisy total: the same Poisson floor
        // as the spikes, from the requests of the previous days so far.
        let requests: Vec<f64> = (1..=have_days)
            .map(|i| {
                let start = cal.date_start(cal.local_date(now) - Duration::days(i));
                usual_spend(store, dim, id, start, start + (now - day_start), now).1
            })
            .collect();
        let n = quantile(&requests, 0.5).unwrap_or(0.0).max(1.0);
        let Some(robust) = Robust::of(&logs, p.mad_floor.max(1.5 / n.sqrt())) else {
            continue;
        };
        let z = robust.z(ln_cost(today.as_f64()));
        let r = ratio(today, expected);
        let excess = today - expected;
        if !(r > p.today_ratio && z > p.today_z && excess > p.min_excess) {
            continue;
        }
        let name = store.name(dim, id).to_string();
        let contributors =
            window_contributors(store, &[(dim, id)], day_start, now, today, p.contributors);
        out.push(Anomaly {
            rule: "today_vs_7d".into(),
            dim,
            message: message(dim, &name, today, expected, "today", &contributors),
            name,
            window: "today".into(),
            observed: today,
            expected,
            expected_low: quantile(&costs, 0.1).map(usd),
            expected_high: quantile(&costs, 0.9).map(usd),
            ratio: r,
            z: Some(z),
            severity: if r >= 2.0 * p.today_ratio {
                Severity::Critical
            } else {
                Severity::Warning
            },
            baseline: format!("previous {have_days} days to the same time of day"),
            since: Some(day_start),
            contributors,
        });
    }
    out
}

/// Cost of each of the `n` full local days before today, oldest first, per name.
fn daily_totals(
    store: &Store,
    dim: Dim,
    id: Option<NameId>,
    now: DateTime<Utc>,
    n: i64,
) -> Vec<(NaiveDate, Money)> {
    let cal = store.calendar();
    let today = cal.local_date(now);
    (1..=n)
        .rev()
        .map(|k| {
            let d = today - Duration::days(k);
            let (s, e) = (cal.date_start(d), cal.date_start(d + Duration::days(1)));
            (d, store.prorated(dim, id, s, e).0)
        })
        .collect()
}

/// The seed rule: a feature's spend today above 150% of its daily average over the
/// previous 7 whole days (the mean, as the seed says).
fn daily_average(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    let cal = store.calendar();
    let days = history_days(store, now, 7);
    if days == 0 {
        return Vec::new();
    }
    let day_start = cal.day_start(now);
    let mut out = Vec::new();
    for (id, agg) in store.by_dim(Dim::Feature, store.hours_from(day_start)) {
        let past: Money = daily_totals(store, Dim::Feature, Some(id), now, days)
            .iter()
            .map(|(_, m)| *m)
            .sum();
        let avg = Money::from_picos(past.picos() / days as i128);
        if avg.picos() <= 0 {
            continue;
        }
        let limit = usd(avg.as_f64() * p.daily_average_ratio);
        if agg.cost > limit && agg.cost - avg > p.min_excess {
            let name = store.name(Dim::Feature, id).to_string();
            out.push(Anomaly {
                rule: "daily_average".into(),
                dim: Dim::Feature,
                message: format!(
                    "{name} {} today, above {:.0}% of its daily average {}",
                    agg.cost.display_usd(),
                    p.daily_average_ratio * 100.0,
                    avg.display_usd()
                ),
                window: "today".into(),
                observed: agg.cost,
                expected: avg,
                expected_low: None,
                expected_high: None,
                ratio: ratio(agg.cost, avg),
                z: None,
                // Informational: the seed's mean of whole days is dragged down by
                // quiet weekends; today_vs_7d is the rule that warns.
                severity: Severity::Info,
                baseline: format!("mean of the previous {days} whole days"),
                since: Some(day_start),
                contributors: contributors(store, Dim::Feature, id, day_start, p.contributors),
                name,
            });
        }
    }
    out
}

/// Slow drift: an EWMA of weekday-adjusted daily totals (log space) over the recent
/// days, against the oldest 7 days of the last 28 as the reference.
fn drift(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    let n = history_days(store, now, 28);
    if n < 14 {
        return Vec::new();
    }
    let cal = store.calendar();
    let mut out = Vec::new();
    let mut targets: Vec<(Dim, Option<NameId>)> = vec![(Dim::Feature, None)];
    let week_from = cal.hour_index(cal.day_start(now)) - 7 * 24;
    let mut ids: Vec<NameId> = store
        .by_dim(Dim::Feature, week_from..=i64::MAX)
        .into_keys()
        .collect();
    ids.sort();
    targets.extend(ids.into_iter().map(|id| (Dim::Feature, Some(id))));
    for (dim, id) in targets {
        let days = daily_totals(store, dim, id, now, n);
        let dollars: Vec<(NaiveDate, f64)> = days.iter().map(|(d, m)| (*d, m.as_f64())).collect();
        let w = super::stats::weekday_factors(&dollars);
        let adjusted: Vec<f64> = days
            .iter()
            .map(|(d, m)| ln_cost(m.as_f64() / w[d.weekday().num_days_from_monday() as usize]))
            .collect();
        let (reference, recent) = adjusted.split_at(7);
        let Some((z, limit)) = ewma_chart(reference, recent, p.drift_lambda, p.drift_sigmas) else {
            continue;
        };
        let mu = reference.iter().sum::<f64>() / reference.len() as f64;
        let level = (mu.exp() - super::stats::LOG_EPS).max(0.0);
        let now_level = (z.exp() - super::stats::LOG_EPS).max(0.0);
        let r = ratio_f(now_level, level);
        let (observed, expected) = (usd(now_level), usd(level));
        if !(z > limit && r > p.drift_min_ratio && observed - expected > p.min_excess) {
            continue;
        }
        let name = match id {
            Some(id) => store.name(dim, id).to_string(),
            None => "all features".to_string(),
        };
        let since = cal.date_start(days[7].0);
        out.push(Anomaly {
            rule: "drift".into(),
            dim,
            message: format!(
                "{name} drifting up: {}/day (weekday-adjusted, EWMA) vs {}/day {} weeks ago, {:.2}x",
                observed.display_usd(),
                expected.display_usd(),
                n / 7,
                r
            ),
            name,
            window: format!("{}d", n - 7),
            observed,
            expected,
            expected_low: None,
            expected_high: None,
            ratio: r,
            z: None,
            severity: Severity::Info,
            baseline: "EWMA of daily totals vs the oldest 7 of the last 28 days".into(),
            since: Some(since),
            contributors: Vec::new(),
        });
    }
    out
}

fn budget_rules(store: &Store, now: DateTime<Utc>, p: &DetectParams) -> Vec<Anomaly> {
    let cal = store.calendar();
    let l = &p.limits;
    let mut out = Vec::new();
    let month_start = cal.month_start(now);
    let month_hours = store.hours_from(month_start);
    let simple = |rule: &str,
                  dim: Dim,
                  name: String,
                  window: &str,
                  observed: Money,
                  expected: Money,
                  severity: Severity,
                  baseline: String,
                  message: String| {
        Anomaly {
            rule: rule.into(),
            dim,
            name,
            window: window.into(),
            observed,
            expected,
            expected_low: None,
            expected_high: None,
            ratio: ratio(observed, expected),
            z: None,
            severity,
            baseline,
            since: None,
            contributors: Vec::new(),
            message,
        }
    };
    if let Some(budget) = l.monthly.filter(|b| b.picos() > 0) {
        let days = cal.days_in_month(now).max(1);
        let pace = Money::from_picos(budget.picos() / days as i128);
        let today = store.total(store.hours_from(cal.day_start(now))).cost;
        if l.daily_pace && today > pace {
            out.push(Anomaly {
                since: Some(cal.day_start(now)),
                ..simple(
                    "day_over_budget_pace",
                    Dim::Feature,
                    "all features".into(),
                    "today",
                    today,
                    pace,
                    Severity::Warning,
                    format!("monthly budget / {days} days"),
                    format!(
                        "today's spend {} is above the daily budget pace {} ({} / {days} days)",
                        today.display_usd(),
                        pace.display_usd(),
                        budget.display_usd()
                    ),
                )
            });
        }
        let f = month_forecast(store, now, Some(budget));
        let limit = usd(budget.as_f64() * (1.0 + l.forecast_over));
        if f.forecast > limit {
            let severity = if f.forecast_low.is_some_and(|lo| lo > budget) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let runs_out = f
                .budget_exhausted_on
                .map(|d| format!("; the budget runs out on {d}"))
                .unwrap_or_default();
            out.push(simple(
                "forecast_over_budget",
                Dim::Feature,
                "all features".into(),
                "month",
                f.forecast,
                budget,
                severity,
                "monthly budget".into(),
                format!(
                    "month-end forecast {} is {:.0}% over the budget {}{runs_out}",
                    f.forecast.display_usd(),
                    (ratio(f.forecast, budget) - 1.0) * 100.0,
                    budget.display_usd()
                ),
            ));
        }
    }
    let quota = |rule: &str, dim: Dim, limits: &BTreeMap<String, Money>, what: &str| {
        let mut v = Vec::new();
        for (name, q) in limits {
            let Some(id) = store.lookup(dim, name) else {
                continue;
            };
            let spent = store.total_filtered(&[(dim, id)], month_hours.clone()).cost;
            let share = ratio(spent, *q);
            if share < l.warn_at {
                continue;
            }
            let severity = if share >= 1.0 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            v.push(simple(
                rule,
                dim,
                name.clone(),
                "month",
                spent,
                *q,
                severity,
                format!("monthly {what}"),
                format!(
                    "{dim} {name} at {:.0}% of its monthly {what} ({} of {})",
                    share * 100.0,
                    spent.display_usd(),
                    q.display_usd()
                ),
            ));
        }
        v
    };
    out.extend(quota("feature_budget", Dim::Feature, &l.features, "budget"));
    out.extend(quota("quota", Dim::Tenant, &l.tenants, "quota"));
    out.extend(quota("quota", Dim::User, &l.users, "quota"));
    out
}

// ---------------------------------------------------------------------------
// Explanations

/// The top users, models and features (other than `dim`) behind a name's spend
/// from the hour that holds `since` on, largest first.
fn contributors(
    store: &Store,
    dim: Dim,
    id: NameId,
    since: DateTime<Utc>,
    n: usize,
) -> Vec<Contributor> {
    let from_hour = store.hour_index(since);
    let mut out = Vec::new();
    let scope = [(dim, id)];
    let scope_total = store.total_filtered(&scope, from_hour..=i64::MAX).cost;
    for by in [Dim::User, Dim::Model, Dim::Feature] {
        if by == dim {
            continue;
        }
        let mut rows: Vec<(NameId, Agg)> = store
            .by_dim_filtered(by, &scope, from_hour..=i64::MAX)
            .into_iter()
            .collect();
        rows.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(&b.0)));
        for (nid, agg) in rows.into_iter().take(n) {
            let share = if scope_total.picos() > 0 {
                (agg.cost.as_f64() / scope_total.as_f64()).clamp(-1e6, 1e6)
            } else {
                0.0
            };
            out.push(Contributor {
                dim: by,
                name: store.name(by, nid).to_string(),
                cost: agg.cost,
                share,
            });
        }
    }
    out
}

/// What the observed spend of a scope over `[start, now)` is made of, per user,
/// model and feature (those the scope does not fix), largest first: each one's
/// spend on the scope in the window, and its share of the observed spend. One
/// measure, so no part exceeds the whole and the parts of a dimension add up to
/// at most `observed`. A window that starts on an hour is read from the hour
/// buckets exactly; a shorter one from the minutes' cells (the names together,
/// minute by minute), exactly too. Only when a minute of it held too many
/// combinations to keep cells (`MINUTE_CELLS_MAX`) is a part estimated: each
/// name's exact spend in the window (minute buckets) times the part of its spend
/// in those hours that was on the scope, but never below what the window proves
/// (the observed spend less the most every other name can hold of it).
pub(super) fn window_contributors(
    store: &Store,
    scope: &[(Dim, NameId)],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    observed: Money,
    n: usize,
) -> Vec<Contributor> {
    let cal = store.calendar();
    let (h0, h1) = (
        cal.hour_index(start),
        cal.hour_index(now - Duration::nanoseconds(1)),
    );
    let on_the_hour = start == cal.hour_start(h0);
    let (from_min, to_min) = (Calendar::minute_index(start), eval_minute(now));
    let mut out = Vec::new();
    for by in [Dim::User, Dim::Model, Dim::Feature] {
        if scope.iter().any(|(d, _)| *d == by) {
            continue;
        }
        let exact = if on_the_hour {
            None
        } else {
            store.minutes_by_dim_filtered(by, scope, from_min, to_min)
        };
        let on = if exact.is_some() {
            Default::default()
        } else {
            store.by_dim_filtered(by, scope, h0..=h1)
        };
        let mut rows: Vec<(NameId, Money)> = if let Some(exact) = exact {
            exact.iter().map(|(id, a)| (*id, a.cost)).collect()
        } else if on_the_hour {
            on.iter().map(|(id, a)| (*id, a.cost)).collect()
        } else {
            let all = store.by_dim(by, h0..=h1);
            let window = store.minutes_by_dim(by, from_min, to_min);
            // The most of the observed spend each name can hold: its spend in the
            // window, and its spend on the scope in the window's hours.
            let most = |id: &NameId, a: &Agg| {
                window
                    .get(id)
                    .map_or(0, |w| w.cost.picos().min(a.cost.picos()).max(0))
                    .min(observed.picos().max(0))
            };
            let all_most: i128 = on.iter().map(|(id, a)| most(id, a)).sum();
            on.iter()
                .filter_map(|(id, a)| {
                    let w = window.get(id)?.cost.picos();
                    let everywhere = all.get(id)?.cost.picos();
                    let part = if everywhere > 0 {
                        (w.saturating_mul(a.cost.picos().max(0)) / everywhere).clamp(0, w.max(0))
                    } else {
                        0
                    };
                    let at_least = (observed.picos() - (all_most - most(id, a))).max(0);
                    Some((*id, Money::from_picos(part.max(at_least.min(most(id, a))))))
                })
                .collect()
        };
        rows.retain(|(_, c)| c.picos() > 0);
        // Estimates of a short window can add up to more than was observed: scale
        // them down to it.
        let sum: i128 = rows.iter().map(|(_, c)| c.picos()).sum();
        if observed.picos() > 0 && sum > observed.picos() {
            for (_, c) in rows.iter_mut() {
                *c = Money::from_picos(c.picos().saturating_mul(observed.picos()) / sum);
            }
        }
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (id, cost) in rows.into_iter().take(n) {
            let share = if observed.picos() > 0 {
                (cost.as_f64() / observed.as_f64()).clamp(0.0, 1.0)
            } else {
                0.0
            };
            out.push(Contributor {
                dim: by,
                name: store.name(by, id).to_string(),
                cost,
                share,
            });
        }
    }
    out
}

/// "support_qa $412 in the last 60m vs typical $98, 4.2x; 71% from user_4812 on gpt-4o"
fn message(
    dim: Dim,
    name: &str,
    observed: Money,
    expected: Money,
    window: &str,
    contributors: &[Contributor],
) -> String {
    let when = if window == "today" {
        "today".to_string()
    } else {
        format!("in the last {window}")
    };
    let what = if dim == Dim::Feature {
        name.to_string()
    } else {
        format!("{dim} {name}")
    };
    let mut s = format!(
        "{what} {} {when} vs typical {}, {}",
        observed.display_usd(),
        expected.display_usd(),
        super::ratio_text(observed, expected, ratio(observed, expected))
    );
    let top = |d: Dim| contributors.iter().find(|c| c.dim == d);
    let (by, on) = match dim {
        Dim::User => (top(Dim::Feature), top(Dim::Model)),
        _ => (top(Dim::User), top(Dim::Model).or(top(Dim::Feature))),
    };
    if let Some(c) = by.filter(|c| c.share >= 0.2) {
        s.push_str(&format!("; {:.0}% from {}", c.share * 100.0, c.name));
        if let Some(m) = on {
            s.push_str(&format!(" on {}", m.name));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fact, FactBatch};
    use crate::store::StoreConfig;
    use chrono::Datelike;

    /// A user's usual share is read over the hours with combinations: a week in
    /// full detail, the detail hours in a one-shot command, and said so.
    #[test]
    fn a_share_baseline_names_the_span_it_was_read_over() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T12:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for (detail, want) in [(None, "7 days"), (Some(48), "the last 48 hours")] {
            let cfg = StoreConfig {
                detail_hours: detail,
                ..StoreConfig::default()
            };
            let store = Store::new(cfg, now);
            let cur = store.hour_index(now);
            let week = with_combinations(&store, (cur - 7 * 24)..=(cur - 1));
            assert_eq!(span_label(&week), want);
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fact(at: DateTime<Utc>, feature: &str, user: &str, cost: Money, n: u64) -> Fact {
        Fact {
            at,
            names: [
                feature.into(),
                user.into(),
                "gpt-4o".into(),
                "acme".into(),
                "eu".into(),
            ],
            agg: Agg {
                cost,
                requests: n,
                input_tokens: 10 * n,
                output_tokens: n,
                computed: 0,
            },
        }
    }

    #[test]
    fn a_short_windows_parts_come_from_that_window() {
        // 12:00-12:30: others spend $1 a minute on each of sonnet and mini; the
        // user spent $20 on mini at 12:05-12:10, then $20 on sonnet in the last
        // five minutes (the runaway). Of those five minutes, sonnet is 100%.
        let now = utc("2026-03-18T12:30:00Z");
        let hour = utc("2026-03-18T12:00:00Z");
        let mut store = Store::new(StoreConfig::default(), now);
        let on = |at, user: &str, model: &str, dollars| Fact {
            at,
            names: [
                "agent".into(),
                user.into(),
                model.into(),
                "acme".into(),
                "eu".into(),
            ],
            agg: Agg::one(Money::from_dollars(dollars), 10, 1),
        };
        let mut facts = Vec::new();
        for m in 0..30 {
            let at = hour + Duration::minutes(m);
            facts.push(on(at, &format!("other_{}", m % 3), "sonnet", 1));
            facts.push(on(at, &format!("other_{}", m % 3), "mini", 1));
            if (5..10).contains(&m) {
                facts.push(on(at, "looper", "mini", 4));
            }
            if (25..30).contains(&m) {
                facts.push(on(at, "looper", "sonnet", 4));
            }
        }
        store.apply(&FactBatch::of_rows(facts), now);
        let user = store.lookup(Dim::User, "looper").unwrap();
        let (start, _, _) = window_span(now, 5);
        let parts = window_contributors(
            &store,
            &[(Dim::User, user)],
            start,
            now,
            Money::from_dollars(20),
            3,
        );
        let models: Vec<(&str, Money, f64)> = parts
            .iter()
            .filter(|c| c.dim == Dim::Model)
            .map(|c| (c.name.as_str(), c.cost, c.share))
            .collect();
        // Read from the hour's parts, it was $10 (50%) on sonnet and $2 on mini.
        assert_eq!(
            models,
            vec![("sonnet", Money::from_dollars(20), 1.0)],
            "{parts:#?}"
        );
        let features: Vec<(&str, Money)> = parts
            .iter()
            .filter(|c| c.dim == Dim::Feature)
            .map(|c| (c.name.as_str(), c.cost))
            .collect();
        assert_eq!(features, vec![("agent", Money::from_dollars(20))]);

        // When a minute of the window kept no cells (too many combinations in
        // it): estimated, but never below what the window proves ($20 observed,
        // at most $5 of it on mini: at least $15 on sonnet).
        let crowd: Vec<Fact> = (0..=Store::MINUTE_CELLS_MAX)
            .map(|i| {
                on(
                    now - Duration::seconds(30),
                    &format!("crowd_{i}"),
                    "haiku",
                    0,
                )
            })
            .collect();
        store.apply(&FactBatch::of_rows(crowd), now);
        let parts = window_contributors(
            &store,
            &[(Dim::User, user)],
            start,
            now,
            Money::from_dollars(20),
            3,
        );
        let sonnet = parts
            .iter()
            .find(|c| c.dim == Dim::Model && c.name == "sonnet")
            .expect("sonnet is a part");
        assert_eq!(sonnet.cost, Money::from_dollars(15), "{parts:#?}");
        let sum: Money = parts
            .iter()
            .filter(|c| c.dim == Dim::Model)
            .fold(Money::ZERO, |a, c| a + c.cost);
        assert!(sum <= Money::from_dollars(20), "{parts:#?}");
    }

    /// `per_hour` dollars (1,200 requests) for every hour of the last `days` days,
    /// spread over minutes in the last three hours.
    fn steady(store: &mut Store, now: DateTime<Utc>, feature: &str, per_hour: i64, days: i64) {
        let cal = *store.calendar();
        let mut facts = Vec::new();
        let start = cal.hour_index(now) - days * 24;
        for h in start..cal.hour_index(now) {
            let at = cal.hour_start(h);
            if (now - at).num_minutes() < 170 {
                for m in 0..60 {
                    let cost = Money::from_picos(Money::from_dollars(per_hour).picos() / 60);
                    facts.push(fact(
                        at + Duration::minutes(m),
                        feature,
                        "steady_user",
                        cost,
                        20,
                    ));
                }
            } else {
                facts.push(fact(
                    at,
                    feature,
                    "steady_user",
                    Money::from_dollars(per_hour),
                    1200,
                ));
            }
        }
        // The current hour so far.
        let cur = cal.hour_start(cal.hour_index(now));
        for m in 0..(now - cur).num_minutes() {
            let cost = Money::from_picos(Money::from_dollars(per_hour).picos() / 60);
            facts.push(fact(
                cur + Duration::minutes(m),
                feature,
                "steady_user",
                cost,
                20,
            ));
        }
        store.apply(&FactBatch::of_rows(facts), now);
    }

    fn params() -> DetectParams {
        DetectParams::default()
    }

    #[test]
    fn steady_traffic_raises_nothing() {
        let now = utc("2026-11-28T15:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "chat", 60, 10);
        assert_eq!(detect(&s, now, &params()), vec![]);
    }

    #[test]
    fn same_time_of_day_not_whole_days() {
        // At 06:00 today holds a quarter of a day: comparing with whole past days would
        // call every morning a drop. Against the same time of day it is flat.
        let now = utc("2026-11-28T06:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "chat", 60, 8);
        let rows = today_vs_previous_days(&s, Dim::Feature, now);
        let (_, today, expected) = rows[0];
        assert_eq!(today, Money::from_dollars(360));
        assert_eq!(expected, Some(Money::from_dollars(360)));
    }

    #[test]
    fn a_runaway_shows_within_minutes_with_its_user() {
        let now = utc("2026-11-28T15:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "support_qa", 60, 10);
        steady(&mut s, now, "chat", 60, 10);
        // Three minutes of a loop: $20 a minute from one user.
        let burst: Vec<Fact> = (0..3)
            .map(|m| {
                fact(
                    now - Duration::seconds(30 + m * 60),
                    "support_qa",
                    "user_4812",
                    Money::from_dollars(20),
                    50,
                )
            })
            .collect();
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                rows: 3,
                facts: burst,
                rejected: Default::default(),
            },
            now,
        );
        let found = detect(&s, now, &params());
        let a = found
            .iter()
            .find(|a| a.dim == Dim::Feature && a.name == "support_qa")
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert_eq!(a.rule, "spike_5m");
        // Five steady minutes ($5) and the burst ($60) against a typical $5.
        assert_eq!(a.observed, Money::from_dollars(65));
        assert_eq!(a.expected, Money::from_dollars(5));
        assert_eq!(a.baseline, "same hour of day, 14 days");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.expected_low, Some(Money::from_dollars(5)));
        assert!(a.z.unwrap() > 6.0);
        assert!(
            a.message
                .starts_with("support_qa $65.00 in the last 5m vs typical $5.00, 13.0x; ")
                && a.message.ends_with("% from user_4812 on gpt-4o"),
            "{}",
            a.message
        );
        assert_eq!(a.contributors[0].name, "user_4812");
        // The user itself is flagged too, and nothing on chat.
        assert!(
            found
                .iter()
                .any(|a| a.dim == Dim::User && a.name == "user_4812")
        );
        assert!(found.iter().all(|a| a.name != "chat"), "{found:#?}");
        // Most severe first.
        assert!(found.windows(2).all(|w| w[0].severity >= w[1].severity));
    }

    #[test]
    fn one_user_carries_a_jump_only_with_the_excess_and_the_requests() {
        // A loop: $2.50 of a $2.50 excess, 15 requests where the whole feature
        // usually sends 2 and this user none.
        assert!(carried_by_one_user(15.0, 0.0, 2.0, 2.5, 2.5));
        // Under half the excess: others carry most of it.
        assert!(!carried_by_one_user(15.0, 0.0, 2.0, 1.2, 2.5));
        // A few expensive requests are within reach of chance, however few the
        // feature usually sends.
        assert!(!carried_by_one_user(9.0, 0.0, 2.0, 2.5, 2.5));
        // On a busy feature the user must add the feature's whole usual count.
        assert!(!carried_by_one_user(150.0, 0.0, 200.0, 30.0, 40.0));
        assert!(carried_by_one_user(250.0, 0.0, 200.0, 30.0, 40.0));
        // A heavy user's usual requests do not count towards the jump.
        assert!(!carried_by_one_user(250.0, 80.0, 200.0, 30.0, 40.0));
        // No excess, or nonsense, carries nothing.
        assert!(!carried_by_one_user(15.0, 0.0, 2.0, 2.5, 0.0));
        assert!(!carried_by_one_user(f64::NAN, 0.0, 2.0, 2.5, 2.5));
        assert!(!carried_by_one_user(15.0, 0.0, f64::INFINITY, 2.5, 2.5));
    }

    /// 10 days of a quiet feature at night: $3 and 24 requests an hour (2 requests
    /// for $0.25 every 5 minutes in the last three hours), spread over usual users.
    fn quiet_feature(now: DateTime<Utc>) -> Store {
        let mut s = Store::new(StoreConfig::default(), now);
        let cal = *s.calendar();
        let mut facts = Vec::new();
        let first = cal.hour_index(now) - 10 * 24;
        for h in first..cal.hour_index(now) {
            let at = cal.hour_start(h);
            if (now - at).num_minutes() < 170 {
                for m in (0..60).step_by(5) {
                    let user = format!("usual_{}", m / 5);
                    facts.push(fact(
                        at + Duration::minutes(m),
                        "code_review",
                        &user,
                        Money::from_micros(250_000),
                        2,
                    ));
                }
            } else {
                facts.push(fact(
                    at,
                    "code_review",
                    "usual_0",
                    Money::from_dollars(3),
                    24,
                ));
            }
        }
        let cur = cal.hour_start(cal.hour_index(now));
        for m in (0..(now - cur).num_minutes()).step_by(5) {
            facts.push(fact(
                cur + Duration::minutes(m),
                "code_review",
                "usual_1",
                Money::from_micros(250_000),
                2,
            ));
        }
        s.apply(&FactBatch::of_rows(facts), now);
        s
    }

    /// The last 5 minutes of `live`, one fact per (minute, user).
    fn feed_minutes(s: &mut Store, now: DateTime<Utc>, per_minute: &[(&str, Money, u64)]) {
        let mut facts = Vec::new();
        for m in 1..=5 {
            for (user, cost, n) in per_minute {
                facts.push(fact(
                    now - Duration::minutes(m),
                    "code_review",
                    user,
                    *cost,
                    *n,
                ));
            }
        }
        s.apply(&FactBatch::of_rows(facts), now);
    }

    #[test]
    fn a_quiet_features_jump_shows_when_one_user_carries_it() {
        let now = utc("2026-11-28T03:32:00Z");
        let p = params();
        // One user loops: 3 requests a minute at $0.50 a minute, $2.50 in 5
        // minutes against the feature's usual $0.25 (11x). With 2 requests usual,
        // the Poisson floor of the bar (1.5 / sqrt 2) keeps its z near 2.
        let mut looped = quiet_feature(now);
        feed_minutes(
            &mut looped,
            now,
            &[("user_0454", Money::from_micros(500_000), 3)],
        );
        let found = detect(&looped, now, &p);
        let a = found
            .iter()
            .find(|a| a.dim == Dim::Feature && a.name == "code_review")
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert_eq!(a.rule, "spike_5m");
        assert!(a.z.unwrap() < p.spike_bars()[0].2, "{a:#?}");
        assert!(a.ratio > 10.0, "{a:#?}");
        assert!(
            a.baseline.contains(ONE_USER_BASELINE) && a.baseline.contains("user_0454 sent 15"),
            "{}",
            a.baseline
        );
        assert!(a.message.contains("from user_0454"), "{}", a.message);

        // The same dollars spread over ten users are the feature's request noise.
        let mut spread = quiet_feature(now);
        let names: Vec<String> = (0..10).map(|i| format!("user_10{i:02}")).collect();
        let per_user: Vec<(&str, Money, u64)> = names
            .iter()
            .map(|n| (n.as_str(), Money::from_micros(50_000), 1))
            .collect();
        feed_minutes(&mut spread, now, &per_user);
        let found = detect(&spread, now, &p);
        assert!(found.iter().all(|a| a.name != "code_review"), "{found:#?}");

        // One user again, but with two pricey requests a minute: a burst of a few
        // requests is within reach of chance.
        let mut pricey = quiet_feature(now);
        feed_minutes(
            &mut pricey,
            now,
            &[("user_0454", Money::from_micros(500_000), 1)],
        );
        let found = detect(&pricey, now, &p);
        assert!(found.iter().all(|a| a.name != "code_review"), "{found:#?}");
    }

    /// Four days of support_qa in office hours only (none at night) and chat all
    /// day on the same model, then a runaway on support_qa over the last 4 minutes.
    fn office_hours_runaway(now: DateTime<Utc>, before: Vec<Fact>) -> Store {
        let mut s = Store::new(StoreConfig::default(), now);
        let cal = *s.calendar();
        let mut history = Vec::new();
        // Four days of support_qa in office hours only (10:00-20:00): a $0.10
        // request every 10 minutes, so the three hours before any window are $0
        // on every earlier day and a leaked cent makes their ratio the 999 cap.
        // Chat runs all day on the same model, whose spike the leak did not hide.
        for h in (cal.hour_index(now) - 4 * 24)..cal.hour_index(now) {
            let at = cal.hour_start(h);
            for m in (0..60).step_by(10) {
                let t = at + Duration::minutes(m);
                if (10..20).contains(&chrono::Timelike::hour(&t)) {
                    let user = format!("usual_{}", m / 10);
                    history.push(fact(t, "support_qa", &user, Money::from_micros(100_000), 1));
                }
                history.push(fact(t, "chat", "chat_user", Money::from_dollars(1), 10));
            }
        }
        history.push(fact(
            cal.hour_start(cal.hour_index(now)),
            "support_qa",
            "usual_0",
            Money::from_micros(100_000),
            1,
        ));
        facts(&mut s, now, history);
        // The runaway: one request a second at $0.50 over the last 4 minutes.
        let runaway = (1..=240)
            .map(|k| {
                fact(
                    now - Duration::seconds(k),
                    "support_qa",
                    "user_runaway",
                    Money::from_micros(500_000),
                    1,
                )
            })
            .collect();
        facts(&mut s, now, runaway);
        facts(&mut s, now, before);
        s
    }

    #[test]
    fn a_runaway_just_past_the_hour_is_not_its_own_recent_level() {
        // 2 seconds into 10:03: the 5, 15 and 60-minute windows start at 09:59, 09:49
        // and 09:04, inside the hour bucket that also holds the runaway's 09:59. The
        // three hours before each window must not count that bucket pro rata, or the
        // runaway makes its own "recent level" and the jump guard hides it.
        let now = utc("2026-11-28T10:03:02Z");
        let s = office_hours_runaway(now, Vec::new());

        let found = detect(&s, now, &params());
        let spike_on = |dim: Dim, name: &str| {
            found
                .iter()
                .any(|a| a.dim == dim && a.name == name && a.rule.starts_with("spike_"))
        };
        assert!(spike_on(Dim::Model, "gpt-4o"), "{found:#?}");
        assert!(spike_on(Dim::Feature, "support_qa"), "{found:#?}");
        // Nothing held for hours before the runaway: its recent level is exact.
        let id = s.lookup(Dim::Feature, "support_qa").unwrap();
        let start = utc("2026-11-28T09:59:00Z");
        let recent = recent_spend(&s, Dim::Feature, id, start - Duration::hours(3), start, now);
        assert_eq!(recent, Money::ZERO);
    }

    #[test]
    fn one_request_in_the_quiet_hours_before_a_runaway_does_not_hide_it() {
        // At night support_qa's three hours usually hold nothing, so one ordinary
        // $0.10 request in them used to make their ratio 999 and hide the spike.
        let now = utc("2026-11-28T10:03:02Z");
        let one = fact(
            utc("2026-11-28T08:30:00Z"),
            "support_qa",
            "usual_1",
            Money::from_micros(100_000),
            1,
        );
        let s = office_hours_runaway(now, vec![one]);
        let found = detect(&s, now, &params());
        assert!(
            found.iter().any(|a| a.dim == Dim::Feature
                && a.name == "support_qa"
                && a.rule.starts_with("spike_")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_spike_waits_for_two_evaluations() {
        let now = utc("2026-11-28T15:30:20Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "support_qa", 60, 10);
        let mut state = DetectorState::default();
        let p = params();
        let burst = |at: DateTime<Utc>| FactBatch {
            coarse: Vec::new(),
            hour_users: Vec::new(),
            hour_pairs: Vec::new(),
            rows: 1,
            facts: vec![fact(at, "support_qa", "bot", Money::from_dollars(40), 50)],
            rejected: Default::default(),
        };
        s.apply(&burst(now - Duration::seconds(5)), now);
        let first = evaluate(&s, now, &p, &mut state);
        assert!(first.iter().all(|a| a.dim != Dim::Feature), "{first:#?}");
        // The feature and model spikes, the user's own spike, its share jump and its
        // request rate (50 requests in a minute from a user never seen before).
        assert_eq!(state.pending(&p), 5, "{state:#?}");
        // Again within the same minute: still one evaluation.
        let again = evaluate(&s, now + Duration::seconds(20), &p, &mut state);
        assert!(again.iter().all(|a| a.dim != Dim::Feature));
        // The next minute, still high: it shows, since the first sighting.
        let next = now + Duration::seconds(45);
        s.apply(&burst(next - Duration::seconds(1)), next);
        let shown = evaluate(&s, next, &p, &mut state);
        let a = shown
            .iter()
            .find(|a| a.dim == Dim::Feature)
            .unwrap_or_else(|| panic!("{shown:#?}"));
        // Since the onset: the minute of the first burst, not the start of the
        // window that first saw it (15:26).
        assert_eq!(a.since, Some(utc("2026-11-28T15:30:00Z")), "{a:#?}");
        // A minute without the condition resets it.
        let mut fresh = DetectorState::default();
        evaluate(&s, now, &p, &mut fresh);
        let later = now + Duration::hours(2);
        let quiet = evaluate(&s, later, &p, &mut fresh);
        assert!(quiet.iter().all(|a| a.dim != Dim::Feature));
        assert_eq!(fresh.pending(&p), 0);
    }

    #[test]
    fn the_seed_rule_fires_on_a_day_far_above_the_week() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "summarize", 10, 8);
        // Extra spend this morning, spread out so no short window spikes.
        let extra: Vec<Fact> = (1..=10)
            .map(|h| {
                fact(
                    now - Duration::hours(h) - Duration::minutes(200),
                    "summarize",
                    "bot",
                    Money::from_dollars(20),
                    10,
                )
            })
            .filter(|f| f.at >= s.calendar().day_start(now))
            .collect();
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                rows: 1,
                facts: extra,
                rejected: Default::default(),
            },
            now,
        );
        let found = detect(&s, now, &params());
        let seed: Vec<_> = found.iter().filter(|a| a.rule == "today_vs_7d").collect();
        assert_eq!(seed.len(), 1, "{found:#?}");
        assert_eq!(seed[0].expected, Money::from_dollars(120));
        assert!(seed[0].observed > Money::from_dollars(180));
        assert_eq!(
            seed[0]
                .contributors
                .iter()
                .find(|c| c.dim == Dim::User)
                .unwrap()
                .name,
            "bot"
        );
    }

    #[test]
    fn quiet_weekends_do_not_make_a_busy_weekday_an_anomaly() {
        // Monday 12:00, 30% busier than last week's weekdays; Saturday and Sunday ran
        // at 40%. Against the mean (1.57x) this would fire; against the median it is 1.3x.
        let now = utc("2026-11-30T12:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        let cal = *s.calendar();
        let mut facts = Vec::new();
        for day in 1..=7 {
            let start = cal.day_start(now) - Duration::days(day);
            let weekend = matches!(
                cal.local_date(start).weekday(),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            );
            let per_hour = if weekend { 40 } else { 100 };
            for h in 0..24 {
                facts.push(fact(
                    start + Duration::hours(h),
                    "chat",
                    "u",
                    Money::from_dollars(per_hour),
                    10,
                ));
            }
        }
        for h in 0..12 {
            facts.push(fact(
                cal.day_start(now) + Duration::hours(h),
                "chat",
                "u",
                Money::from_dollars(130),
                10,
            ));
        }
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                rows: 1,
                facts,
                rejected: Default::default(),
            },
            now,
        );
        let rows = today_vs_previous_days(&s, Dim::Feature, now);
        assert_eq!(
            rows[0].2,
            Some(Money::from_dollars(1200)),
            "the typical weekday"
        );
        let found = detect(&s, now, &params());
        assert!(found.iter().all(|a| a.rule != "today_vs_7d"), "{found:#?}");
    }

    #[test]
    fn small_dollar_noise_pages_nobody() {
        let now = utc("2026-11-28T15:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "chat", 1, 10);
        let f = fact(
            now - Duration::seconds(10),
            "chat",
            "u",
            Money::from_picos(500_000_000_000),
            1,
        );
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                rows: 1,
                facts: vec![f],
                rejected: Default::default(),
            },
            now,
        );
        assert_eq!(
            detect(&s, now, &params()),
            vec![],
            "$0.58 in 5m is 7x but under the $1 minimum"
        );
    }

    fn facts(store: &mut Store, now: DateTime<Utc>, facts: Vec<Fact>) {
        store.apply(&FactBatch::of_rows(facts), now);
    }

    #[test]
    fn unpriced_usage_is_flagged_by_model() {
        let now = utc("2026-11-28T15:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        steady(&mut s, now, "chat", 60, 3);
        let mut free = fact(now - Duration::minutes(3), "chat", "u", Money::ZERO, 40);
        free.names[Dim::Model.index()] = "gpt-9-preview".into();
        facts(&mut s, now, vec![free]);
        let found = detect(&s, now, &params());
        let a = found
            .iter()
            .find(|a| a.rule == "unpriced")
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert_eq!((a.dim, a.name.as_str()), (Dim::Model, "gpt-9-preview"));
        assert!(a.message.contains("40 requests"), "{}", a.message);
        assert_eq!(
            a.contributors
                .iter()
                .find(|c| c.dim == Dim::Feature)
                .unwrap()
                .name,
            "chat"
        );
    }

    #[test]
    fn the_seed_budget_and_quota_rules() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        // $60/h for 10 days: $1,440 a day, about $40k this month by the end.
        steady(&mut s, now, "chat", 60, 10);
        let mut p = params();
        p.limits.monthly = Some(Money::from_dollars(30_000));
        p.limits
            .tenants
            .insert("acme".into(), Money::from_dollars(15_000));
        p.limits
            .users
            .insert("steady_user".into(), Money::from_dollars(100_000));
        p.limits
            .features
            .insert("chat".into(), Money::from_dollars(14_000));
        let found = detect(&s, now, &p);
        let rules: Vec<&str> = found.iter().map(|a| a.rule.as_str()).collect();
        // Today $720 by noon is under $1,000/day; the forecast ($14,400) is far under.
        assert!(!rules.contains(&"day_over_budget_pace"), "{found:#?}");
        assert!(!rules.contains(&"forecast_over_budget"), "{found:#?}");
        // The tenant spent $14,400 of $15,000: 96%, a warning; the feature is over.
        let q = found.iter().find(|a| a.rule == "quota").unwrap();
        assert_eq!(
            (q.dim, q.name.as_str(), q.severity),
            (Dim::Tenant, "acme", Severity::Warning)
        );
        assert!(
            q.message.contains("96% of its monthly quota"),
            "{}",
            q.message
        );
        let fb = found.iter().find(|a| a.rule == "feature_budget").unwrap();
        assert_eq!(fb.severity, Severity::Critical);
        assert!(found.iter().all(|a| a.name != "steady_user"));

        p.limits.monthly = Some(Money::from_dollars(12_000));
        let found = detect(&s, now, &p);
        let f = found
            .iter()
            .find(|a| a.rule == "forecast_over_budget")
            .unwrap();
        assert!(
            f.message.contains("the budget runs out on 2026-11-"),
            "{}",
            f.message
        );
        // $12,000 / 30 days = $400 a day; $720 by noon is above it.
        assert!(found.iter().any(|a| a.rule == "day_over_budget_pace"));
        // Critical first.
        assert_eq!(found[0].severity, Severity::Critical);
    }

    #[test]
    fn a_slow_drift_shows_as_ewma_and_a_new_feature_pages_nobody() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        let cal = *s.calendar();
        let mut fs = Vec::new();
        // 30 days: chat flat at $100/h for 9 days, then +2.5% a day; summarize flat.
        for h in (cal.hour_index(now) - 30 * 24)..cal.hour_index(now) {
            let at = cal.hour_start(h);
            let day = 30 - (now - at).num_days();
            let k = 1.0 + 0.025 * (day - 9).max(0) as f64;
            fs.push(fact(
                at,
                "chat",
                "u",
                Money::from_f64_lossy(100.0 * k),
                1000,
            ));
            fs.push(fact(at, "summarize", "u", Money::from_dollars(50), 1000));
            if day >= 29 {
                fs.push(fact(at, "brand_new", "v", Money::from_dollars(80), 1000));
            }
        }
        facts(&mut s, now, fs);
        let found = detect(&s, now, &params());
        let drift: Vec<_> = found.iter().filter(|a| a.rule == "drift").collect();
        assert!(drift.iter().any(|a| a.name == "chat"), "{found:#?}");
        assert!(drift.iter().all(|a| a.name != "summarize"), "{found:#?}");
        assert!(drift.iter().all(|a| a.severity == Severity::Info));
        assert!(
            found
                .iter()
                .all(|a| a.name != "brand_new" || a.severity == Severity::Info),
            "{found:#?}"
        );
    }

    #[test]
    fn a_long_spike_stays_confirmed_while_its_strongest_window_moves() {
        // support_qa runs away for 70 minutes at $20 a minute against a steady $60 an
        // hour; the dashboard evaluates once a minute. The window that clears its bar
        // by the most moves from 5 to 15 to 60 minutes; the condition must not
        // restart its pending count each time it does.
        let start = utc("2026-11-28T14:00:00Z");
        let mut s = Store::new(StoreConfig::default(), start);
        steady(&mut s, start, "support_qa", 60, 10);
        let p = params();
        let mut state = DetectorState::default();
        let mut rules = Vec::new();
        let mut since = None;
        for m in 0..70 {
            let at = start + Duration::minutes(m) + Duration::seconds(30);
            let steady_minute = fact(at, "support_qa", "steady_user", Money::from_dollars(1), 20);
            let loop_minute = fact(at, "support_qa", "user_4812", Money::from_dollars(20), 50);
            let now = start + Duration::minutes(m + 1);
            s.apply(&FactBatch::of_rows(vec![steady_minute, loop_minute]), now);
            let found = evaluate(&s, now, &p, &mut state);
            let spike = found
                .iter()
                .find(|a| a.dim == Dim::Feature && a.name == "support_qa");
            if m + 1 >= p.pending as i64 {
                let a = spike.unwrap_or_else(|| panic!("minute {m}: {found:#?}"));
                assert_eq!(rule_family(&a.rule), "spike");
                // One streak: its start never moves later (a longer window can
                // only take it back to that window's own start).
                assert!(since.is_none_or(|s| a.since <= s), "minute {m}: {a:#?}");
                since = Some(a.since);
                rules.push(a.rule.clone());
            }
        }
        rules.dedup();
        assert!(rules.len() >= 2, "the window moved: {rules:?}");
        assert_eq!(rules.first().map(String::as_str), Some("spike_5m"));
    }
}
