//! Anomaly detection and forecasts: pure functions over the store.
//!
//! Nothing here does I/O; the TUI and the headless commands call the same
//! functions with the same store, so screen and cron never disagree.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::Dim;
use crate::money::Money;

/// One contributor to an anomaly's excess.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    pub dim: Dim,
    pub name: String,
    /// Spend of this contributor within the anomalous scope and window.
    #[serde(rename = "cost_usd")]
    pub cost: Money,
    /// Share of the anomalous scope's spend in the window (0..1).
    pub share: f64,
}

/// Something unusual, explained: what, how much, against what, and who.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Stable rule id: "today_vs_7d", "spike_5m", "spike_15m", "spike_60m".
    pub rule: String,
    pub dim: Dim,
    pub name: String,
    /// The window observed: "today", "5m", "15m", "60m".
    pub window: String,
    #[serde(rename = "observed_usd")]
    pub observed: Money,
    #[serde(rename = "expected_usd")]
    pub expected: Money,
    /// observed / expected (infinite expected-zero cases are capped at 999).
    pub ratio: f64,
    pub since: Option<DateTime<Utc>>,
    pub contributors: Vec<Contributor>,
    /// One line for people: "support_qa jumped 300% in the last 5m ($41 vs typical $9.80)".
    pub message: String,
}

mod forecast;
mod rules;

pub use forecast::{MonthForecast, month_forecast};
pub use rules::{
    DetectParams, detect, same_time_previous_days, spike_windows, today_vs_previous_days,
};
