//! What every command starts from: the validated config and the global flags.

use chrono::Utc;

use crate::cli::GlobalArgs;
use crate::config::{Config, ConfigOrigin};
use crate::detect::DetectParams;
use crate::source::columns::MapSpec;
use crate::source::connect::ConnectTarget;
use crate::source::error::SourceError;
use crate::source::pg::SourceOptions;
use crate::store::{Store, StoreConfig};

pub struct Context {
    pub cfg: Config,
    pub origin: ConfigOrigin,
    pub global: GlobalArgs,
}

/// Hours a one-shot command would keep in full detail, were old hours kept coarse
/// (see `one_shot_store_config`): the longest window its rules explain with
/// combinations (today, for `today_vs_7d`'s contributors) and a day of margin.
pub const ONE_SHOT_DETAIL_HOURS: i64 = 48;

/// Whether `snapshot` and `check` keep hours older than [`ONE_SHOT_DETAIL_HOURS`]
/// coarse. Switched off in session 10 when the backtest's recurring jobs paged 49
/// times instead of 7 (a coarse hour's users came per day, so a nightly batch's
/// user baseline spread over the day); on since the coarse backfill sends each
/// hour's biggest users (BACKTEST.md, session 11).
pub const ONE_SHOT_COARSE: bool = true;

impl Context {
    /// History kept in memory: the view window, and at least five weeks so that
    /// same-hour-of-week baselines exist (the current month is always kept too).
    pub fn store_config(&self) -> StoreConfig {
        let window_hours = self.cfg.view.window.as_secs().div_ceil(3600) as i64;
        StoreConfig {
            calendar: self.cfg.calendar(),
            retention_hours: window_hours.max(35 * 24),
            ..StoreConfig::default()
        }
    }

    /// The store of a one-shot command (`snapshot`, `check`): with
    /// [`ONE_SHOT_COARSE`], hours older than [`ONE_SHOT_DETAIL_HOURS`] are read and
    /// kept coarse (per-dimension totals,
    /// users per day), so a cron `check` on a table of millions of end users costs
    /// about one scan, not one group per row. Nothing it prints needs their
    /// combinations: a user list over a window that starts in a coarse day asks the
    /// database for that day's part (`report::users_edge`).
    pub fn one_shot_store_config(&self) -> StoreConfig {
        StoreConfig {
            detail_hours: ONE_SHOT_COARSE.then_some(ONE_SHOT_DETAIL_HOURS),
            ..self.store_config()
        }
    }

    pub fn new_store(&self) -> Store {
        Store::new(self.store_config(), Utc::now())
    }

    pub fn detect_params(&self) -> DetectParams {
        DetectParams::from(&self.cfg)
    }

    /// What the PostgreSQL source needs: the table and column map of the preset
    /// (`--preset`, else `source.preset`) with `[source]`'s overrides.
    pub fn source_options(&self) -> color_eyre::Result<SourceOptions> {
        let map = MapSpec::build(
            &self.cfg.source,
            self.global.preset,
            &self.cfg.database.table,
        )
        .map_err(|e| color_eyre::eyre::eyre!(e))?
        .with_prices(self.cfg.prices.clone());
        let mut opts = SourceOptions::new(&self.cfg.database, self.store_config()).with_map(map);
        opts.tenant = self.tenant();
        opts.primary = self.primary_target()?;
        Ok(opts)
    }

    /// `--tenant`, else the config's `database.tenant`.
    pub fn tenant(&self) -> Option<String> {
        self.global
            .tenant
            .clone()
            .or_else(|| self.cfg.database.tenant.clone())
    }

    /// The primary, when the read URL is a replica: `--primary-url`,
    /// `BURNRATE_PRIMARY_URL`, then `database.primary_url`; None when none is given.
    pub fn primary_target(&self) -> Result<Option<ConnectTarget>, SourceError> {
        ConnectTarget::resolve_primary(
            self.global.primary_url.as_deref(),
            self.cfg.database.primary_url.as_deref(),
        )
    }

    /// Where burnrate writes (alert state, rollup rolls, `db init`): the primary if
    /// one is given, else the read target.
    pub fn write_target(&self) -> Result<ConnectTarget, SourceError> {
        match self.primary_target()? {
            Some(p) => Ok(p),
            None => self.connect_target(),
        }
    }

    /// `--database-url`, `DATABASE_URL`, `database.url`, then the libpq variables.
    pub fn connect_target(&self) -> Result<ConnectTarget, SourceError> {
        ConnectTarget::resolve(
            self.global.database_url.as_deref(),
            self.cfg.database.url.as_deref(),
        )
    }
}
