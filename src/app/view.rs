//! View models: plain data computed from the store once per change, and read by the
//! UI on every frame. Nothing here draws, and nothing in `ui` computes.

use chrono::{DateTime, Utc};

use super::drill::{Metric, SortKey, Window};
pub use super::progress::Pending;
use crate::detect::Anomaly;
pub use crate::model::RequestRow;
use crate::model::{Agg, Connection, Dim, TailMode};
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
    /// The forecast's 80% interval (p10-p90), when it has one.
    pub forecast_low: Option<Money>,
    pub forecast_high: Option<Money>,
    /// The local day the budget runs out on the forecast curve (or ran out).
    pub budget_exhausted_on: Option<chrono::NaiveDate>,
    /// "run rate" or "weekday-weighted" etc.: how the forecast was made.
    pub forecast_method: String,
    pub budget: Option<Money>,
    pub days_elapsed: f64,
    pub days_in_month: u32,
    /// The billing time zone's name.
    pub time_zone: String,
    /// The history is still loading: the month, the day and the budget are known,
    /// the figures not yet.
    pub loading: bool,
}

impl Header {
    /// What the header knows before the history is in: the calendar and the budget.
    pub fn before_history(
        cal: &crate::calendar::Calendar,
        now: DateTime<Utc>,
        budget: Option<Money>,
    ) -> Header {
        Header {
            month: cal.month_label(now),
            budget,
            days_elapsed: cal.days_elapsed(now),
            days_in_month: cal.days_in_month(now),
            time_zone: cal.tz().name().to_string(),
            loading: true,
            ..Header::default()
        }
    }
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
    /// Requests whose cost was computed from the price list, not logged: this
    /// hour, today and over the last 7 days (each flags its cost column).
    pub computed_hour: u64,
    pub computed_today: u64,
    pub computed_7d: u64,
}

/// A top cost driver of the week (a feature, user or model).
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub dim: Dim,
    pub name: String,
    pub cost: Money,
    /// Share of the week's total (0..1).
    pub share: f64,
    /// Requests of the week whose cost was computed from the price list.
    pub computed_requests: u64,
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
    /// While the history loads: which figures wait for it (drawn as "…").
    pub pending: Option<Pending>,
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
    /// The rejected rows by reason (`null_cost`, ...), largest first; empty when
    /// nothing was rejected.
    pub rejected_by_reason: Vec<(&'static str, u64)>,
    pub watermark_lag_secs: Option<i64>,
    /// Set while the screen shows frozen numbers.
    pub paused: bool,
    /// The alert segments (what fires, Slack, desktop notifications, a problem),
    /// or the answer to a key; empty when alerts are not running (demo).
    pub alerts: Vec<AlertPart>,
    /// Alerts firing in the alert state, when alerts run (for the anomaly pane).
    pub alerts_firing: Option<usize>,
    /// Names the watched table has no column for (they read "(none)").
    pub absent: Vec<crate::model::Dim>,
    /// Firing in the shared alert state but not (yet) found by this monitor's
    /// detector: the anomaly pane lists them after its own, marked.
    pub shared_alerts: Vec<Anomaly>,
    /// The source's own words (`SourceStatus::note`).
    pub source_note: Option<String>,
    /// Reading from a hot standby: its replay lag (`SourceStatus::replay_lag`).
    pub replay_lag: Option<crate::model::ReplayLag>,
    /// The keys in effect for the hints at the right (`[keys]` may rebind them).
    pub keys: KeyHints,
}

/// What one alert segment of the status bar says. Each is fitted on its own, so
/// the count and Slack's state show on a narrow terminal where the rest does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertPartKind {
    /// The answer to a key, or the silence prompt being typed: takes room before
    /// anything but the connection, cut to fit.
    Answer,
    /// "alerts: 2 firing, 1 pending".
    Count,
    /// "Slack: 4 sent" or "Slack off ...".
    Slack,
    /// A Slack configuration or alert-state error: cut rather than dropped.
    Problem,
    /// The alert state is not shared.
    State,
    /// "desktop: off".
    Desktop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertPart {
    pub kind: AlertPartKind,
    pub text: String,
    /// A shorter form where the whole does not fit.
    pub short: Option<String>,
    /// Drawn as a problem (red): a configuration error, a prompt's error.
    pub problem: bool,
}

impl AlertPart {
    pub fn new(kind: AlertPartKind, text: impl Into<String>) -> AlertPart {
        AlertPart {
            kind,
            problem: kind == AlertPartKind::Problem,
            text: text.into(),
            short: None,
        }
    }
    pub fn or_short(mut self, short: impl Into<String>) -> AlertPart {
        self.short = Some(short.into());
        self
    }
}

/// The status bar's key hints, from the keymap in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHints {
    pub quit: String,
    /// Up and down together: "↑↓", or "k/j" when rebound.
    pub select: String,
    pub refresh: String,
    pub help: String,
    /// Opens the anomaly log (named where the anomaly pane runs out of room).
    pub anomaly_log: String,
    /// Opens the alerts and silences pane (named where alerts fire that the
    /// anomaly pane does not list, such as a source's health).
    pub alerts: String,
}

impl Default for KeyHints {
    fn default() -> Self {
        KeyHints {
            quit: "q".into(),
            select: "↑↓".into(),
            refresh: "r".into(),
            help: "?".into(),
            anomaly_log: "n".into(),
            alerts: "L".into(),
        }
    }
}

/// How far the help and the anomaly log can scroll at the terminal's size, and
/// their page lengths (from the UI's layout, for the keys that scroll them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrollLimits {
    pub help: usize,
    pub help_page: usize,
    pub anomaly_log: usize,
    pub anomaly_log_page: usize,
}

impl Default for ScrollLimits {
    fn default() -> Self {
        ScrollLimits {
            help: usize::MAX,
            help_page: 10,
            anomaly_log: usize::MAX,
            anomaly_log_page: 10,
        }
    }
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
            rejected_by_reason: Vec::new(),
            watermark_lag_secs: None,
            paused: false,
            alerts: Vec::new(),
            alerts_firing: None,
            absent: Vec::new(),
            shared_alerts: Vec::new(),
            source_note: None,
            replay_lag: None,
            keys: KeyHints::default(),
        }
    }
}

/// Progress of the initial backfill. Steps are the source's queries (six-hour
/// chunks of the table, days of the demo): only their ratio means anything to a
/// reader. Until the first step is in, the body shows this progress; from then on
/// the dashboard, with what still waits marked.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BackfillProgress {
    pub done_steps: u64,
    pub total_steps: u64,
    /// Whole days of history being loaded (0: not known).
    pub history_days: u32,
    /// Every row from here on is in the store (None: nothing yet).
    pub loaded_from: Option<DateTime<Utc>>,
    /// The month's spend so far at the backfill's horizon, from one server sum
    /// (`SourceMsg::MonthSoFar`): the header's figure until the month is in.
    pub month_so_far: Option<crate::money::Money>,
}

/// Everything one frame draws. Built by the app, borrowed by the UI.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub overview: &'a Overview,
    pub status: &'a StatusView,
    /// Some while history is still loading: the body shows the progress until the
    /// first step is in (`loaded_from`), then the dashboard.
    pub backfill: Option<BackfillProgress>,
    /// Index of the selected feature row.
    pub selected: usize,
    /// The terminal may use colour (false under NO_COLOR).
    pub color: bool,
    /// The help overlay: (keys, what they do), generated from the keymap.
    pub help: Option<&'a [(String, String)]>,
    /// Lines the help is scrolled by.
    pub help_scroll: usize,
    /// The anomaly log (`n`), drawn over the body while open: lines scrolled by.
    pub anomaly_log: Option<usize>,
    /// The open drill-down level, drawn instead of the overview's panes.
    pub drill: Option<&'a DrillView>,
    /// The most expensive requests behind the selection, when asked for.
    pub top: &'a TopState,
    /// The window new drill-downs open with (shown on the overview too).
    pub window: Window,
    /// The alerts and silences pane (`L`), drawn over the body while open.
    pub alerts: Option<&'a super::alerts::AlertsPane>,
}

/// One row of a drill-down table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrillRow {
    pub name: String,
    /// The name in lower case, for the filter (computed once per build).
    pub key: String,
    /// In the window.
    pub agg: Agg,
    /// In the baseline (`DrillView::baseline`): the previous equal window, or the
    /// days just before the window; None when the store does not hold it.
    pub prev: Option<Agg>,
    /// Per sparkline slot over the window, oldest first.
    pub series: Vec<Agg>,
    /// The metric's value (None: a ratio without a denominator).
    pub value: Option<f64>,
    /// Of the parent's total (of the metric when additive, else of cost).
    pub share: Option<f64>,
    /// Against the baseline (per hour for additive metrics): 0.25 means 25% up.
    pub change: Option<f64>,
    /// The metric per slot, for the sparkline.
    pub spark: Vec<u64>,
}

/// What the change column compares the window with.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Baseline {
    /// The store does not hold enough history before the window.
    #[default]
    None,
    /// The previous window of equal length.
    PreviousWindow,
    /// The rate over these hours just before the window (up to 7 days), scaled to
    /// the window's length: for 30 days and month to date, whose previous equal
    /// window is older than the history kept.
    HoursBefore { hours: i64, window_hours: i64 },
    /// This hour so far (`elapsed_secs` of it) against the same part of the
    /// previous hour: its first `covered_secs` (whole minutes, from the minute
    /// buckets) when `exact`, else the whole previous hour pro rata
    /// (`covered_secs` = 3600), where the store keeps no minutes for the level.
    SamePartOfPreviousHour {
        elapsed_secs: i64,
        covered_secs: i64,
        exact: bool,
    },
}

impl Baseline {
    /// Factor turning an additive total of the baseline into the window's length.
    pub fn scale(self) -> f64 {
        match self {
            Baseline::HoursBefore {
                hours,
                window_hours,
            } if hours > 0 => window_hours as f64 / hours as f64,
            Baseline::SamePartOfPreviousHour {
                elapsed_secs,
                covered_secs,
                ..
            } if covered_secs > 0 => elapsed_secs as f64 / covered_secs as f64,
            _ => 1.0,
        }
    }
}

/// The larger chart of the selected row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrillChart {
    pub name: String,
    pub metric: Metric,
    /// Hourly, oldest first, ending with the current hour.
    pub hourly_48h: Vec<u64>,
    /// Daily in the billing zone, oldest first, ending with today.
    pub daily_30d: Vec<u64>,
}

/// A drill-down level as drawn: every row (built once per change) and the order of
/// the ones shown (filtered and sorted); the UI draws only the visible slice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DrillView {
    pub path: Vec<(Dim, String)>,
    pub dim: Dim,
    pub window: Window,
    pub window_start: DateTime<Utc>,
    pub metric: Metric,
    pub sort: SortKey,
    pub reverse: bool,
    pub filter: String,
    /// The filter is being typed.
    pub editing: bool,
    /// Total of the events matching the path, in the window.
    pub parent: Agg,
    /// What each row's `prev` covers, so the change column can say what it compares.
    pub baseline: Baseline,
    pub rows: Vec<DrillRow>,
    /// Indices into `rows` of the rows shown, in order.
    pub order: Vec<u32>,
    pub selected: usize,
    pub offset: usize,
    pub chart: Option<DrillChart>,
    /// The metric the rows' value, share, change and sparkline were computed for
    /// (None right after a build).
    pub metric_ready: Option<Metric>,
    /// A rebuild from the store is running: these rows are the previous ones (or,
    /// with no rows yet, the level is being opened). The header says "building…".
    pub building: bool,
    /// While the history loads: where the part that is in starts. The window's
    /// figures wait ("…") when `window_pending`, the change column when
    /// `baseline_pending` (its final baseline reaches further back).
    pub loaded_from: Option<DateTime<Utc>>,
    pub window_pending: bool,
    pub baseline_pending: bool,
}

impl DrillView {
    /// The `i`-th shown row.
    pub fn row_at(&self, i: usize) -> Option<&DrillRow> {
        self.order.get(i).and_then(|&r| self.rows.get(r as usize))
    }
}

/// The "top requests" pane: fetched on demand, newest request wins. `since` is set
/// when the pane lists an anomaly's requests since its onset (`a`), else the pane
/// covers the drill-down's window.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TopState {
    #[default]
    Closed,
    Loading {
        /// The path asked about, for the title.
        path: Vec<(Dim, String)>,
        since: Option<DateTime<Utc>>,
        /// Advances while waiting (the spinner).
        frame: usize,
    },
    Ready {
        path: Vec<(Dim, String)>,
        since: Option<DateTime<Utc>>,
        rows: Vec<RequestRow>,
    },
    Failed {
        path: Vec<(Dim, String)>,
        since: Option<DateTime<Utc>>,
        error: String,
    },
}

impl TopState {
    /// The onset the pane lists requests from, when it shows an anomaly's.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        match self {
            TopState::Closed => None,
            TopState::Loading { since, .. }
            | TopState::Ready { since, .. }
            | TopState::Failed { since, .. } => *since,
        }
    }
}
