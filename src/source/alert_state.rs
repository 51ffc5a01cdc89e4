//! Alert state shared by every monitor, in PostgreSQL: the alerts, the silences and
//! the notification log, in three tables that `burnrate db init` creates next to
//! the cost table (same schema).
//!
//! One evaluation is one transaction under an advisory lock: load the book, run the
//! pure lifecycle, write the book back, then claim each due notification with
//! `INSERT ... ON CONFLICT DO NOTHING` on its (fingerprint, episode, kind, seq,
//! channel) key. Only what this instance claimed is sent, so however many monitors
//! and cron checks run, each message goes out once, and a restart finds it logged.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::connect::ConnectTarget;
use super::error::SourceError;
use super::schema::{TableName, quote_ident};
use crate::alert::{Alert, Book, LogKey, Message, MessageKind, Silence};

pub const ALERTS_TABLE: &str = "burnrate_alerts";
pub const SILENCES_TABLE: &str = "burnrate_alert_silences";
pub const LOG_TABLE: &str = "burnrate_alert_log";

/// How long one alert-state transaction may take before the round gives up on the
/// shared state (and uses the local file): a hung server must not hold alerts back.
const STATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The three table names, qualified like the cost table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTables {
    pub alerts: String,
    pub silences: String,
    pub log: String,
    schema: Option<String>,
}

impl AlertTables {
    /// Next to `cost_table` (database.table): in its schema if it names one.
    pub fn next_to(cost_table: &TableName) -> AlertTables {
        let schema = cost_table.schema().map(str::to_string);
        let q = |t: &str| match &schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(t)),
            None => quote_ident(t),
        };
        AlertTables {
            alerts: q(ALERTS_TABLE),
            silences: q(SILENCES_TABLE),
            log: q(LOG_TABLE),
            schema,
        }
    }

    fn lock_name(&self) -> String {
        format!("burnrate alerts {}", self.alerts)
    }

    fn plain(&self, t: &str) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{t}"),
            None => t.to_string(),
        }
    }
}

/// `db init`: creates the tables if missing (idempotent; runs in its transaction).
pub async fn create_tables(
    client: &impl GenericClient,
    tables: &AlertTables,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {a} (
                fingerprint text PRIMARY KEY,
                rule text NOT NULL,
                phase text NOT NULL,
                episode timestamptz,
                state jsonb NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                updated_by text NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {s} (
                id text PRIMARY KEY,
                ends_at timestamptz NOT NULL,
                silence jsonb NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {l} (
                fingerprint text NOT NULL,
                episode timestamptz NOT NULL,
                kind text NOT NULL,
                seq integer NOT NULL,
                channel text NOT NULL,
                instance text NOT NULL,
                claimed_at timestamptz NOT NULL DEFAULT now(),
                status text NOT NULL DEFAULT 'claimed',
                detail text,
                PRIMARY KEY (fingerprint, episode, kind, seq, channel)
             );",
            a = tables.alerts,
            s = tables.silences,
            l = tables.log
        ))
        .await
}

/// Why a standby cannot hold the shared state (its words are matched by the status
/// bar: "hot standby").
pub fn standby_reason(endpoint: &str) -> String {
    format!(
        "{endpoint} is a hot standby (read-only): alert state cannot be shared without the \
         primary's URL (database.primary_url, BURNRATE_PRIMARY_URL or --primary-url)"
    )
}

/// Why the shared state cannot be used (the caller falls back to a local file).
#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Db(#[from] SourceError),
}

/// The shared alert state of one database.
pub struct AlertStateDb {
    target: ConnectTarget,
    tables: AlertTables,
    client: Option<Client>,
}

impl AlertStateDb {
    pub fn new(target: ConnectTarget, cost_table: &str) -> Result<AlertStateDb, SourceError> {
        let table = TableName::parse(cost_table)?;
        Ok(AlertStateDb {
            target,
            tables: AlertTables::next_to(&table),
            client: None,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.target.endpoint
    }

    fn err(&self, e: tokio_postgres::Error, doing: &'static str) -> StateDbError {
        let code = e.code().cloned();
        let reason = match code {
            Some(c) if c == SqlState::INSUFFICIENT_PRIVILEGE => Some(format!(
                "the database role {} may not write the alert tables in {} ({})",
                self.target.user(),
                self.target.endpoint,
                e.as_db_error()
                    .map(|d| d.message())
                    .unwrap_or("permission denied")
            )),
            Some(c) if c == SqlState::READ_ONLY_SQL_TRANSACTION => Some(format!(
                "the connection to {} is read-only",
                self.target.endpoint
            )),
            Some(c) if c == SqlState::UNDEFINED_TABLE => Some(format!(
                "the alert tables do not exist in {}: run `burnrate db init` to share alert state",
                self.target.endpoint
            )),
            _ => None,
        };
        match reason {
            Some(r) => StateDbError::Unusable(r),
            None => StateDbError::Db(SourceError::Query {
                endpoint: self.target.endpoint.clone(),
                table: self.tables.plain(ALERTS_TABLE),
                doing,
                message: super::error::describe_driver_error(&e),
            }),
        }
    }

    fn no_answer(&mut self, doing: &'static str) -> StateDbError {
        self.client = None;
        StateDbError::Db(SourceError::Query {
            endpoint: self.target.endpoint.clone(),
            table: self.tables.plain(ALERTS_TABLE),
            doing,
            message: format!(
                "no answer within {} s; check that the server is up and reachable",
                STATE_TIMEOUT.as_secs()
            ),
        })
    }

    async fn client(&mut self) -> Result<&mut Client, StateDbError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.target.connect().await?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Whether this role can use the shared state: the tables exist, the session is
    /// not read-only, and the role may write them.
    pub async fn probe(&mut self) -> Result<(), StateDbError> {
        let tables = self.tables.clone();
        let endpoint = self.target.endpoint.clone();
        let user = self.target.user().to_string();
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT current_setting('transaction_read_only') = 'on',
                        to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL
                            AND to_regclass($3) IS NOT NULL,
                        pg_is_in_recovery()",
                &[&tables.alerts, &tables.silences, &tables.log],
            )
            .await;
        let row = match row {
            Ok(r) => r,
            Err(e) => return Err(self.err(e, "checking the alert tables")),
        };
        let (read_only, exist, standby): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if standby {
            return Err(StateDbError::Unusable(standby_reason(&endpoint)));
        }
        if read_only {
            return Err(StateDbError::Unusable(format!(
                "the connection to {endpoint} is read-only"
            )));
        }
        if !exist {
            return Err(StateDbError::Unusable(format!(
                "the alert tables do not exist in {endpoint}: run `burnrate db init` to share alert state"
            )));
        }
        let client = self.client().await?;
        let row = client
            .query_one(
                // Several privileges in one call mean "any of them": ask one by one.
                "SELECT bool_and(has_table_privilege(t, p))
                 FROM unnest(ARRAY[$1, $2, $3]::text[]) AS t,
                      unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p",
                &[&tables.alerts, &tables.silences, &tables.log],
            )
            .await;
        match row {
            Ok(r) if r.get::<_, bool>(0) => Ok(()),
            Ok(_) => Err(StateDbError::Unusable(format!(
                "the database role {user} may not write the alert tables in {endpoint}"
            ))),
            Err(e) => Err(self.err(e, "checking privileges on the alert tables")),
        }
    }

    /// The stored book, read without the lock (for display).
    pub async fn load(&mut self) -> Result<Book, StateDbError> {
        let tables = self.tables.clone();
        let client = self.client().await?;
        let r = load_book(&*client, &tables).await;
        r.map_err(|e| self.err(e, "reading the alert state"))
    }

    /// One locked transaction: load, `f`, store, and claim the messages `f` returns
    /// on `channel`. Returns `f`'s value, the claimed messages (only alerts this
    /// instance claimed remain) and the book as stored. With `commit` false
    /// (`--dry-run`) everything is rolled back and nothing is claimed.
    pub async fn transact<T>(
        &mut self,
        instance: &str,
        channel: &str,
        commit: bool,
        f: impl FnOnce(&mut Book) -> (T, Vec<Message>),
    ) -> Result<(T, Vec<Message>, Book), StateDbError> {
        let tables = self.tables.clone();
        let client = self.client().await?;
        let r = tokio::time::timeout(
            STATE_TIMEOUT,
            transact_with(client, &tables, instance, channel, commit, f),
        )
        .await;
        let Ok(r) = r else {
            // A hung server or a black-holed network: drop the connection (the
            // server rolls back) and let the caller fall back for this round.
            return Err(self.no_answer("updating the alert state"));
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = self.err(e, "updating the alert state");
                if matches!(e, StateDbError::Db(_)) {
                    // A broken connection is replaced on the next call.
                    self.client = None;
                }
                Err(e)
            }
        }
    }

    /// Releases the claims of undelivered messages: sent again next round.
    pub async fn release(
        &mut self,
        instance: &str,
        channel: &str,
        keys: &[LogKey],
    ) -> Result<usize, StateDbError> {
        let tables = self.tables.clone();
        let client = self.client().await?;
        let r = tokio::time::timeout(
            STATE_TIMEOUT,
            release_with(client, &tables, instance, channel, keys),
        )
        .await;
        let Ok(r) = r else {
            return Err(self.no_answer("releasing an undelivered notification"));
        };
        r.map_err(|e| self.err(e, "releasing an undelivered notification"))
    }

    /// Notes how delivering a claimed message went.
    pub async fn record(
        &mut self,
        keys: &[LogKey],
        channel: &str,
        status: &str,
        detail: &str,
    ) -> Result<(), StateDbError> {
        let tables = self.tables.clone();
        let client = self.client().await?;
        let mut failed = None;
        for k in keys {
            if let Err(e) = client
                .execute(
                    &format!(
                        "UPDATE {} SET status = $1, detail = $2
                         WHERE fingerprint = $3 AND episode = $4 AND kind = $5 AND seq = $6
                           AND channel = $7",
                        tables.log
                    ),
                    &[
                        &status,
                        &detail,
                        &k.fingerprint,
                        &k.episode,
                        &k.kind.name(),
                        &k.seq,
                        &channel,
                    ],
                )
                .await
            {
                failed = Some(e);
                break;
            }
        }
        match failed {
            Some(e) => Err(self.err(e, "logging a notification")),
            None => Ok(()),
        }
    }
}

async fn load_book(
    client: &impl GenericClient,
    tables: &AlertTables,
) -> Result<Book, tokio_postgres::Error> {
    let mut book = Book::default();
    for row in client
        .query(&format!("SELECT state::text FROM {}", tables.alerts), &[])
        .await?
    {
        let text: String = row.get(0);
        match serde_json::from_str::<Alert>(&text) {
            Ok(a) => {
                book.alerts.insert(a.fingerprint.clone(), a);
            }
            // Written by another version: skip it rather than fail every round.
            Err(e) => tracing::warn!(error = %e, "alert state: unreadable alert row skipped"),
        }
    }
    for row in client
        .query(
            &format!("SELECT silence::text FROM {} ORDER BY id", tables.silences),
            &[],
        )
        .await?
    {
        let text: String = row.get(0);
        match serde_json::from_str::<Silence>(&text) {
            Ok(s) => book.silences.push(s),
            Err(e) => tracing::warn!(error = %e, "alert state: unreadable silence skipped"),
        }
    }
    book.silences.sort_by_key(|s| s.starts_at);
    Ok(book)
}

async fn transact_with<T>(
    client: &mut Client,
    tables: &AlertTables,
    instance: &str,
    channel: &str,
    commit: bool,
    f: impl FnOnce(&mut Book) -> (T, Vec<Message>),
) -> Result<(T, Vec<Message>, Book), tokio_postgres::Error> {
    let txn = client.transaction().await?;
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&tables.lock_name()],
    )
    .await?;
    let mut book = load_book(&txn, tables).await?;
    let before = book.clone();
    let (value, mut messages) = f(&mut book);

    if book != before {
        store_book(&txn, tables, &book, instance).await?;
    }

    let claim = txn
        .prepare(&format!(
            "INSERT INTO {} (fingerprint, episode, kind, seq, channel, instance)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            tables.log
        ))
        .await?;
    // A resolution is announced on a channel only where its firing was: not when
    // the log holds the episode's firing only as failed or never sent (an older
    // version's `not_sent`). No row at all is a firing sent from the local file
    // during an outage: the book's count stands then.
    let claim_resolved = txn
        .prepare(&format!(
            "INSERT INTO {l} (fingerprint, episode, kind, seq, channel, instance)
             SELECT $1::text, $2::timestamptz, $3::text, $4::int, $5::text, $6::text
             WHERE EXISTS (SELECT 1 FROM {l} WHERE fingerprint = $1 AND episode = $2
                             AND channel = $5 AND kind IN ('firing', 'repeat')
                             AND status = 'sent')
                OR NOT EXISTS (SELECT 1 FROM {l} WHERE fingerprint = $1 AND episode = $2
                             AND channel = $5 AND kind IN ('firing', 'repeat'))
             ON CONFLICT DO NOTHING",
            l = tables.log
        ))
        .await?;
    for m in &mut messages {
        let mut claimed = Vec::new();
        let claim = if m.kind == MessageKind::Resolved {
            &claim_resolved
        } else {
            &claim
        };
        for k in m.keys() {
            let n = txn
                .execute(
                    claim,
                    &[
                        &k.fingerprint,
                        &k.episode,
                        &k.kind.name(),
                        &k.seq,
                        &channel,
                        &instance,
                    ],
                )
                .await?;
            if n == 1 {
                claimed.push(k);
            }
        }
        m.retain_keys(&claimed);
    }
    messages.retain(|m| !m.alerts.is_empty());
    if commit {
        txn.commit().await?;
    } else {
        txn.rollback().await?;
    }
    Ok((value, messages, book))
}

/// Writes the whole book back (inside the caller's locked transaction).
async fn store_book(
    txn: &tokio_postgres::Transaction<'_>,
    tables: &AlertTables,
    book: &Book,
    instance: &str,
) -> Result<(), tokio_postgres::Error> {
    txn.execute(&format!("DELETE FROM {}", tables.alerts), &[])
        .await?;
    let insert = txn
        .prepare(&format!(
            "INSERT INTO {} (fingerprint, rule, phase, episode, state, updated_by)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)",
            tables.alerts
        ))
        .await?;
    for a in book.alerts.values() {
        let state = serde_json::to_string(a).unwrap_or_default();
        txn.execute(
            &insert,
            &[
                &a.fingerprint,
                &a.rule(),
                &a.phase.name(),
                &a.episode,
                &state,
                &instance,
            ],
        )
        .await?;
    }
    txn.execute(&format!("DELETE FROM {}", tables.silences), &[])
        .await?;
    for s in &book.silences {
        let text = serde_json::to_string(s).unwrap_or_default();
        txn.execute(
            &format!(
                "INSERT INTO {} (id, ends_at, silence) VALUES ($1, $2, $3::text::jsonb)",
                tables.silences
            ),
            &[&s.id, &s.ends_at, &text],
        )
        .await?;
    }
    Ok(())
}

/// Undoes the claims of messages that could not be delivered (see `Book::release`):
/// the book forgets them and their log rows go, so the next round claims them again.
async fn release_with(
    client: &mut Client,
    tables: &AlertTables,
    instance: &str,
    channel: &str,
    keys: &[LogKey],
) -> Result<usize, tokio_postgres::Error> {
    let txn = client.transaction().await?;
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&tables.lock_name()],
    )
    .await?;
    let mut book = load_book(&txn, tables).await?;
    let released = book.release(keys);
    if released > 0 {
        store_book(&txn, tables, &book, instance).await?;
    }
    for k in keys {
        txn.execute(
            &format!(
                "DELETE FROM {} WHERE fingerprint = $1 AND episode = $2 AND kind = $3 \
                 AND seq = $4 AND channel = $5",
                tables.log
            ),
            &[&k.fingerprint, &k.episode, &k.kind.name(), &k.seq, &channel],
        )
        .await?;
    }
    txn.commit().await?;
    Ok(released)
}
