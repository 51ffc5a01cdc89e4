//! Writes synthetic events into the cost table (for `burnrate simulate` and tests).
//!
//! Two paths, both exact:
//! - [`copy_events`]: bulk history with `COPY ... FROM STDIN` in PostgreSQL's text
//!   format, streamed in buffers of about 1 MiB; one COPY is one statement, so a
//!   chunk is written entirely or not at all.
//! - [`insert_events`]: live traffic as multi-row `INSERT ... VALUES`, one
//!   transaction per batch.
//!
//! Values travel as text that PostgreSQL parses with the column's own type: the cost
//! as Money's exact decimal (never a float), timestamps with an explicit `+00` (right
//! for `timestamptz`, and the UTC wall time for a `timestamp` column), token counts
//! as integers. Text with quotes, tabs, newlines, backslashes or any Unicode
//! round-trips unchanged; a NUL character, which PostgreSQL text cannot hold, is
//! refused. `id` and `tx` take their column defaults.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Transaction};

use super::error::describe_driver_error;
use super::schema::{TableName, quote_ident};
use crate::money::Money;
use crate::sim::SimEvent;

/// The columns written, in order.
pub const WRITE_COLUMNS: [&str; 10] = [
    "timestamp",
    "feature_name",
    "cost_usd",
    "user_id",
    "model",
    "region",
    "tenant_id",
    "input_tokens",
    "output_tokens",
    "request_id",
];

/// COPY buffers are sent once they reach this size.
const COPY_FLUSH_BYTES: usize = 1 << 20;
/// Rows per INSERT statement (10 parameters each, far below the 65,535 limit).
const INSERT_ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the {field} of request {request_id} contains a NUL character, which PostgreSQL \
         text cannot store"
    )]
    Nul {
        field: &'static str,
        request_id: String,
    },
    #[error("PostgreSQL failed while {doing} table {table}: {message}")]
    Db {
        table: String,
        doing: &'static str,
        message: String,
    },
}

fn db_error(table: &TableName, doing: &'static str, e: tokio_postgres::Error) -> WriteError {
    let mut message = describe_driver_error(&e);
    if let Some(db) = e.as_db_error() {
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!(". Hint: {hint}"));
        }
    }
    WriteError::Db {
        table: table.to_string(),
        doing,
        message,
    }
}

/// Rows and exact cost written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub rows: u64,
    pub cost: Money,
}

impl WriteStats {
    pub fn add(&mut self, o: WriteStats) {
        self.rows += o.rows;
        self.cost += o.cost;
    }
}

fn column_list() -> String {
    WRITE_COLUMNS
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `2026-03-11 14:00:00.123456+00`: microseconds, as PostgreSQL stores them.
fn timestamp_text(e: &SimEvent) -> String {
    e.at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

fn check_text(e: &SimEvent) -> Result<(), WriteError> {
    let fields: [(&'static str, &str); 6] = [
        ("feature name", &e.feature),
        ("user id", &e.user),
        ("model", &e.model),
        ("region", &e.region),
        ("tenant id", &e.tenant),
        ("request id", &e.request_id),
    ];
    match fields.iter().find(|(_, v)| v.contains('\0')) {
        Some((field, _)) => Err(WriteError::Nul {
            field,
            request_id: e.request_id.replace('\0', "\\0"),
        }),
        None => Ok(()),
    }
}

/// Appends a text value in COPY text format: backslash, tab, newline and carriage
/// return escaped (all ASCII, so UTF-8 sequences pass through untouched).
fn push_copy_text(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.put_slice(&bytes[start..i]);
        buf.put_slice(esc);
        start = i + 1;
    }
    buf.put_slice(&bytes[start..]);
}

/// One COPY text line for an event.
fn encode_copy_row(buf: &mut BytesMut, e: &SimEvent) -> Result<(), WriteError> {
    check_text(e)?;
    // Writing into a BytesMut cannot fail.
    let _ = write!(buf, "{}", e.at.format("%Y-%m-%d %H:%M:%S%.6f+00"));
    buf.put_u8(b'\t');
    push_copy_text(buf, &e.feature);
    let _ = write!(buf, "\t{}\t", e.cost);
    push_copy_text(buf, &e.user);
    buf.put_u8(b'\t');
    push_copy_text(buf, &e.model);
    buf.put_u8(b'\t');
    push_copy_text(buf, &e.region);
    buf.put_u8(b'\t');
    push_copy_text(buf, &e.tenant);
    let _ = write!(buf, "\t{}\t{}\t", e.input_tokens, e.output_tokens);
    push_copy_text(buf, &e.request_id);
    buf.put_u8(b'\n');
    Ok(())
}

/// Writes events with one `COPY ... FROM STDIN`: all of them or, on any error
/// (including a NUL in a name, found before the row is sent), none.
pub async fn copy_events<I>(
    client: &Client,
    table: &TableName,
    events: I,
) -> Result<WriteStats, WriteError>
where
    I: IntoIterator<Item = SimEvent>,
{
    let sql = format!("COPY {} ({}) FROM STDIN", table.quoted(), column_list());
    let sink = client
        .copy_in::<_, Bytes>(&sql)
        .await
        .map_err(|e| db_error(table, "starting COPY into", e))?;
    futures_util::pin_mut!(sink);
    let mut stats = WriteStats::default();
    let mut buf = BytesMut::with_capacity(COPY_FLUSH_BYTES + 4096);
    // Dropping the sink without `finish` aborts the COPY (tokio-postgres sends
    // CopyFail), so an early return writes nothing.
    for e in events {
        encode_copy_row(&mut buf, &e)?;
        stats.add(WriteStats {
            rows: 1,
            cost: e.cost,
        });
        if buf.len() >= COPY_FLUSH_BYTES {
            sink.send(buf.split().freeze())
                .await
                .map_err(|e| db_error(table, "copying rows into", e))?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze())
            .await
            .map_err(|e| db_error(table, "copying rows into", e))?;
    }
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| db_error(table, "finishing COPY into", e))?;
    if rows != stats.rows {
        tracing::warn!(
            sent = stats.rows,
            copied = rows,
            "COPY reported another row count than sent"
        );
    }
    Ok(stats)
}

/// A parameter sent in text format, parsed by the server as whatever type the
/// statement needs (the column's type), exactly as a literal would be.
#[derive(Debug)]
struct TextParam(String);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

fn insert_sql(table: &TableName, rows: usize) -> String {
    let n = WRITE_COLUMNS.len();
    let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.quoted(), column_list());
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..n {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", r * n + c + 1);
        }
        sql.push(')');
    }
    sql
}

fn row_params(e: &SimEvent) -> [TextParam; 10] {
    [
        TextParam(timestamp_text(e)),
        TextParam(e.feature.to_string()),
        TextParam(e.cost.to_string()),
        TextParam(e.user.clone()),
        TextParam(e.model.to_string()),
        TextParam(e.region.to_string()),
        TextParam(e.tenant.to_string()),
        TextParam(e.input_tokens.to_string()),
        TextParam(e.output_tokens.to_string()),
        TextParam(e.request_id.clone()),
    ]
}

async fn insert_in(
    tx: &Transaction<'_>,
    table: &TableName,
    events: &[SimEvent],
) -> Result<(), WriteError> {
    for chunk in events.chunks(INSERT_ROWS_PER_STATEMENT) {
        let params: Vec<TextParam> = chunk.iter().flat_map(row_params).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        tx.execute(&insert_sql(table, chunk.len()), &refs)
            .await
            .map_err(|e| db_error(table, "inserting into", e))?;
    }
    Ok(())
}

/// Inserts a batch of events in one transaction (multi-row INSERTs of up to 1,000
/// rows each): all of them or none.
pub async fn insert_events(
    client: &mut Client,
    table: &TableName,
    events: &[SimEvent],
) -> Result<WriteStats, WriteError> {
    if events.is_empty() {
        return Ok(WriteStats::default());
    }
    for e in events {
        check_text(e)?;
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error(table, "beginning a transaction on", e))?;
    insert_in(&tx, table, events).await?;
    tx.commit()
        .await
        .map_err(|e| db_error(table, "committing inserts into", e))?;
    Ok(WriteStats {
        rows: events.len() as u64,
        cost: events.iter().map(|e| e.cost).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::borrow::Cow;

    fn event(feature: &str) -> SimEvent {
        SimEvent {
            at: DateTime::parse_from_rfc3339("2026-03-11T14:00:00.000042Z")
                .unwrap()
                .with_timezone(&Utc),
            feature: Cow::Owned(feature.to_string()),
            user: "user_0042".into(),
            model: Cow::Borrowed("gpt-4o"),
            tenant: Cow::Borrowed("acme"),
            region: Cow::Borrowed("us-east-1"),
            input_tokens: 1000,
            output_tokens: 100,
            cost: "0.0035".parse().unwrap(),
            request_id: "req_1".into(),
        }
    }

    #[test]
    fn copy_text_escapes_exactly_the_special_bytes() {
        let mut buf = BytesMut::new();
        encode_copy_row(&mut buf, &event("a\\b\tc\nd\re 'q' \"dq\" ünï ✓")).unwrap();
        let line = std::str::from_utf8(&buf).unwrap();
        assert_eq!(
            line,
            "2026-03-11 14:00:00.000042+00\ta\\\\b\\tc\\nd\\re 'q' \"dq\" ünï ✓\t0.0035\tuser_0042\t\
             gpt-4o\tus-east-1\tacme\t1000\t100\treq_1\n"
        );
    }

    #[test]
    fn nul_is_refused() {
        let mut buf = BytesMut::new();
        let err = encode_copy_row(&mut buf, &event("a\0b")).unwrap_err();
        assert!(err.to_string().contains("feature name"), "{err}");
    }

    #[test]
    fn insert_sql_numbers_parameters_row_by_row() {
        let t = TableName::parse("analytics.Cost_Events").unwrap();
        let sql = insert_sql(&t, 2);
        assert!(
            sql.starts_with(
                "INSERT INTO \"analytics\".\"cost_events\" (\"timestamp\", \"feature_name\""
            ),
            "{sql}"
        );
        assert!(sql.ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10), ($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"));
    }
}
