//! Configuration: `config/burnrate.toml` keys, merged with flags and environment into
//! one validated `Config`.
//!
//! Lookup order: `--config PATH`, `$BURNRATE_CONFIG`, `$XDG_CONFIG_HOME/burnrate/
//! burnrate.toml` (or `~/.config/...`), then built-in defaults. A file named
//! explicitly must exist; the XDG file is optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};

use crate::calendar::Calendar;
use crate::money::Money;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    /// The table's layout: preset, table and column map (`[source]`).
    pub source: crate::source::columns::SourceConfig,
    /// USD per million tokens per model, for rows that log no cost (`[prices]`).
    pub prices: crate::source::prices::PriceList,
    pub budget: BudgetConfig,
    pub quota: QuotaConfig,
    pub billing: BillingConfig,
    pub view: ViewConfig,
    pub detect: DetectConfig,
    pub log: LogConfig,
    pub alerts: AlertsConfig,
    /// Dashboard keys by action name, replacing that action's default keys
    /// (`quit = ["q", "Ctrl-c"]`); actions not named keep their defaults.
    pub keys: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// postgres://user@host:port/db; `--database-url` and `DATABASE_URL` win over it.
    pub url: Option<String>,
    /// The primary's URL when `url` is a read replica (a streaming hot standby):
    /// burnrate reads from `url` and writes here (the shared alert state, silences
    /// and alert log, the rollup's rolls, `db init`). `--primary-url` and
    /// `BURNRATE_PRIMARY_URL` win over it. Unset: writes go to `url`, and on a
    /// standby the alert state stays in a local file (said in the status bar).
    pub primary_url: Option<String>,
    /// The table to watch, optionally schema-qualified ("public.cost_events").
    pub table: String,
    /// How often the tail polls for new rows.
    #[serde(with = "humantime_serde_compat")]
    pub refresh_interval: Duration,
    /// Server-side limit for any one query.
    #[serde(with = "humantime_serde_compat")]
    pub statement_timeout: Duration,
    /// Rows read per tail query at most; a larger backlog takes several polls.
    pub tail_batch_rows: u32,
    /// Without a tx column: how long a gap in the id sequence is waited for.
    #[serde(with = "humantime_serde_compat")]
    pub id_gap_settle: Duration,
    /// Only this tenant's rows in every query, screen and export (`--tenant` wins).
    pub tenant: Option<String>,
    /// LISTEN on this channel and poll at once when it is notified (the trigger of
    /// `burnrate db init --notify`); unset: poll every `refresh_interval` only.
    pub notify_channel: Option<String>,
    /// Read history from the hourly rollup made by `burnrate db init --rollup`, and
    /// keep it up to date while tailing (one instance at a time).
    pub rollup: bool,
    /// How often the rolling instance adds the new rows to the rollup.
    #[serde(with = "humantime_serde_compat")]
    pub rollup_every: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Monthly budget in USD; gauges and forecasts compare against it.
    pub monthly_usd: Option<Money>,
    /// Monthly budget per feature, by feature name.
    pub features: BTreeMap<String, Money>,
    /// The seed rule "forecast above the budget by more than 10%": 0.10.
    pub forecast_over_ratio: f64,
    /// The seed rule "the day's total above monthly budget / days in month".
    pub daily_pace: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            monthly_usd: None,
            features: BTreeMap::new(),
            forecast_over_ratio: 0.10,
            daily_pace: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Warn when month-to-date spend reaches this share of a quota (the seed's 80%).
    pub warn_at: f64,
    /// Monthly quota per tenant, by tenant_id.
    pub tenants: BTreeMap<String, Money>,
    /// Monthly quota per user or key, by user_id.
    pub users: BTreeMap<String, Money>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            warn_at: 0.8,
            tenants: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// IANA name ("UTC", "America/New_York"): where days and months start.
    #[serde(deserialize_with = "de_tz", serialize_with = "ser_tz")]
    pub time_zone: Tz,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ViewConfig {
    /// The default time window of snapshots and tables.
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    /// Users listed in snapshots (`--top` wins).
    pub top: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// The seed rule: today's spend above this multiple of the 7-day average at the
    /// same time of day (1.5 = "50% above").
    pub today_vs_week_ratio: f64,
    /// Short-window spike: trailing window spend above this multiple of its baseline.
    pub spike_ratio: f64,
    /// Ignore anomalies whose excess over the expected spend is below this.
    pub min_excess_usd: Money,
    /// 15-minute spike threshold (shorter windows need a higher bar).
    pub spike_ratio_15m: f64,
    /// 60-minute spike threshold.
    pub spike_ratio_60m: f64,
    /// Robust z-score (log space) a 60-minute window must exceed; 15 minutes need
    /// 0.5 more, 5 minutes 1 more.
    pub spike_z: f64,
    /// Robust z-score of today-so-far against the previous 7 days.
    pub today_z: f64,
    /// Floor of the robust scale (1.4826 x MAD of log costs).
    pub mad_floor: f64,
    /// Consecutive evaluations (one a minute) a spike must hold before it shows.
    pub pending_evaluations: u32,
    /// A user or key: the minimum excess for a runaway (user baselines are noisy).
    pub runaway_min_excess_usd: Money,
    /// A user's share of a feature's spend in the last hour that counts as a runaway
    /// (when at least 3x its usual share).
    pub runaway_share: f64,
    /// A user's requests in the last 5 or 15 minutes at this multiple of its busiest
    /// usual (p90 of its baseline) count as a runaway loop.
    pub runaway_request_ratio: f64,
    /// ...when also at least this many requests above it in 15 minutes (scaled for 5).
    pub runaway_min_requests: f64,
    /// The seed rule "a feature above 150% of its daily average" (whole days).
    pub daily_average_ratio: f64,
    /// EWMA smoothing of daily totals for slow drift.
    pub drift_lambda: f64,
    /// EWMA control limit in reference standard deviations.
    pub drift_sigmas: f64,
    /// A drift must also be at least this ratio above the reference level.
    pub drift_min_ratio: f64,
}

/// `[alerts]`: when alert messages go out, where to, and the monitor-health alerts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Re-send an alert that is still firing this often (unless acknowledged).
    #[serde(with = "humantime_serde_compat")]
    pub repeat_interval: Duration,
    /// Send a message when an announced alert resolves.
    pub send_resolved: bool,
    /// An alert no longer seen keeps firing this long before it resolves (flapping).
    #[serde(with = "humantime_serde_compat")]
    pub keep_firing_for: Duration,
    /// Alerts below this severity ("info", "warning", "critical") send no message.
    pub min_severity: crate::detect::Severity,
    /// A file whose first line is the Slack incoming-webhook URL;
    /// $BURNRATE_SLACK_WEBHOOK_URL wins. Never put the URL itself in this file.
    pub slack_webhook_file: Option<PathBuf>,
    /// Timeout of one try to post to Slack.
    #[serde(with = "humantime_serde_compat")]
    pub slack_timeout: Duration,
    /// Tries per Slack message (429 and 5xx are retried; other 4xx are not).
    pub slack_max_attempts: u32,
    /// Monitor health: the database unreachable this long is an alert.
    #[serde(with = "humantime_serde_compat")]
    pub database_unreachable_for: Duration,
    /// Monitor health: no new events this long is an alert, when the same time on
    /// previous days had at least `no_events_min_requests` requests.
    #[serde(with = "humantime_serde_compat")]
    pub no_events_for: Duration,
    pub no_events_min_requests: u32,
    /// Desktop notifications (D-Bus) from `watch`; false turns them off.
    pub desktop: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
            keep_firing_for: Duration::from_secs(5 * 60),
            min_severity: crate::detect::Severity::Warning,
            slack_webhook_file: None,
            slack_timeout: Duration::from_secs(10),
            slack_max_attempts: 5,
            database_unreachable_for: Duration::from_secs(5 * 60),
            no_events_for: Duration::from_secs(15 * 60),
            no_events_min_requests: 10,
            desktop: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log file; default `$XDG_STATE_HOME/burnrate/burnrate.log`.
    pub file: Option<PathBuf>,
    /// tracing filter, e.g. "info" or "burnrate=debug"; `RUST_LOG` wins.
    pub level: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            primary_url: None,
            table: "cost_events".into(),
            refresh_interval: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
            tail_batch_rows: 50_000,
            id_gap_settle: Duration::from_secs(60),
            tenant: None,
            notify_channel: None,
            rollup: false,
            rollup_every: Duration::from_secs(60),
        }
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            time_zone: chrono_tz::UTC,
        }
    }
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            window: Duration::from_secs(30 * 86_400),
            top: 20,
        }
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            today_vs_week_ratio: 1.5,
            spike_ratio: 2.5,
            min_excess_usd: Money::from_dollars(1),
            spike_ratio_15m: 2.0,
            spike_ratio_60m: 1.5,
            spike_z: 3.5,
            today_z: 3.0,
            mad_floor: 0.1,
            pending_evaluations: 2,
            runaway_min_excess_usd: Money::from_dollars(5),
            runaway_share: 0.5,
            runaway_request_ratio: 10.0,
            runaway_min_requests: 100.0,
            daily_average_ratio: 1.5,
            drift_lambda: 0.3,
            drift_sigmas: 3.0,
            drift_min_ratio: 1.15,
        }
    }
}

fn de_tz<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {s:?}; use an IANA name such as \"UTC\" or \"Europe/Berlin\""
        ))
    })
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// Durations as "2s", "500ms", "30d" in TOML.
pub(crate) mod humantime_serde_compat {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
    pub fn serialize<S: serde::Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }
}

/// Parses "2s", "500ms", "15m", "24h", "30d", "1w".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"2s\", \"15m\", \"30d\""))
}

/// A TOML line's key as a dotted path (`[detect]` then `spike_ratio = 3`:
/// "detect.spike_ratio"), or the table header's path; None for comments and blanks.
fn line_key(table: &mut String, line: &str) -> Option<String> {
    let unquote = |k: &str| {
        k.split('.')
            .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
            .collect::<Vec<_>>()
            .join(".")
    };
    let t = line.trim();
    if t.starts_with('[') {
        let inner = t.trim_start_matches('[');
        let inner = inner.split(']').next().unwrap_or("");
        *table = unquote(inner);
        return Some(table.clone());
    }
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (key, _) = t.split_once('=')?;
    let key = unquote(key);
    Some(if table.is_empty() {
        key
    } else {
        format!("{table}.{key}")
    })
}

/// The dotted key whose value holds byte `offset` of a TOML text (the last key
/// started at or before it, so a multi-line array names its key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table = String::new();
    let mut key = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        if start > offset {
            break;
        }
        if let Some(k) = line_key(&mut table, line) {
            key = Some(k);
        }
        start += line.len();
    }
    key
}

/// The 1-based line that sets a dotted key (or opens its table), if any.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let mut table = String::new();
    let mut table_line = None;
    for (i, line) in text.lines().enumerate() {
        match line_key(&mut table, line) {
            Some(k) if k == dotted => return Some(i + 1),
            Some(k) if line.trim().starts_with('[') && dotted.starts_with(&format!("{k}.")) => {
                table_line = Some(i + 1)
            }
            _ => {}
        }
    }
    table_line
}

/// Where the config came from, for messages and `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    Flag(PathBuf),
    Env(PathBuf),
    Xdg(PathBuf),
    Defaults,
}

impl ConfigOrigin {
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigOrigin::Flag(p) | ConfigOrigin::Env(p) | ConfigOrigin::Xdg(p) => Some(p),
            ConfigOrigin::Defaults => None,
        }
    }
}

impl Config {
    pub fn calendar(&self) -> Calendar {
        Calendar::new(self.billing.time_zone)
    }

    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            // A type error's text has the line but not the key: name it.
            let key = e.span().and_then(|span| key_at(text, span.start));
            ConfigError::Parse {
                path: origin.to_path_buf(),
                message: match key {
                    Some(key) => format!("key `{key}`: {e}"),
                    None => e.to_string(),
                },
            }
        })?;
        cfg.validate(&origin.display().to_string())
            .map_err(|e| match e {
                // A value that parses but makes no sense: say on which line it is.
                ConfigError::Invalid { path, message } => {
                    let line = message
                        .split_once("key `")
                        .and_then(|(_, rest)| rest.split_once('`'))
                        .and_then(|(key, _)| line_of_key(text, key));
                    ConfigError::Invalid {
                        path: match line {
                            Some(n) => format!("{path}, line {n}"),
                            None => path,
                        },
                        message,
                    }
                }
                other => other,
            })?;
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: &str| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                message: format!("key `{key}`: {msg}"),
            })
        };
        if let Err(msg) = crate::app::keymap::Keymap::with_overrides(&self.keys) {
            return Err(ConfigError::Invalid {
                path: origin.to_string(),
                message: msg,
            });
        }
        if self.database.refresh_interval < Duration::from_millis(100) {
            return bad("database.refresh_interval", "must be at least 100ms");
        }
        if self.database.table.trim().is_empty() {
            return bad("database.table", "must name a table, e.g. \"cost_events\"");
        }
        if self.database.tail_batch_rows == 0 {
            return bad("database.tail_batch_rows", "must be at least 1");
        }
        if self.database.rollup_every < Duration::from_secs(1) {
            return bad("database.rollup_every", "must be at least 1s");
        }
        if let Some(channel) = &self.database.notify_channel
            && let Err(msg) = crate::source::notify::check_channel(channel)
        {
            return bad("database.notify_channel", &msg);
        }
        if let Err(message) =
            crate::source::columns::MapSpec::build(&self.source, None, &self.database.table)
        {
            return Err(ConfigError::Invalid {
                path: origin.to_string(),
                message,
            });
        }
        if let Err(message) = crate::source::prices::validate(&self.prices) {
            return Err(ConfigError::Invalid {
                path: origin.to_string(),
                message,
            });
        }
        if self.source.overlap < Duration::from_secs(1)
            || self.source.overlap > Duration::from_secs(86_400)
        {
            return bad("source.overlap", "must be between 1s and 24h, e.g. \"2m\"");
        }
        if let Some(t) = &self.source.table
            && let Err(e) = crate::source::schema::TableName::parse(t)
        {
            return bad("source.table", &e.to_string());
        }
        if self.view.window < Duration::from_secs(3600)
            || self.view.window > Duration::from_secs(400 * 86_400)
        {
            return bad("view.window", "must be between 1h and 400d");
        }
        if let Some(b) = self.budget.monthly_usd
            && b < Money::ZERO
        {
            return bad("budget.monthly_usd", "must not be negative");
        }
        let above_one = |r: f64| r.is_finite() && r > 1.0;
        let d = &self.detect;
        for (key, r) in [
            ("detect.today_vs_week_ratio", d.today_vs_week_ratio),
            ("detect.spike_ratio", d.spike_ratio),
            ("detect.spike_ratio_15m", d.spike_ratio_15m),
            ("detect.spike_ratio_60m", d.spike_ratio_60m),
            ("detect.daily_average_ratio", d.daily_average_ratio),
            ("detect.drift_min_ratio", d.drift_min_ratio),
            ("detect.runaway_request_ratio", d.runaway_request_ratio),
        ] {
            if !above_one(r) {
                return bad(key, "must be a ratio greater than 1.0");
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        for (key, x) in [
            ("detect.spike_z", d.spike_z),
            ("detect.today_z", d.today_z),
            ("detect.mad_floor", d.mad_floor),
            ("detect.drift_sigmas", d.drift_sigmas),
            ("detect.runaway_min_requests", d.runaway_min_requests),
        ] {
            if !positive(x) {
                return bad(key, "must be a number greater than 0");
            }
        }
        let share = |x: f64| x.is_finite() && x > 0.0 && x <= 1.0;
        if !share(d.drift_lambda) {
            return bad("detect.drift_lambda", "must be in (0, 1]");
        }
        if !share(d.runaway_share) {
            return bad("detect.runaway_share", "must be in (0, 1]");
        }
        if !(1..=10).contains(&d.pending_evaluations) {
            return bad("detect.pending_evaluations", "must be between 1 and 10");
        }
        let a = &self.alerts;
        if a.repeat_interval < Duration::from_secs(60) {
            return bad("alerts.repeat_interval", "must be at least 1m, e.g. \"4h\"");
        }
        if a.slack_timeout < Duration::from_millis(100)
            || a.slack_timeout > Duration::from_secs(300)
        {
            return bad("alerts.slack_timeout", "must be between 100ms and 5m");
        }
        if !(1..=20).contains(&a.slack_max_attempts) {
            return bad("alerts.slack_max_attempts", "must be between 1 and 20");
        }
        if a.database_unreachable_for < Duration::from_secs(60)
            || a.no_events_for < Duration::from_secs(60)
        {
            return bad(
                "alerts.database_unreachable_for / alerts.no_events_for",
                "must be at least 1m",
            );
        }
        if !share(self.quota.warn_at) {
            return bad("quota.warn_at", "must be in (0, 1], e.g. 0.8");
        }
        if !(self.budget.forecast_over_ratio.is_finite() && self.budget.forecast_over_ratio >= 0.0)
        {
            return bad("budget.forecast_over_ratio", "must be 0 or more, e.g. 0.10");
        }
        for (section, map) in [
            ("budget.features", &self.budget.features),
            ("quota.tenants", &self.quota.tenants),
            ("quota.users", &self.quota.users),
        ] {
            if let Some((name, _)) = map.iter().find(|(_, v)| **v <= Money::ZERO) {
                return bad(&format!("{section}.{name}"), "must be greater than 0");
            }
        }
        Ok(())
    }

    /// Finds and loads the config in lookup order.
    pub fn load(flag: Option<&Path>) -> Result<(Config, ConfigOrigin), ConfigError> {
        let env = std::env::var_os("BURNRATE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let origin = match (flag, env) {
            (Some(p), _) => ConfigOrigin::Flag(p.to_path_buf()),
            (None, Some(p)) => ConfigOrigin::Env(p),
            (None, None) => match xdg_config_file() {
                Some(p) if p.is_file() => ConfigOrigin::Xdg(p),
                _ => ConfigOrigin::Defaults,
            },
        };
        let cfg = match origin.path() {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, p)?
            }
            None => Config::default(),
        };
        Ok((cfg, origin))
    }
}

/// `$XDG_CONFIG_HOME/burnrate/burnrate.toml`, else `~/.config/burnrate/burnrate.toml`.
pub fn xdg_config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))?;
    Some(base.join("burnrate").join("burnrate.toml"))
}

/// `$XDG_STATE_HOME/burnrate/burnrate.log`, else `~/.local/state/burnrate/burnrate.log`.
pub fn default_log_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("burnrate").join("burnrate.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_equals_defaults() {
        let text = include_str!("../config/burnrate.toml");
        let cfg = Config::from_toml(text, Path::new("config/burnrate.toml")).unwrap();
        assert_eq!(
            cfg,
            Config::default(),
            "config/burnrate.toml must document the defaults"
        );
    }

    #[test]
    fn keys_override_defaults() {
        let cfg = Config::from_toml(
            "[budget]\nmonthly_usd = 1500.25\n[billing]\ntime_zone = \"Asia/Kolkata\"\n\
             [database]\nrefresh_interval = \"500ms\"\n[view]\nwindow = \"7d\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(cfg.budget.monthly_usd, Some("1500.25".parse().unwrap()));
        assert_eq!(cfg.billing.time_zone.name(), "Asia/Kolkata");
        assert_eq!(cfg.database.refresh_interval, Duration::from_millis(500));
        assert_eq!(cfg.view.window, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn the_keys_section_rebinds_actions_and_refuses_clashes() {
        let cfg = Config::from_toml("[keys]\nquit = [\"x\"]\n", Path::new("k.toml")).unwrap();
        assert_eq!(cfg.keys["quit"], ["x"]);
        let err = Config::from_toml("[keys]\nquit = [\"j\"]\n", Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k.toml") && err.contains("j is bound to both"),
            "{err}"
        );
        let err = Config::from_toml("[keys]\nqiut = [\"x\"]\n", Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys.qiut: no such action"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let err = Config::from_toml(
            "[budget]\nmonthly_usd = 10\nmontly = 3\n",
            Path::new("/etc/b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/etc/b.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("montly"), "{err}");

        let err = Config::from_toml(
            "[billing]\ntime_zone = \"Mars/Olympus\"\n",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("Mars/Olympus"),
            "{err}"
        );

        let err = Config::from_toml(
            "[database]\nrefresh_interval = \"fast\"\n",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("refresh_interval") && err.contains("fast"),
            "{err}"
        );

        let err = Config::from_toml(
            "[database]\nrefresh_interval = \"1ms\"\n",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.refresh_interval"), "{err}");
        assert!(
            err.contains("b.toml, line 2"),
            "a semantic error names the line: {err}"
        );
    }

    #[test]
    fn type_errors_name_the_dotted_key_and_semantic_ones_the_line() {
        let text =
            "# header\n[database]\ntable = \"cost_events\"\n\n[detect]\nspike_ratio = \"high\"\n";
        let err = Config::from_toml(text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `detect.spike_ratio`"), "{err}");
        assert!(err.contains("line 6"), "{err}");

        let text = "[alerts]\nrepeat_interval = \"1h\"\n\n[detect]\n# why\nspike_ratio = 0.5\n";
        let err = Config::from_toml(text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.toml, line 6") && err.contains("detect.spike_ratio"),
            "{err}"
        );
        // Keys of the source's map are found too.
        let text = "[source]\npreset = \"seed\"\n[source.columns]\ntimestamp = \"\"\n";
        let err = Config::from_toml(text, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4"), "{err}");
    }
}
