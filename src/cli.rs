//! Command-line interface. Global options work before or after the subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "burnrate",
    version,
    about = "A live terminal monitor for LLM spend",
    long_about = "A live terminal monitor for LLM spend.\n\n\
        Watches a PostgreSQL table with one row per LLM request (cost_events) and shows \
        spend by feature, user, model, tenant and time, month-to-date against budget, \
        a month-end forecast and anomalies. Try `burnrate demo` without a database."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// PostgreSQL URL (postgres://user@host:port/db). Else $DATABASE_URL, the config's
    /// database.url, then the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE...
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// The primary's URL when --database-url is a read replica (hot standby): alert
    /// state, silences, rollup rolls and `db init` write there. Else
    /// $BURNRATE_PRIMARY_URL, then the config's database.primary_url.
    #[arg(long, global = true, value_name = "URL")]
    pub primary_url: Option<String>,
    /// Config file. Else $BURNRATE_CONFIG, then ~/.config/burnrate/burnrate.toml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The table's layout: burnrate (our cost_events, the default), seed (the seed
    /// article's minimal table) or litellm (LiteLLM's "LiteLLM_SpendLogs"). Else the
    /// config's source.preset.
    #[arg(long, global = true, value_enum, value_name = "NAME")]
    pub preset: Option<crate::source::columns::Preset>,
    /// Only this tenant's rows, in every query, screen and export. Else the config's
    /// database.tenant. (Isolation between tenants is the database's job: see
    /// `db init --rls`.)
    #[arg(long, global = true, value_name = "ID")]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The live dashboard against PostgreSQL (the default command).
    Watch,
    /// The dashboard on a built-in synthetic stream: no database needed.
    Demo(DemoArgs),
    /// Schema management.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Write realistic synthetic cost events into PostgreSQL.
    Simulate(SimulateArgs),
    /// One pass of the pipeline printed as JSON (or JSON Lines with --follow).
    Snapshot(SnapshotArgs),
    /// Billing export: spend per group for one calendar month, as CSV or JSON.
    Export(ExportArgs),
    /// Checks the setup: connection, table and column map, indexes, rows, tail mode.
    /// Exit code 0 when all is well, 1 when something needs fixing.
    Doctor(DoctorArgs),
    /// One alert evaluation for cron or a systemd timer: sends what is due (once,
    /// however many monitors run), prints the firing alerts. Exit code 0: none
    /// firing, 1: some firing, 2: error.
    Check(CheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the cost_events table and its indexes (idempotent).
    Init(DbInitArgs),
    /// Add the rows committed since the last roll to the hourly rollup, once (for
    /// cron when no dashboard runs; a running one with database.rollup does this).
    Rollup,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DbInitArgs {
    /// Also enable row-level security: members of burnrate_tenant_monitor see only
    /// their tenant's rows (map logins to tenants in burnrate_tenant_logins).
    #[arg(long)]
    pub rls: bool,
    /// Also add a trigger that sends NOTIFY on every insert statement, so burnrate
    /// polls as soon as rows commit (channel: database.notify_channel, else
    /// "burnrate_events").
    #[arg(long)]
    pub notify: bool,
    /// Create the table partitioned by month on timestamp (12 months back, 3 ahead,
    /// and a default partition); run again monthly to add the months ahead. Refused
    /// for an existing plain table.
    #[arg(long)]
    pub partitioned: bool,
    /// Also create the hourly rollup (`<table>_rollup`) and fill it with every row
    /// committed so far; then set database.rollup = true (see the README).
    #[arg(long)]
    pub rollup: bool,
    /// With --rollup: empty the rollup and fill it again (after changing the
    /// billing time zone or the price list).
    #[arg(long, requires = "rollup")]
    pub rebuild: bool,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Seed of the synthetic stream (same seed, same history).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Live events per second.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Seconds after start at which the runaway spike begins.
    #[arg(long, default_value_t = 10)]
    pub spike_after: u64,
    /// A pause after each day of history, to watch the dashboard fill in as it does
    /// over a slow database (e.g. 200ms); by default the history comes at once.
    #[arg(long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub history_pace: Option<Duration>,
}

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Days of history to write before live traffic (fast, with COPY).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub backfill_days: u32,
    /// Live events per second on average: live traffic follows the same daily and
    /// weekly rhythm as the history (see --flat). 0 writes the backfill only.
    #[arg(long, default_value_t = 0.0, value_name = "EVENTS_PER_S")]
    pub rate: f64,
    /// How long to write live traffic ("90s", "10m"); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Random seed: the same seed writes the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A runaway on one feature from now on: FEATURE:FACTOR, e.g. support_qa:8.
    #[arg(long, value_parser = parse_spike, value_name = "FEATURE:FACTOR")]
    pub spike: Option<Spike>,
    /// Average events per second of the history. Default: --rate, so that live
    /// traffic continues the history and a clean simulation shows no anomaly
    /// (5 when --rate is 0).
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub backfill_rate: Option<f64>,
    /// Live traffic at exactly --rate events per second, without the daily rhythm
    /// (for load tests).
    #[arg(long)]
    pub flat: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DoctorArgs {
    /// The same findings as one JSON object on stdout (same exit codes).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SnapshotArgs {
    /// Print JSON (the only format for now; required for forward compatibility).
    #[arg(long)]
    pub json: bool,
    /// The time window of the breakdowns ("1h", "24h", "7d", "30d").
    #[arg(long, value_parser = parse_window)]
    pub window: Option<AskedWindow>,
    /// How many users to list.
    #[arg(long)]
    pub top: Option<usize>,
    /// Keep tailing and print one JSON object per line after every refresh.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CheckArgs {
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Evaluate and print what would be sent, without sending or storing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// The calendar month in the billing time zone, e.g. 2026-11.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month,
          required_unless_present = "from", conflicts_with_all = ["from", "to"])]
    pub month: Option<chrono::NaiveDate>,
    /// Instead of --month: the first day of any range (billing time zone), with --to.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day, requires = "to")]
    pub from: Option<chrono::NaiveDate>,
    /// The last day of the range, included.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day, requires = "from")]
    pub to: Option<chrono::NaiveDate>,
    /// Group by these, in this order: tenant, feature, model, user, region.
    #[arg(long, value_name = "DIMS", value_delimiter = ',', default_value = "tenant,feature", value_parser = parse_dim)]
    pub by: Vec<crate::model::Dim>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write here (atomically: a failed export leaves no partial file) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

fn parse_month(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(&format!("{}-01", s.trim()), "%Y-%m-%d")
        .map_err(|_| format!("expected a month as YYYY-MM (e.g. 2026-11), got {s:?}"))
}

fn parse_day(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a day as YYYY-MM-DD (e.g. 2026-11-03), got {s:?}"))
}

fn parse_dim(s: &str) -> Result<crate::model::Dim, String> {
    use crate::model::Dim;
    Dim::ALL
        .into_iter()
        .find(|d| d.name() == s.trim())
        .ok_or_else(|| {
            format!("unknown dimension {s:?}: use tenant, feature, model, user or region")
        })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    pub feature: String,
    pub factor: f64,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// A window as given on the command line: its length, and its text as asked, which
/// the snapshot reports ("24h" stays "24h").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedWindow {
    pub duration: Duration,
    pub text: String,
}

fn parse_window(s: &str) -> Result<AskedWindow, String> {
    let duration = crate::config::parse_duration(s)?;
    if duration < Duration::from_secs(60) {
        return Err(format!(
            "the window {s:?} is empty or shorter than a minute: give a length such as 1h, 24h, 7d or 30d"
        ));
    }
    Ok(AskedWindow {
        duration,
        text: s.trim().to_string(),
    })
}

fn parse_spike(s: &str) -> Result<Spike, String> {
    let (feature, factor) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected FEATURE:FACTOR (e.g. support_qa:8), got {s:?}"))?;
    let factor: f64 = factor
        .parse()
        .map_err(|_| format!("factor {factor:?} is not a number"))?;
    if feature.is_empty() || factor.is_nan() || factor <= 0.0 || !factor.is_finite() {
        return Err(format!(
            "expected a feature name and a positive factor, got {s:?}"
        ));
    }
    Ok(Spike {
        feature: feature.to_string(),
        factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_before_or_after() {
        let a = Cli::parse_from([
            "burnrate",
            "--database-url",
            "postgres://x/y",
            "snapshot",
            "--json",
        ]);
        let b = Cli::parse_from([
            "burnrate",
            "snapshot",
            "--json",
            "--database-url",
            "postgres://x/y",
        ]);
        assert_eq!(a.global.database_url, b.global.database_url);
        assert!(matches!(
            b.command,
            Some(Command::Snapshot(SnapshotArgs { json: true, .. }))
        ));
    }

    #[test]
    fn spike_and_durations() {
        let c = Cli::parse_from([
            "burnrate",
            "simulate",
            "--spike",
            "support_qa:8",
            "--duration",
            "90s",
        ]);
        let Some(Command::Simulate(s)) = c.command else {
            panic!()
        };
        assert_eq!(
            s.spike,
            Some(Spike {
                feature: "support_qa".into(),
                factor: 8.0
            })
        );
        assert_eq!(s.duration, Some(Duration::from_secs(90)));
        assert!(Cli::try_parse_from(["burnrate", "simulate", "--spike", "chat"]).is_err());
        assert!(Cli::try_parse_from(["burnrate", "simulate", "--spike", "chat:-1"]).is_err());
    }
}
