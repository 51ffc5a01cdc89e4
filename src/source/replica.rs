//! Read replicas: burnrate reads from a streaming hot standby (`database.url`) and
//! writes to the primary (`database.primary_url`): the shared alert state, the
//! silences and the alert log, the rollup's rolls, `db init`.
//!
//! What a PostgreSQL 15 standby allows, as `tests/pg_replica.rs` checks on a real one:
//! every read the backfill and the tail run (repeatable-read snapshots included),
//! `pg_current_snapshot()`, `pg_snapshot_xmin()` and `pg_visible_in_snapshot()`.
//! Not `pg_current_xact_id()`/`txid_current()` (no transaction ids in recovery),
//! no writes, no LISTEN (the source polls on its interval instead).
//!
//! One trap: on a standby `pg_current_snapshot()` lists no running transactions
//! (measured: `728:730:` while 728 was still open on the primary; in recovery the
//! snapshot keeps them where the function does not look). A tail that trusted it
//! would take 728 for committed, read none of its rows (they are not visible yet) and
//! never read them later. So on a standby the tail's snapshot is cut at its xmin,
//! `xmin:xmin:`: every transaction below the oldest one still running, as replayed,
//! has ended, for good. The tail stays exact and gap-free across out-of-order
//! commits; the price is that a transaction held open on the primary delays the rows
//! committed after it (on the primary, the tail reads past it).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::connect::ConnectTarget;
use super::error::SourceError;
use super::pg::PgSource;
use crate::model::ReplayLag;

/// Whether the server is a standby (in recovery).
pub(crate) const IS_STANDBY: &str = "SELECT pg_is_in_recovery()";

/// The tail's snapshot on a standby: cut at the snapshot's xmin (see the module).
pub(crate) const STANDBY_SNAPSHOT: &str = "SELECT pg_snapshot_xmin(s)::text || ':' || pg_snapshot_xmin(s)::text || ':' \
     FROM pg_current_snapshot() AS s";

/// The standby's replay position and lag, measured on the standby: WAL received but
/// not replayed (bytes), and, when there is some, the age of the last replayed
/// commit. `now() - pg_last_xact_replay_timestamp()` alone would grow on an idle
/// primary without any real lag, so it counts only while WAL waits for replay.
const REPLAY_STATUS: &str = "SELECT pg_last_wal_replay_lsn()::text, \
            coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::int8, \
            pg_last_xact_replay_timestamp(), \
            CASE WHEN pg_last_wal_receive_lsn() IS NULL \
                   OR pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() \
                 THEN greatest(0, floor(extract(epoch FROM now() - pg_last_xact_replay_timestamp())))::int8 \
                 ELSE 0 END";

/// How far the primary's WAL is past a position (on the primary).
const BEHIND_PRIMARY: &str =
    "SELECT greatest(0, pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn))::int8";

/// Whether the server behind `client` is a standby.
pub async fn is_standby(client: &Client) -> Result<bool, tokio_postgres::Error> {
    client.query_one(IS_STANDBY, &[]).await.map(|r| r.get(0))
}

/// The standby's lag; `primary`, when connected, adds how far the primary is ahead.
pub async fn replay_lag(
    standby: &Client,
    primary: Option<&Client>,
) -> Result<ReplayLag, tokio_postgres::Error> {
    let row = standby.query_one(REPLAY_STATUS, &[]).await?;
    let replayed: Option<String> = row.get(0);
    let mut lag = ReplayLag {
        secs: row.get::<_, Option<i64>>(3).unwrap_or(0),
        unreplayed_bytes: row.get(1),
        behind_primary_bytes: None,
        last_replayed_commit: row.get(2),
    };
    if let (Some(primary), Some(lsn)) = (primary, replayed) {
        match primary.query_one(BEHIND_PRIMARY, &[&lsn]).await {
            Ok(r) => lag.behind_primary_bytes = Some(r.get(0)),
            Err(e) => {
                tracing::debug!(error = %e, "replica: the primary's WAL position unavailable")
            }
        }
    }
    Ok(lag)
}

/// What `db init` (and `db rollup`) say when the URL they write to is a standby.
pub fn standby_refusal(command: &'static str, table: &str, endpoint: &str) -> SourceError {
    SourceError::Refused {
        command,
        table: table.to_string(),
        endpoint: endpoint.to_string(),
        reason: format!(
            "{endpoint} is a hot standby (read-only, in recovery) and this command writes; give \
             the primary's URL with --primary-url, BURNRATE_PRIMARY_URL or database.primary_url \
             (burnrate reads from the standby and writes there)"
        ),
    }
}

/// Refuses a write command whose target is a standby (see `standby_refusal`).
/// Connection problems are left to the command itself, which reports them.
pub async fn refuse_standby(
    target: &ConnectTarget,
    command: &'static str,
    table: &str,
) -> Result<(), SourceError> {
    let client = target.connect().await?;
    if is_standby(&client).await.unwrap_or(false) {
        return Err(standby_refusal(command, table, &target.endpoint));
    }
    Ok(())
}

/// A failed connection to the primary is tried again after this long, not every poll.
const PRIMARY_RETRY: Duration = Duration::from_secs(30);

/// The source's connection to the primary (reading from a standby with a primary URL).
#[derive(Default)]
pub(super) struct PrimaryLink {
    client: Option<Client>,
    failed_at: Option<Instant>,
    /// Why the last attempt to connect failed (for `doctor`).
    pub(super) last_error: Option<String>,
    /// Said once per connection: a standby without a primary URL does not roll.
    pub(super) said_no_primary: bool,
}

impl PrimaryLink {
    /// The connection to the primary, if one was opened (see `PgSource::ensure_primary`).
    pub(super) fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }
}

impl PgSource {
    /// Opens the connection to the primary if there is none (at most every
    /// `PRIMARY_RETRY` after a failure): whether one is open. A new connection
    /// resets the rollup election, whose lock is the session's.
    pub(super) async fn ensure_primary(&mut self) -> bool {
        let Some(target) = self.opts.primary.clone() else {
            return false;
        };
        if self.primary.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        if self.primary.client.take().is_some() {
            tracing::warn!(primary = %target.endpoint, "the connection to the primary closed; reconnecting");
        }
        if self
            .primary
            .failed_at
            .is_some_and(|t| t.elapsed() < PRIMARY_RETRY)
        {
            return false;
        }
        self.roller = None;
        let timeout_ms = format!("{}ms", self.opts.statement_timeout.as_millis());
        let opened = async {
            let client = target.connect().await?;
            client
                .execute(
                    "SELECT set_config('statement_timeout', $1, false), \
                            set_config('TimeZone', 'UTC', false), set_config('burnrate.tenant', '', false)",
                    &[&timeout_ms],
                )
                .await
                .map_err(|e| SourceError::Query {
                    endpoint: target.endpoint.clone(),
                    table: self.table_text.clone(),
                    doing: "setting up the connection to the primary",
                    message: super::error::describe_driver_error(&e),
                })?;
            if is_standby(&client).await.unwrap_or(false) {
                tracing::warn!(primary = %target.endpoint, "the primary URL names a standby too: writes there will fail; give the primary's URL");
            }
            Ok::<_, SourceError>(client)
        };
        match opened.await {
            Ok(client) => {
                tracing::info!(primary = %target.endpoint, "connected to the primary (rollup rolls, replay lag)");
                self.primary.client = Some(client);
                self.primary.failed_at = None;
                self.primary.last_error = None;
                true
            }
            Err(e) => {
                tracing::warn!(primary = %target.endpoint, error = %e, "cannot reach the primary; trying again in 30 s");
                self.primary.failed_at = Some(Instant::now());
                self.primary.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// The client that writes the rollup: the source's own on a primary, the
    /// primary's on a standby (None without a primary URL, said once in the log).
    pub(super) async fn writer_client(&mut self) -> Option<&Client> {
        if !self.standby {
            return self.conn.as_ref().map(|l| &l.client);
        }
        if self.ensure_primary().await {
            return self.primary.client.as_ref();
        }
        if self.opts.primary.is_none() && !self.primary.said_no_primary {
            self.primary.said_no_primary = true;
            tracing::warn!(
                endpoint = %self.target.endpoint,
                "rollup: reading from a hot standby without database.primary_url: this instance \
                 does not roll (an instance on the primary, or `burnrate db rollup` against it, \
                 keeps the rollup current)"
            );
        }
        None
    }

    /// On a standby, after a poll: measures the replay lag for the status.
    pub(super) async fn measure_replay_lag(&mut self) {
        if !self.standby {
            self.status.replay_lag = None;
            return;
        }
        self.ensure_primary().await;
        let Some(live) = self.conn.as_ref() else {
            return;
        };
        let primary = self.primary.client.as_ref().filter(|c| !c.is_closed());
        let measured = match super::pg::client_deadline(self.opts.statement_timeout) {
            Some(d) => tokio::time::timeout(d, replay_lag(&live.client, primary))
                .await
                .ok(),
            None => Some(replay_lag(&live.client, primary).await),
        };
        match measured {
            Some(Ok(lag)) => self.status.replay_lag = Some(lag),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "replica: replay lag unavailable");
                self.status.replay_lag = None;
            }
            None => self.status.replay_lag = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_said_briefly_and_bytes_only_when_they_matter() {
        let mut lag = ReplayLag {
            secs: 0,
            unreplayed_bytes: 0,
            behind_primary_bytes: Some(120),
            last_replayed_commit: None,
        };
        assert_eq!(lag.short(), "standby lag 0s");
        lag.behind_primary_bytes = Some(3 << 20);
        assert_eq!(lag.short(), "standby lag 0s, 3.0 MB behind");
        lag.behind_primary_bytes = None;
        lag.secs = 12;
        lag.unreplayed_bytes = 2048;
        assert_eq!(lag.short(), "standby lag 12s, 2.0 kB behind");
        assert!(lag.describe().contains("needs database.primary_url"));
        assert!(
            lag.describe()
                .starts_with("replay lag 12s (2.0 kB received")
        );
    }

    #[test]
    fn a_refusal_names_every_way_to_give_the_primary() {
        let e = standby_refusal("db init", "cost_events", "10.0.0.2:5432/llm").to_string();
        for needle in [
            "hot standby",
            "--primary-url",
            "BURNRATE_PRIMARY_URL",
            "database.primary_url",
        ] {
            assert!(e.contains(needle), "{e}");
        }
    }
}
