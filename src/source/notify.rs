//! Wake-up on commit: `burnrate db init --notify` adds a statement-level trigger
//! that sends `NOTIFY <channel>` for every insert statement on the table, and the
//! source LISTENs on that channel (`database.notify_channel`) and polls at once.
//!
//! The notification only says "something committed": the poll that follows reads
//! through the same gap-free cursor as an interval poll, so a lost or coalesced
//! notification costs freshness, never rows. PostgreSQL delivers it at commit and
//! folds identical ones of a transaction into one, so a COPY of a million rows is
//! one wake-up.

use std::fmt;

use tokio_postgres::Client;

use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::schema::{TableName, quote_ident};

/// The channel `db init --notify` uses when `database.notify_channel` is unset.
pub const DEFAULT_CHANNEL: &str = "burnrate_events";
const TRIGGER: &str = "burnrate_notify";
const FUNCTION: &str = "burnrate_notify";

/// A channel is an identifier to LISTEN: 1 to 63 bytes, no NUL. Any other text is
/// quoted, so case and punctuation are kept exactly as written.
pub fn check_channel(channel: &str) -> Result<(), String> {
    if channel.is_empty() {
        return Err("must name a channel, e.g. \"burnrate_events\" (or leave the key out)".into());
    }
    if channel.len() > 63 {
        return Err(format!(
            "{} bytes is too long: PostgreSQL channel names have at most 63",
            channel.len()
        ));
    }
    if channel.chars().any(|c| c == '\0' || c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// `LISTEN "<channel>"`.
pub fn listen_sql(channel: &str) -> String {
    format!("LISTEN {}", quote_ident(channel))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReport {
    pub table: String,
    pub channel: String,
    /// The channel came from `database.notify_channel` (else the default).
    pub configured: bool,
}

impl fmt::Display for NotifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trigger {TRIGGER} on {} notifies channel {:?} after every insert statement",
            self.table, self.channel
        )?;
        if !self.configured {
            write!(
                f,
                "\nto wake burnrate on each commit, set in [database]: notify_channel = {:?}",
                self.channel
            )?;
        }
        Ok(())
    }
}

fn function_name(table: &TableName) -> String {
    match table.schema() {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(FUNCTION)),
        None => quote_ident(FUNCTION),
    }
}

/// Installs (or re-points) the trigger; idempotent.
pub async fn enable_notify(
    target: &ConnectTarget,
    table: &str,
    channel: Option<&str>,
) -> Result<NotifyReport, SourceError> {
    let table = TableName::parse(table)?;
    let mut client = target.connect().await?;
    enable_notify_with_client(&mut client, &table, channel, &target.endpoint).await
}

/// Under the same advisory lock as `db init`, in one transaction: the function,
/// then the trigger dropped and created again (so a new channel takes effect).
pub async fn enable_notify_with_client(
    client: &mut Client,
    table: &TableName,
    channel: Option<&str>,
    endpoint: &str,
) -> Result<NotifyReport, SourceError> {
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let configured = channel.is_some();
    let channel = channel.unwrap_or(DEFAULT_CHANNEL);
    // The config check refuses bad channels before this; a caller may not have it.
    check_channel(channel)
        .map_err(|m| ctx.unexpected(format!("database.notify_channel {channel:?}: {m}")))?;
    let q = table.quoted();
    let function = function_name(table);
    // A trigger argument is a string literal: double the quotes.
    let literal = channel.replace('\'', "''");
    let txn = client
        .transaction()
        .await
        .map_err(|e| ctx.db(e, "starting db init --notify"))?;
    super::schema::lock_for_init(&txn, &q, &ctx).await?;
    let statements = [
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_notify(TG_ARGV[0], ''); RETURN NULL; END $$"
        ),
        format!("DROP TRIGGER IF EXISTS {} ON {q}", quote_ident(TRIGGER)),
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {q} FOR EACH STATEMENT EXECUTE FUNCTION {function}('{literal}')",
            quote_ident(TRIGGER)
        ),
    ];
    for sql in &statements {
        txn.batch_execute(sql)
            .await
            .map_err(|e| ctx.db(e, "creating the notify trigger"))?;
    }
    txn.commit()
        .await
        .map_err(|e| ctx.db(e, "committing db init --notify"))?;
    Ok(NotifyReport {
        table: table_text,
        channel: channel.to_string(),
        configured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_checked_and_quoted() {
        assert!(check_channel("burnrate_events").is_ok());
        assert!(check_channel("Spend Events").is_ok());
        assert!(check_channel("").unwrap_err().contains("must name"));
        assert!(check_channel(&"x".repeat(64)).unwrap_err().contains("63"));
        assert!(check_channel("a\nb").unwrap_err().contains("control"));
        assert_eq!(listen_sql("burnrate_events"), "LISTEN \"burnrate_events\"");
        assert_eq!(listen_sql("a\"b"), "LISTEN \"a\"\"b\"");
    }
}
