//! The PostgreSQL source: one backfill with server-side aggregation, then a tail of
//! new rows only (see `backfill.rs`, `tail.rs`, and `run.rs` for the long-running
//! task with reconnects).
//!
//! Exactly-once across reconnects rests on two pieces of state that outlive a
//! connection: the backfill's per-step horizon (what each chunk has already sent)
//! and the tail cursor. A new connection resumes from them; nothing is re-sent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_postgres::Client;

use super::backfill::BackfillPlan;
use super::columns::MapSpec;
use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::idgaps::GapTracker;
use super::keyset::KeysetTracker;
use super::schema::{TableInfo, TableName, inspect};
use super::sql::Sql;
use crate::config::DatabaseConfig;
use crate::model::{Connection, SourceMsg, SourceStatus, TailMode};
use crate::store::StoreConfig;

/// What the PostgreSQL source needs besides where to connect.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The table, optionally schema-qualified; validated before any SQL is built.
    pub table: String,
    pub refresh_interval: Duration,
    /// Set on the session; zero means no limit (as in PostgreSQL).
    pub statement_timeout: Duration,
    pub tail_batch_rows: u32,
    /// Id-overlap mode: how long a missing id is awaited.
    pub id_gap_settle: Duration,
    /// Decides the history to backfill and how buckets align.
    pub store: StoreConfig,
    /// Which columns hold what (the preset and `[source.columns]`).
    pub map: MapSpec,
    /// Only this tenant's rows (`--tenant`), in every statement.
    pub tenant: Option<String>,
    /// LISTEN here; a notification wakes whoever `PgSource::wake_on_notify` named.
    pub notify_channel: Option<String>,
    /// Rollup mode (see `source::rollup`).
    pub rollup: bool,
    pub rollup_every: Duration,
    /// Groups per page of a backfill query: one message to the store each, and the
    /// most the backfill holds at once. Tests shrink it to cut a chunk mid-way.
    pub backfill_page_groups: usize,
    /// The primary, when the source reads from a hot standby: the rollup's rolls
    /// go there, and the replay lag is measured against it (`database.primary_url`).
    pub primary: Option<ConnectTarget>,
    /// Where the long-running task leaves the hour shapes it reads once after the
    /// backfill (see `source::shapes`): the dashboard's store. None: not read.
    pub shapes_to: Option<crate::model::ShapeInbox>,
    /// Sum the billing month first and send it (`SourceMsg::MonthSoFar`) before
    /// the history: for a screen that shows it while the rest loads. Off for the
    /// one-shot commands, which wait for the whole history anyway.
    pub month_first: bool,
}

impl SourceOptions {
    pub fn new(db: &DatabaseConfig, store: StoreConfig) -> SourceOptions {
        SourceOptions {
            table: db.table.clone(),
            refresh_interval: db.refresh_interval,
            statement_timeout: db.statement_timeout,
            tail_batch_rows: db.tail_batch_rows.max(1),
            id_gap_settle: db.id_gap_settle,
            store,
            map: MapSpec::build(&Default::default(), None, &db.table).unwrap_or_default(),
            tenant: db.tenant.clone(),
            notify_channel: db.notify_channel.clone(),
            rollup: db.rollup,
            rollup_every: db.rollup_every,
            backfill_page_groups: super::run::FACTS_PER_MESSAGE,
            primary: None,
            shapes_to: None,
            month_first: false,
        }
    }

    /// Watches the map's table through the map.
    pub fn with_map(mut self, map: MapSpec) -> SourceOptions {
        self.table = map.table.clone();
        self.map = map;
        self
    }
}

/// What one `poll` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Rows read (rejected ones included).
    pub rows: u64,
    pub rejected: u64,
    /// Queries run for new rows (a backlog takes several).
    pub batches: u32,
    pub watermark_lag_secs: Option<i64>,
    /// Id-overlap mode: ids given up in this poll after the settle time.
    pub given_up_ids: u64,
}

/// Where the tail resumes.
#[derive(Debug, Clone)]
pub(super) enum Cursor {
    /// The previous poll's snapshot (see `txcursor.rs`).
    Tx(super::txcursor::TxCursor),
    Id(GapTracker),
    Keyset(KeysetTracker),
    Window(super::window::WindowTracker),
}

/// A live connection and what was learnt about the table on it.
pub(super) struct Live {
    pub(super) client: Client,
    pub(super) info: TableInfo,
    pub(super) sql: Sql,
}

/// Sends a status only when it changed, so a steady tail does not spam the channel.
pub(super) struct StatusSender {
    pub(super) endpoint: String,
    /// The names the column map leaves out (known once connected).
    pub(super) absent: Vec<crate::model::Dim>,
    /// What the status bar should say besides the mode (`SourceStatus::note`).
    pub(super) note: Option<String>,
    /// Reading from a hot standby: its replay lag as of the last poll.
    pub(super) replay_lag: Option<crate::model::ReplayLag>,
    last: Option<SourceStatus>,
}

impl StatusSender {
    pub(super) async fn send(
        &mut self,
        tx: &mpsc::Sender<SourceMsg>,
        connection: Connection,
        mode: TailMode,
        watermark_lag_secs: Option<i64>,
    ) -> Result<(), SourceError> {
        let status = SourceStatus {
            endpoint: self.endpoint.clone(),
            connection,
            mode,
            watermark_lag_secs,
            absent: self.absent.clone(),
            note: self.note.clone(),
            replay_lag: self.replay_lag.clone(),
        };
        if self.last.as_ref() == Some(&status) {
            return Ok(());
        }
        self.last = Some(status.clone());
        tx.send(SourceMsg::Status(status))
            .await
            .map_err(|_| SourceError::ChannelClosed)
    }

    pub(super) fn last(&self) -> Option<&SourceStatus> {
        self.last.as_ref()
    }
}

pub struct PgSource {
    pub(super) target: ConnectTarget,
    pub(super) opts: SourceOptions,
    pub(super) table: TableName,
    /// The table as messages show it.
    pub(super) table_text: String,
    pub(super) conn: Option<Live>,
    /// Chosen on the first connection and kept: the cursor's meaning depends on it.
    pub(super) mode: Option<TailMode>,
    /// The backfill in progress (kept across reconnects until it completes).
    pub(super) plan: Option<BackfillPlan>,
    /// Set once the backfill completed; the tail's position from then on.
    pub(super) cursor: Option<Cursor>,
    /// tx mode: the oldest transaction open on the server, when open long enough
    /// to name (it holds the xmin, and the rollup, back; the tail reads past it).
    pub(super) holder: Option<super::txcursor::TxHolder>,
    /// When the table's columns were last checked (on connecting): see
    /// `schema_recheck_due`.
    pub(super) checked_at: Option<std::time::Instant>,
    pub(super) status: StatusSender,
    /// Rows counted so far whose cost was computed from the price list.
    pub(super) computed_rows: u64,
    /// Notified on every NOTIFY of `opts.notify_channel` (see `source::notify`).
    wake: Option<Arc<Notify>>,
    /// The backfill read history from the rollup.
    pub(super) read_rollup: bool,
    /// Rollup mode on this connection: whether it won the election, and when it
    /// last rolled (reset on reconnecting, as the lock is the session's).
    pub(super) roller: Option<super::rollup::Roller>,
    /// The server is a hot standby (`pg_is_in_recovery()`, checked on connecting).
    pub(super) standby: bool,
    /// On a standby with a primary URL: a connection to the primary, for the
    /// rollup's rolls and the replay lag (see `source::replica`).
    pub(super) primary: super::replica::PrimaryLink,
    /// The hour shapes were read (or tried) for `opts.shapes_to`.
    pub(super) shapes_sent: bool,
}

impl PgSource {
    /// Validates the options; connects later, on first use.
    pub fn new(target: ConnectTarget, opts: SourceOptions) -> Result<PgSource, SourceError> {
        let table = TableName::parse(&opts.table)?;
        Ok(PgSource {
            table_text: table.to_string(),
            status: StatusSender {
                endpoint: target.endpoint.clone(),
                absent: Vec::new(),
                note: None,
                replay_lag: None,
                last: None,
            },
            target,
            opts,
            table,
            conn: None,
            mode: None,
            plan: None,
            cursor: None,
            holder: None,
            checked_at: None,
            computed_rows: 0,
            wake: None,
            read_rollup: false,
            roller: None,
            standby: false,
            primary: Default::default(),
            shapes_sent: false,
        })
    }

    /// Connects, sets the session up and checks the table's columns.
    pub async fn connect(
        target: ConnectTarget,
        opts: SourceOptions,
    ) -> Result<PgSource, SourceError> {
        let mut source = PgSource::new(target, opts)?;
        source.ensure_connected().await?;
        Ok(source)
    }

    pub fn endpoint(&self) -> &str {
        &self.target.endpoint
    }

    /// The names the column map leaves out (they read "(none)").
    pub fn absent_names(&self) -> &[crate::model::Dim] {
        &self.status.absent
    }

    /// Whether the backfill read history from the rollup (rollup mode).
    pub fn read_rollup(&self) -> bool {
        self.read_rollup
    }

    /// With `notify_channel` set, every connection LISTENs on it and a notification
    /// wakes `wake` (the run loop's "poll now").
    pub fn wake_on_notify(&mut self, wake: Arc<Notify>) {
        self.wake = Some(wake);
    }

    /// The tail mode (known after the first connection).
    pub fn mode(&self) -> Option<TailMode> {
        self.mode
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// The table as checked on the current connection.
    pub fn table_info(&self) -> Option<&TableInfo> {
        self.conn.as_ref().map(|c| &c.info)
    }

    /// Rows read so far whose cost was computed from the price list, not logged.
    pub fn computed_cost_rows(&self) -> u64 {
        self.computed_rows
    }

    pub fn backfill_done(&self) -> bool {
        self.cursor.is_some()
    }

    /// Drops the connection; the next call reconnects and resumes where it stopped.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// The status the source last reported, if any.
    pub fn last_status(&self) -> Option<&SourceStatus> {
        self.status.last()
    }

    /// Whether the server read from is a hot standby (known once connected).
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// On a standby: its replay lag as of the last poll.
    pub fn replay_lag(&self) -> Option<&crate::model::ReplayLag> {
        self.status.replay_lag.as_ref()
    }

    /// tx mode: the oldest transaction open on the server for more than a few
    /// seconds, as of the last poll.
    pub fn open_transaction(&self) -> Option<&super::txcursor::TxHolder> {
        self.holder.as_ref()
    }

    /// Reports a status (used by `run` for Connecting / Disconnected).
    pub async fn report(
        &mut self,
        tx: &mpsc::Sender<SourceMsg>,
        connection: Connection,
    ) -> Result<(), SourceError> {
        let mode = self.mode.unwrap_or(TailMode::TxWatermark);
        let lag = self.status.last().and_then(|s| s.watermark_lag_secs);
        self.status.send(tx, connection, mode, lag).await
    }

    pub(super) async fn ensure_connected(&mut self) -> Result<(), SourceError> {
        match &self.conn {
            Some(c) if !c.client.is_closed() => return Ok(()),
            Some(_) => {
                tracing::warn!(endpoint = %self.target.endpoint, "connection closed; reconnecting")
            }
            None => {}
        }
        self.conn = None;
        self.roller = None;
        let listen = self.opts.notify_channel.clone().zip(self.wake.clone());
        let client = self
            .target
            .connect_with(listen.as_ref().map(|(_, w)| w.clone()))
            .await?;
        let ctx = ErrorContext {
            endpoint: &self.target.endpoint,
            table: &self.table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let limit = client_deadline(self.opts.statement_timeout);
        let timeout_ms = format!("{}ms", self.opts.statement_timeout.as_millis());
        // `--tenant`: every statement reads the table through a filter on this.
        let tenant = self.opts.tenant.clone().unwrap_or_default();
        timed(&ctx, limit, "setting statement_timeout", async {
            client
                .execute(
                    // UTC: `timestamp without time zone` columns hold UTC times. No JIT:
                    // compiling a backfill day's scan took 0.8 of its 2.2 s (10M rows,
                    // BENCHMARKS.md), and the tail's small queries never gain from it.
                    "SELECT set_config('statement_timeout', $1, false), set_config('TimeZone', 'UTC', false), \
                            set_config('burnrate.tenant', $2, false), \
                            CASE WHEN current_setting('server_version_num')::int >= 110000 \
                                 THEN set_config('jit', 'off', false) END",
                    &[&timeout_ms, &tenant],
                )
                .await
        })
        .await?;
        let standby = timed(
            &ctx,
            limit,
            "checking whether the server is a standby",
            client.query_one(super::replica::IS_STANDBY, &[]),
        )
        .await?
        .try_get::<_, bool>(0)
        .unwrap_or(false);
        if standby {
            tracing::info!(
                endpoint = %self.target.endpoint,
                primary = self.opts.primary.as_ref().map(|p| p.endpoint.as_str()),
                "the server is a hot standby: reading here, writing to the primary if one is given"
            );
        }
        if standby != self.standby {
            // A new role (a failover, or a URL through a proxy): the rolling
            // instance is elected again where it now writes.
            self.primary = Default::default();
        }
        self.standby = standby;
        if let Some((channel, _)) = listen.as_ref().filter(|_| !standby) {
            // Not fatal: without it, polls still come every refresh_interval (a hot
            // standby, for one, refuses LISTEN).
            let sql = super::notify::listen_sql(channel);
            match timed(
                &ctx,
                limit,
                "listening for notifications",
                client.batch_execute(&sql),
            )
            .await
            {
                Ok(()) => tracing::info!(channel = %channel, "listening for new-row notifications"),
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "LISTEN failed; polling on the interval only")
                }
            }
        }
        let info = match limit {
            Some(d) => tokio::time::timeout(
                d,
                inspect(&client, &self.table, &self.opts.map, &self.target.endpoint),
            )
            .await
            .map_err(|_| ctx.no_answer("checking the table", d))??,
            None => inspect(&client, &self.table, &self.opts.map, &self.target.endpoint).await?,
        };
        match (self.mode, info.mode) {
            (None, mode) => self.mode = Some(mode),
            (Some(TailMode::TxWatermark), found) if found != TailMode::TxWatermark => {
                // The cursor is a transaction id; it cannot be carried over to ids.
                return Err(SourceError::ColumnMissing {
                    table: self.table_text.clone(),
                    endpoint: self.target.endpoint.clone(),
                    column: "tx".into(),
                    advice: super::columns::missing_column_advice("tx", &[]),
                });
            }
            // Id overlap keeps working if a tx column appears meanwhile.
            _ => {}
        }
        tracing::info!(endpoint = %self.target.endpoint, table = %self.table_text, mode = ?self.mode, "connected");
        self.status.absent = info.map.unmapped.iter().filter_map(|f| f.dim()).collect();
        let sql = Sql::new(&info);
        let sql = match &self.opts.tenant {
            None => sql,
            Some(_) => sql
                .scoped_to_tenant(&info)
                .ok_or_else(|| SourceError::ColumnMap {
                    table: self.table_text.clone(),
                    endpoint: self.target.endpoint.clone(),
                    message:
                        "--tenant (or database.tenant) needs a tenant column, and this map has \
                          none; set source.columns.tenant, or drop --tenant"
                            .into(),
                })?,
        };
        self.conn = Some(Live { client, info, sql });
        self.checked_at = Some(std::time::Instant::now());
        Ok(())
    }
}

/// The table's columns are checked again after this many refresh intervals (a
/// minute at the default 2 s), so a column dropped, retyped or renamed under a
/// running source is reported with its fix, not only after the next reconnect.
pub const SCHEMA_RECHECK_POLLS: u32 = 30;

impl PgSource {
    /// Whether the table's columns are due to be checked again: the caller drops
    /// the connection and reconnects, which checks them (`ensure_connected`).
    pub(super) fn schema_recheck_due(&self) -> bool {
        let every = self.opts.refresh_interval * SCHEMA_RECHECK_POLLS;
        self.checked_at.is_some_and(|t| t.elapsed() >= every)
    }
}

/// The client-side limit for one statement: the server's statement_timeout plus a
/// margin, so a dead network is noticed even when the server cannot cancel.
pub(super) fn client_deadline(statement_timeout: Duration) -> Option<Duration> {
    (!statement_timeout.is_zero()).then(|| statement_timeout + Duration::from_secs(10))
}

/// Runs a driver call with the client-side deadline and maps its error.
pub(super) async fn timed<T, F>(
    ctx: &ErrorContext<'_>,
    limit: Option<Duration>,
    doing: &'static str,
    fut: F,
) -> Result<T, SourceError>
where
    F: Future<Output = Result<T, tokio_postgres::Error>>,
{
    match limit {
        None => fut.await.map_err(|e| ctx.db(e, doing)),
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(r) => r.map_err(|e| ctx.db(e, doing)),
            Err(_) => Err(ctx.no_answer(doing, d)),
        },
    }
}

pub(super) fn epoch_to_utc(
    secs: i64,
    ctx: &ErrorContext<'_>,
) -> Result<DateTime<Utc>, SourceError> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| ctx.unexpected(format!("bucket {secs} is out of range")))
}
