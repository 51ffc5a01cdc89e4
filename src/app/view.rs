//! View models: plain data computed from the store once per change, and read by the
//! UI on every frame. Nothing here draws, and nothing in `ui` computes.

use chrono::{DateTime, Utc};

use crate::detect::Anomaly;
use crate::model::{Connection, Dim, TailMode};
use crate::money::Money;

/// Month-to-date, burn and forecast for the header gauges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    /// "2026-11"
    pub month: String,
    pub month_to_date: Money,
    /// Average spend per day this month so far.
    pub daily_burn: Money,
    pub forecast: Money,
    /// "run rate" or "weekday-weighted" etc.: how the forecast was made.
    pub forecast_method: String,
    pub budget: Option<Money>,
    pub days_elapsed: f64,
    pub days_in_month: u32,
    /// The billing time zone's name.
    pub time_zone: String,
}

/// One row of the per-feature table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureRow {
    pub name: String,
    pub this_hour: Money,
    pub today: Money,
    pub last_7d: Money,
    pub requests_today: u64,
    /// Over the last 7 days.
    pub cost_per_request: Option<Money>,
    /// Over the last 7 days.
    pub cost_per_1k_tokens: Option<Money>,
    /// Today so far against the average of the previous 7 days up to the same time of
    /// day: 0.25 means 25% above. None without history.
    pub change_vs_7d: Option<f64>,
    /// Spend per hour over the last 24 hours, oldest first, in micro-dollars (for the
    /// sparkline; money stays exact elsewhere).
    pub spark_24h: Vec<u64>,
    /// An anomaly names this feature.
    pub anomalous: bool,
}

/// A top cost driver of the week (a feature, user or model).
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub dim: Dim,
    pub name: String,
    pub cost: Money,
    /// Share of the week's total (0..1).
    pub share: f64,
}

/// Everything the overview screen shows from the data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overview {
    pub now: DateTime<Utc>,
    pub header: Header,
    pub features: Vec<FeatureRow>,
    pub top_drivers: Vec<Driver>,
    /// Cost per request per day over 30 days, oldest first (None for empty days).
    pub cost_per_request_30d: Vec<Option<Money>>,
    pub anomalies: Vec<Anomaly>,
    /// Spend in the last 7 days (for the drivers' header).
    pub week_total: Money,
}

/// The status bar: the source's health and throughput.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    /// "127.0.0.1:5432/burnrate" or "demo".
    pub endpoint: String,
    pub connection: Connection,
    pub mode: TailMode,
    pub last_refresh: Option<DateTime<Utc>>,
    pub events_per_sec: f64,
    pub rows_read: u64,
    pub rejected: u64,
    pub watermark_lag_secs: Option<i64>,
    /// Set while the screen shows frozen numbers.
    pub paused: bool,
}

impl Default for StatusView {
    fn default() -> Self {
        StatusView {
            endpoint: String::new(),
            connection: Connection::Connecting,
            mode: TailMode::TxWatermark,
            last_refresh: None,
            events_per_sec: 0.0,
            rows_read: 0,
            rejected: 0,
            watermark_lag_secs: None,
            paused: false,
        }
    }
}

/// Progress of the initial backfill, shown instead of a blank screen.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BackfillProgress {
    pub done_steps: u64,
    pub total_steps: u64,
}

/// Everything one frame draws. Built by the app, borrowed by the UI.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub overview: &'a Overview,
    pub status: &'a StatusView,
    /// Some while history is still loading.
    pub backfill: Option<BackfillProgress>,
    /// Index of the selected feature row.
    pub selected: usize,
    /// The terminal may use colour (false under NO_COLOR).
    pub color: bool,
    /// The help overlay: (keys, what they do), generated from the keymap.
    pub help: Option<&'a [(&'static str, &'static str)]>,
}
