//! Errors of the PostgreSQL source. Every message a user can cause names the table,
//! column or server and says how to fix it; none ever contains a password.

use std::time::Duration;

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "invalid connection string in {origin}: {detail}. Write it as \
         postgres://USER@HOST:5432/DBNAME or as key=value pairs (host=HOST dbname=DBNAME)"
    )]
    InvalidConnectionString {
        origin: &'static str,
        detail: String,
    },

    #[error(
        "cannot connect to PostgreSQL at {endpoint} (database {database}, user {user}): {cause}. {}",
        connect_advice(*origin)
    )]
    Connect {
        endpoint: String,
        database: String,
        user: String,
        cause: String,
        /// Where the connection settings came from (`ConnectTarget::origin`), for
        /// the advice: the setting that was used, not one that was not.
        origin: Option<&'static str>,
    },

    #[error(
        "invalid table name {name:?} (database.table): {reason}. Use a name such as \
         cost_events or analytics.cost_events"
    )]
    InvalidTableName { name: String, reason: String },

    #[error("table {table} does not exist in {endpoint}. {advice}")]
    TableMissing {
        table: String,
        endpoint: String,
        /// What helps, which depends on the preset (see `table_missing_advice`).
        advice: String,
    },

    #[error("table {table} in {endpoint} has no column {column}. {advice}")]
    ColumnMissing {
        table: String,
        endpoint: String,
        column: String,
        /// How to fix it without adding a column no writer fills.
        advice: String,
    },

    #[error(
        "the column map does not fit table {table} in {endpoint}: {message}. Fix source.columns \
         in the config, or pick another --preset (burnrate, seed, litellm); `burnrate doctor` \
         shows what matched"
    )]
    ColumnMap {
        table: String,
        endpoint: String,
        message: String,
    },

    #[error(
        "column {column} of table {table} has type {found}, but burnrate needs {expected}. Fix: {fix}"
    )]
    ColumnType {
        table: String,
        column: String,
        found: String,
        expected: String,
        fix: String,
    },

    #[error(
        "PostgreSQL {found} at {endpoint} is too old for {what}: version 13 or newer is needed"
    )]
    ServerTooOld {
        endpoint: String,
        found: String,
        what: &'static str,
    },

    #[error(
        "a query on table {table} in {endpoint} ran longer than statement_timeout ({}) while {doing}. \
         Raise database.statement_timeout, or run `burnrate db init` to create the indexes it needs",
        humantime::format_duration(*timeout)
    )]
    StatementTimeout {
        table: String,
        endpoint: String,
        doing: &'static str,
        timeout: Duration,
    },

    #[error("permission denied on table {table} in {endpoint} while {doing}: {message}. {advice}")]
    PermissionDenied {
        table: String,
        endpoint: String,
        doing: &'static str,
        message: String,
        /// The grant that fixes it, from what was denied (see `grant_advice`).
        advice: String,
    },

    #[error("`{command}` refuses table {table} in {endpoint}: {reason}")]
    Refused {
        command: &'static str,
        table: String,
        endpoint: String,
        reason: String,
    },

    #[error("lost the connection to PostgreSQL at {endpoint} while {doing}: {cause}")]
    ConnectionLost {
        endpoint: String,
        doing: &'static str,
        cause: String,
    },

    #[error(
        "no answer from PostgreSQL at {endpoint} within {secs} s while {doing}; the server or the \
         network may be down"
    )]
    NoAnswer {
        endpoint: String,
        doing: &'static str,
        secs: u64,
    },

    #[error("PostgreSQL at {endpoint} failed while {doing} on table {table}: {message}")]
    Query {
        endpoint: String,
        table: String,
        doing: &'static str,
        message: String,
    },

    #[error("unexpected data from table {table} in {endpoint}: {detail}")]
    Unexpected {
        table: String,
        endpoint: String,
        detail: String,
    },

    #[error("poll() was called before backfill() completed; backfill first so no row is missed")]
    NotBackfilled,

    #[error("the receiver of source messages has gone away")]
    ChannelClosed,
}

impl SourceError {
    /// Whether retrying later can help (the server comes back, someone runs `db init`
    /// or grants access). Mistakes in the configuration and closed channels are final.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            SourceError::InvalidConnectionString { .. }
                | SourceError::InvalidTableName { .. }
                | SourceError::Refused { .. }
                | SourceError::NotBackfilled
                | SourceError::ChannelClosed
        )
    }
}

/// Where a failing statement ran, to turn driver errors into `SourceError`s.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext<'a> {
    pub endpoint: &'a str,
    pub table: &'a str,
    pub statement_timeout: Duration,
}

impl ErrorContext<'_> {
    pub(crate) fn db(&self, e: tokio_postgres::Error, doing: &'static str) -> SourceError {
        let endpoint = self.endpoint.to_string();
        let table = self.table.to_string();
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::QUERY_CANCELED {
                return SourceError::StatementTimeout {
                    table,
                    endpoint,
                    doing,
                    timeout: self.statement_timeout,
                };
            }
            if *code == SqlState::INSUFFICIENT_PRIVILEGE {
                return SourceError::PermissionDenied {
                    advice: grant_advice(db.message(), &table),
                    table,
                    endpoint,
                    doing,
                    message: db.message().to_string(),
                };
            }
            if *code == SqlState::UNDEFINED_TABLE {
                return SourceError::TableMissing {
                    table,
                    endpoint,
                    advice: table_missing_advice(None),
                };
            }
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
            {
                return SourceError::ConnectionLost {
                    endpoint,
                    doing,
                    cause: db.message().to_string(),
                };
            }
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            return SourceError::Query {
                endpoint,
                table,
                doing,
                message,
            };
        }
        if e.is_closed() {
            return SourceError::ConnectionLost {
                endpoint,
                doing,
                cause: "connection closed".into(),
            };
        }
        let cause = describe_driver_error(&e);
        if is_io_error(&e) {
            return SourceError::ConnectionLost {
                endpoint,
                doing,
                cause,
            };
        }
        SourceError::Query {
            endpoint,
            table,
            doing,
            message: cause,
        }
    }

    pub(crate) fn no_answer(&self, doing: &'static str, after: Duration) -> SourceError {
        SourceError::NoAnswer {
            endpoint: self.endpoint.to_string(),
            doing,
            secs: after.as_secs(),
        }
    }

    pub(crate) fn unexpected(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Unexpected {
            table: self.table.to_string(),
            endpoint: self.endpoint.to_string(),
            detail: detail.into(),
        }
    }
}

/// What to fix after a failed connection, by where the settings came from.
fn connect_advice(origin: Option<&'static str>) -> String {
    let advice = match origin {
        Some("--database-url") => {
            "Check the URL given with --database-url (it wins over DATABASE_URL and \
             database.url)"
                .to_string()
        }
        Some("DATABASE_URL") => {
            "Check DATABASE_URL in the environment, or give --database-url".to_string()
        }
        Some(origin @ ("--primary-url" | "BURNRATE_PRIMARY_URL"))
        | Some(origin @ "the config key database.primary_url") => format!(
            "Check {origin}: it names the primary, where burnrate writes when it reads from a \
             replica (--primary-url wins over BURNRATE_PRIMARY_URL and database.primary_url)"
        ),
        Some(origin) => format!("Check {origin}, or give --database-url"),
        None => "No connection string was given, so the PG* variables and defaults were used: \
                 set --database-url or DATABASE_URL"
            .to_string(),
    };
    format!("{advice}, or try `burnrate demo` for a dashboard without a database.")
}

/// The grant that fixes a denial, from PostgreSQL's message: CREATE on a schema
/// (`db init` creating a table there), ownership (altering a table), USAGE on a
/// sequence, or SELECT on the table (reading).
pub(crate) fn grant_advice(message: &str, table: &str) -> String {
    let after = |prefix: &str| {
        message
            .split_once(prefix)
            .map(|(_, rest)| rest.trim().to_string())
    };
    if let Some(schema) = after("permission denied for schema") {
        return format!(
            "The role burnrate connects as may not create objects in schema {schema}: run \
             `burnrate db init` as a role that may (the table's owner or a superuser), or \
             GRANT CREATE ON SCHEMA {schema} TO that role (reading needs only SELECT)"
        );
    }
    if message.starts_with("must be owner") {
        return format!(
            "Altering {table} takes its owner: run `burnrate db init` as the role that owns it \
             (or ALTER TABLE {table} OWNER TO the role burnrate connects as)"
        );
    }
    if let Some(seq) = after("permission denied for sequence") {
        return format!("GRANT USAGE ON SEQUENCE {seq} TO the role burnrate connects as");
    }
    format!(
        "Grant reading, e.g. GRANT SELECT ON {table} TO the role burnrate connects as \
         (column privileges must cover every mapped column; `burnrate doctor` checks them)"
    )
}

/// What to do about a missing table. `db init` creates burnrate's own table only:
/// it is no help for another product's table (`preset` other than burnrate); the key
/// that names the watched table is `source.table` (`database.table` is its default
/// for the burnrate and seed presets).
pub(crate) fn table_missing_advice(preset: Option<super::columns::Preset>) -> String {
    use super::columns::Preset;
    const WHERE: &str = "(schema-qualified if it is not on the search_path; \
                         `burnrate doctor` lists what fits)";
    match preset {
        Some(Preset::Burnrate) => format!(
            "Create it with `burnrate db init`, or point burnrate at the table that holds your \
             rows: database.table (or source.table) in the config {WHERE}"
        ),
        Some(p @ (Preset::Litellm | Preset::Seed)) => format!(
            "The {p} preset reads this table; set source.table in the config to the table that \
             holds your rows {WHERE}. `burnrate db init` does not help here: it creates \
             burnrate's own table"
        ),
        None => format!(
            "Set source.table (or database.table) in the config to the table that holds your \
             rows {WHERE}; `burnrate db init` creates burnrate's own cost_events table"
        ),
    }
}

fn is_io_error(e: &tokio_postgres::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A driver error in words: the server's message, or the underlying I/O error. Never
/// includes connection parameters (the driver keeps those out of its errors).
pub(crate) fn describe_driver_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        cur = c.source();
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => {
            "connection refused (is PostgreSQL running and listening there?)".into()
        }
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::NotFound => {
            "no server socket found (is PostgreSQL running on this machine?)".into()
        }
        ErrorKind::PermissionDenied => "permission denied opening the socket".into(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
            "the server closed the connection".into()
        }
        _ => io.to_string(),
    }
}
