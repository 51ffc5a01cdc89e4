//! Anomaly detection and forecasts: pure functions over the store.
//!
//! Nothing here does I/O; the TUI and the headless commands call the same
//! functions with the same store, so screen and cron never disagree. The only
//! memory across evaluations is [`DetectorState`], passed in and out explicitly.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Dim;
use crate::money::Money;

/// One contributor to an anomaly's excess.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    pub dim: Dim,
    pub name: String,
    /// Spend of this contributor within the anomalous scope and window: a part of
    /// the anomaly's `observed`.
    #[serde(rename = "cost_usd")]
    pub cost: Money,
    /// Its share of the anomaly's `observed` spend (0..1).
    pub share: f64,
}

/// How urgently someone should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Something unusual, explained: what, how much, against what, and who.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Stable rule id: "spike_5m", "spike_15m", "spike_60m", "runaway_user",
    /// "runaway_requests",
    /// "user_share", "unpriced", "today_vs_7d", "daily_average", "drift",
    /// "day_over_budget_pace", "forecast_over_budget", "feature_budget", "quota".
    pub rule: String,
    pub dim: Dim,
    pub name: String,
    /// The window observed: "5m", "15m", "60m", "today", "7d", "month".
    pub window: String,
    #[serde(rename = "observed_usd")]
    pub observed: Money,
    #[serde(rename = "expected_usd")]
    pub expected: Money,
    /// The typical band of the baseline (p10-p90 of its samples), when it has one.
    #[serde(rename = "expected_low_usd")]
    pub expected_low: Option<Money>,
    #[serde(rename = "expected_high_usd")]
    pub expected_high: Option<Money>,
    /// observed / expected (infinite expected-zero cases are capped at 999; say it
    /// with [`ratio_text`]).
    pub ratio: f64,
    /// Robust z-score in log space, for the statistical rules.
    pub z: Option<f64>,
    pub severity: Severity,
    /// What `expected` was computed from, e.g. "same hour of week, 4 weeks".
    pub baseline: String,
    /// When the problem began (its onset, to the minute), not the window's start.
    pub since: Option<DateTime<Utc>>,
    pub contributors: Vec<Contributor>,
    /// One line for people: "support_qa $412 in the last 60m vs typical $98, 4.2x;
    /// 71% from user_4812 on gpt-4o".
    pub message: String,
}

impl Anomaly {
    /// Observed minus expected.
    pub fn excess(&self) -> Money {
        self.observed - self.expected
    }
}

/// How many times the expected: "4.2x"; ">999x" at the cap; "new" when nothing was
/// expected (a ratio against nothing says nothing). The screen and Slack both say it
/// this way.
pub fn ratio_text(observed: Money, expected: Money, ratio: f64) -> String {
    if expected.picos() <= 0 && observed.picos() > 0 {
        "new".into()
    } else if !ratio.is_finite() || ratio >= 999.0 {
        ">999x".into()
    } else {
        format!("{ratio:.1}x")
    }
}

/// Most severe first, then largest excess, then by name: the pane's order.
pub fn sort_anomalies(found: &mut [Anomaly]) {
    found.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.excess().cmp(&a.excess()))
            .then(a.name.cmp(&b.name))
            .then(a.rule.cmp(&b.rule))
    });
}

#[cfg(test)]
mod explain_tests;
mod forecast;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod recurring_tests;
mod rules;
mod runaway;
pub mod stats;

pub use forecast::{MonthForecast, month_forecast};
pub use rules::{
    DetectParams, DetectorState, Limits, ONE_USER_BASELINE, PendingCondition, detect,
    detect_with_state, evaluate, rule_family, same_time_previous_days, spike_windows,
    today_vs_previous_days,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_serialises_as_words_and_sorts_most_severe_first() {
        assert_eq!(
            serde_json::to_value(Severity::Critical).unwrap(),
            "critical"
        );
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
    }
}
