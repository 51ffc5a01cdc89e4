//! The cost_events table: validated names, `db init` (create or upgrade, idempotent),
//! and the column check at source start that picks the tail mode.

use std::fmt;

use tokio_postgres::{Client, GenericClient};

use super::columns::{MapSpec, ResolvedMap, resolve};
use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use crate::model::TailMode;

/// PostgreSQL truncates identifiers to 63 bytes; longer names are refused rather
/// than silently meaning another table.
const MAX_IDENT_BYTES: usize = 63;

/// A validated, possibly schema-qualified table name. Unquoted parts fold to lower
/// case as PostgreSQL folds them; `"Quoted"` parts are kept exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName, SourceError> {
        let bad = |reason: &str| SourceError::InvalidTableName {
            name: text.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = Vec::new();
        let mut rest = text.trim();
        loop {
            let (part, after) = if let Some(quoted) = rest.strip_prefix('"') {
                parse_quoted(quoted).ok_or_else(|| bad("unterminated or empty quoted name"))?
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                let raw = &rest[..end];
                let mut chars = raw.chars();
                let starts_ok = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
                if !starts_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                    return Err(bad(
                        "a name starts with a letter or _ and has only letters, digits, _ and $ \
                         (put other names in double quotes)",
                    ));
                }
                (raw.to_ascii_lowercase(), &rest[end..])
            };
            if part.len() > MAX_IDENT_BYTES {
                return Err(bad("a name is longer than PostgreSQL's 63 bytes"));
            }
            parts.push(part);
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => return Err(bad("unexpected text after a quoted name")),
            }
        }
        match parts.len() {
            1 => Ok(TableName {
                schema: None,
                name: parts.remove(0),
            }),
            2 => {
                let name = parts.remove(1);
                Ok(TableName {
                    schema: Some(parts.remove(0)),
                    name,
                })
            }
            _ => Err(bad(
                "use TABLE or SCHEMA.TABLE (a database name cannot be given here)",
            )),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The name as SQL: every part double-quoted.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }

    /// An index name derived from the table's (indexes live in the table's schema).
    pub(super) fn index_name(&self, suffix: &str) -> String {
        let mut base = self.name.clone();
        let max = MAX_IDENT_BYTES - suffix.len() - 1;
        while base.len() > max {
            base.pop();
        }
        format!("{base}_{suffix}")
    }
}

/// Plain when PostgreSQL would read it back unchanged, quoted otherwise.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &str| {
            if is_plain(p) {
                p.to_string()
            } else {
                quote_ident(p)
            }
        };
        match &self.schema {
            Some(s) => write!(f, "{}.{}", show(s), show(&self.name)),
            None => f.write_str(&show(&self.name)),
        }
    }
}

fn is_plain(p: &str) -> bool {
    let mut chars = p.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// `"..."` content up to the closing quote (with `""` as an escaped quote), and the
/// text after it.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().is_some_and(|(_, n)| *n == '"') {
                chars.next();
                out.push('"');
            } else {
                return (!out.is_empty()).then(|| (out, &s[i + 1..]));
            }
        } else if c == '\0' {
            return None;
        } else {
            out.push(c);
        }
    }
    None
}

/// Double-quotes an identifier for SQL text.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The columns of a complete table, in order, with their DDL.
const COLUMNS: [(&str, &str); 12] = [
    ("timestamp", "timestamptz NOT NULL DEFAULT now()"),
    ("feature_name", "text"),
    ("cost_usd", "numeric"),
    ("user_id", "text"),
    ("model", "text"),
    ("region", "text"),
    ("tenant_id", "text"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("request_id", "text"),
    ("id", "bigserial"),
    // Every row remembers its writing transaction, for the gap-free tail. Rows that
    // exist when this is added all get the ALTER's xid: they are committed, so fine.
    ("tx", "xid8 NOT NULL DEFAULT pg_current_xact_id()"),
];

/// The column list of a complete table, for CREATE TABLE.
pub(super) fn columns_ddl() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(n, ddl)| format!("{} {ddl}", quote_ident(n)))
        .collect();
    cols.join(", ")
}

/// Serialises every `db init` step on one table (concurrent runs wait, and the
/// second finds nothing to do): a transaction-level advisory lock.
pub(super) async fn lock_for_init(
    txn: &impl tokio_postgres::GenericClient,
    quoted_table: &str,
    ctx: &ErrorContext<'_>,
) -> Result<(), SourceError> {
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("burnrate db init {quoted_table}")],
    )
    .await
    .map_err(|e| ctx.db(e, "taking the db init lock"))?;
    Ok(())
}

/// Indexes the queries need: (suffix, columns).
const INDEXES: [(&str, &[&str]); 2] = [
    ("tx_id_idx", &["tx", "id"]),
    ("timestamp_idx", &["timestamp"]),
];

/// The name columns, in `Dim::ALL` order (feature, user, model, tenant, region).
pub const NAME_COLUMNS: [&str; 5] = ["feature_name", "user_id", "model", "tenant_id", "region"];

/// What `db init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    pub table: String,
    pub endpoint: String,
    pub created_table: bool,
    pub added_columns: Vec<String>,
    pub created_indexes: Vec<String>,
    /// Existing columns whose type burnrate cannot read, and similar hints.
    pub warnings: Vec<String>,
}

impl InitReport {
    pub fn changed(&self) -> bool {
        self.created_table || !self.added_columns.is_empty() || !self.created_indexes.is_empty()
    }
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created_table {
            writeln!(f, "created table {} in {}", self.table, self.endpoint)?;
        } else if !self.added_columns.is_empty() {
            writeln!(
                f,
                "upgraded table {} in {}: added columns {} (existing rows kept)",
                self.table,
                self.endpoint,
                self.added_columns.join(", ")
            )?;
        }
        if !self.created_indexes.is_empty() {
            writeln!(f, "created indexes {}", self.created_indexes.join(", "))?;
        }
        if !self.changed() {
            writeln!(
                f,
                "table {} in {} is up to date; nothing to do",
                self.table, self.endpoint
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// pg_type.typname: "timestamptz", "numeric", "int8", "xid8"...
    pub type_name: String,
    /// format_type(): "timestamp with time zone", "numeric(12,6)"...
    pub display_type: String,
    pub attnum: i16,
}

/// How `cost_usd` is stored, which decides how non-finite values are spotted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKind {
    Numeric,
    Float,
    Integer,
}

/// The table as found at source start.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub table: TableName,
    pub columns: Vec<ColumnInfo>,
    pub mode: TailMode,
    pub cost_kind: CostKind,
    /// server_version_num, e.g. 150004.
    pub server_version: i32,
    /// The column map, checked against the columns.
    pub map: ResolvedMap,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn has(&self, name: &str) -> bool {
        self.column(name).is_some()
    }
}

const INTEGER_TYPES: [&str; 3] = ["int2", "int4", "int8"];

pub(crate) async fn server_version(
    client: &impl GenericClient,
    ctx: &ErrorContext<'_>,
) -> Result<i32, SourceError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| ctx.db(e, "reading the server version"))?;
    row.try_get::<_, i32>(0)
        .map_err(|e| ctx.unexpected(format!("server version: {e}")))
}

/// The table's columns, or None if no such table is visible.
async fn read_columns(
    client: &impl GenericClient,
    table: &TableName,
    ctx: &ErrorContext<'_>,
) -> Result<Option<Vec<ColumnInfo>>, SourceError> {
    // to_regclass resolves the name exactly as a query would (search_path included).
    let exists = client
        .query_one("SELECT to_regclass($1)::oid", &[&table.quoted()])
        .await
        .map_err(|e| ctx.db(e, "looking up the table"))?;
    let oid: Option<u32> = exists
        .try_get(0)
        .map_err(|e| ctx.unexpected(format!("table oid: {e}")))?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text, format_type(a.atttypid, a.atttypmod), a.attnum \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| ctx.db(e, "reading the table's columns"))?;
    let mut cols = Vec::with_capacity(rows.len());
    for r in rows {
        let get = |e: tokio_postgres::Error| ctx.unexpected(format!("column list: {e}"));
        cols.push(ColumnInfo {
            name: r.try_get(0).map_err(get)?,
            type_name: r.try_get(1).map_err(get)?,
            display_type: r.try_get(2).map_err(get)?,
            attnum: r.try_get(3).map_err(get)?,
        });
    }
    Ok(Some(cols))
}

/// Checks the table at source start and picks the tail mode: the `tx` column gives
/// the gap-free watermark, an integer `id` alone the best-effort id overlap.
pub async fn inspect(
    client: &Client,
    table: &TableName,
    map: &MapSpec,
    endpoint: &str,
) -> Result<TableInfo, SourceError> {
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let server_version = server_version(client, &ctx).await?;
    let columns =
        read_columns(client, table, &ctx)
            .await?
            .ok_or_else(|| SourceError::TableMissing {
                table: table_text.clone(),
                endpoint: endpoint.to_string(),
                advice: super::error::table_missing_advice(Some(map.preset)),
            })?;
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let missing = |column: &str| SourceError::ColumnMissing {
        table: table_text.clone(),
        endpoint: endpoint.into(),
        column: column.into(),
        advice: super::columns::missing_column_advice(column, &columns),
    };
    let wrong_type = |c: &ColumnInfo, expected: &str, fix: String| SourceError::ColumnType {
        table: table_text.clone(),
        column: c.name.clone(),
        found: c.display_type.clone(),
        expected: expected.into(),
        fix,
    };
    let q = table.quoted();

    // burnrate's own table: the checks (and fixes) that go with `db init`. Other
    // presets and column maps are checked by `columns::resolve` below.
    if map.strict_burnrate {
        let ts = find("timestamp").ok_or_else(|| missing("timestamp"))?;
        if ts.type_name != "timestamptz" {
            return Err(wrong_type(
                ts,
                "timestamptz",
                format!(
                    "ALTER TABLE {q} ALTER COLUMN \"timestamp\" TYPE timestamptz USING \"timestamp\" AT TIME ZONE 'UTC'"
                ),
            ));
        }
        let cost = find("cost_usd").ok_or_else(|| missing("cost_usd"))?;
        let cost_kind = match cost.type_name.as_str() {
            "numeric" => CostKind::Numeric,
            "float4" | "float8" => CostKind::Float,
            t if INTEGER_TYPES.contains(&t) => CostKind::Integer,
            _ => {
                return Err(wrong_type(
                    cost,
                    "numeric",
                    format!(
                        "ALTER TABLE {q} ALTER COLUMN cost_usd TYPE numeric USING cost_usd::numeric"
                    ),
                ));
            }
        };
        for tokens in ["input_tokens", "output_tokens"] {
            if let Some(c) = find(tokens)
                && !(INTEGER_TYPES.contains(&c.type_name.as_str()) || c.type_name == "numeric")
            {
                return Err(wrong_type(
                    c,
                    "bigint",
                    format!(
                        "ALTER TABLE {q} ALTER COLUMN {tokens} TYPE bigint USING {tokens}::bigint"
                    ),
                ));
            }
        }
        let id = find("id");
        if let Some(c) = id
            && !INTEGER_TYPES.contains(&c.type_name.as_str())
        {
            return Err(wrong_type(
                c,
                "bigint (a bigserial) to order new rows",
                format!(
                    "rename it (ALTER TABLE {q} RENAME COLUMN id TO row_id), then run `burnrate db init`"
                ),
            ));
        }
        let tx = find("tx").filter(|c| c.type_name == "xid8");
        if find("tx").is_some() && tx.is_none() {
            tracing::warn!(table = %table_text, "column tx is not xid8; tailing by id overlap instead");
        }
        let mode = match (tx, id) {
            (Some(_), Some(_)) => TailMode::TxWatermark,
            (None, Some(_)) => TailMode::IdOverlap,
            (_, None) => return Err(missing("id")),
        };
        tracing::debug!(?mode, ?cost_kind, "burnrate's schema checked");
    }
    let resolved = resolve(map, &columns).map_err(|message| SourceError::ColumnMap {
        table: table_text.clone(),
        endpoint: endpoint.to_string(),
        message,
    })?;
    Ok(TableInfo {
        table: table.clone(),
        columns,
        mode: resolved.mode(),
        cost_kind: resolved.cost_kind,
        server_version,
        map: resolved,
    })
}

/// `burnrate db init`: connects and creates or upgrades the table.
pub async fn init(target: &ConnectTarget, table: &str) -> Result<InitReport, SourceError> {
    let table = TableName::parse(table)?;
    let mut client = target.connect().await?;
    init_with_client(&mut client, &table, &target.endpoint).await
}

/// Creates the table, or adds what an older table lacks (ADD COLUMN IF NOT EXISTS,
/// no row lost), and the indexes; in one transaction under an advisory lock, so
/// concurrent runs serialise and the second finds nothing to do.
pub async fn init_with_client(
    client: &mut Client,
    table: &TableName,
    endpoint: &str,
) -> Result<InitReport, SourceError> {
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let version = server_version(&*client, &ctx).await?;
    if version < 130_000 {
        return Err(SourceError::ServerTooOld {
            endpoint: endpoint.to_string(),
            found: format!("{}.{}", version / 10_000, version % 10_000),
            what: "`db init` (the xid8 tx column)",
        });
    }
    let q = table.quoted();
    let txn = client
        .transaction()
        .await
        .map_err(|e| ctx.db(e, "starting db init"))?;
    lock_for_init(&txn, &q, &ctx).await?;

    let mut report = InitReport {
        table: table_text.clone(),
        endpoint: endpoint.to_string(),
        created_table: false,
        added_columns: Vec::new(),
        created_indexes: Vec::new(),
        warnings: Vec::new(),
    };
    match read_columns(&txn, table, &ctx).await? {
        None => {
            txn.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {q} ({})",
                columns_ddl()
            ))
            .await
            .map_err(|e| ctx.db(e, "creating the table"))?;
            report.created_table = true;
        }
        Some(existing) => {
            for (name, ddl) in COLUMNS {
                if existing.iter().any(|c| c.name == name) {
                    continue;
                }
                txn.batch_execute(&format!(
                    "ALTER TABLE {q} ADD COLUMN IF NOT EXISTS {} {ddl}",
                    quote_ident(name)
                ))
                .await
                .map_err(|e| ctx.db(e, "adding a column"))?;
                report.added_columns.push(name.to_string());
            }
        }
    }

    let columns = read_columns(&txn, table, &ctx).await?.unwrap_or_default();
    let existing_indexes = btree_index_keys(&txn, table, &ctx).await?;
    for (suffix, index_cols) in INDEXES {
        let attnums: Option<Vec<i16>> = index_cols
            .iter()
            .map(|n| columns.iter().find(|c| c.name == *n).map(|c| c.attnum))
            .collect();
        let Some(attnums) = attnums else { continue };
        // An index whose leading columns are these serves the queries just as well.
        if existing_indexes
            .iter()
            .any(|keys| keys.starts_with(&attnums))
        {
            continue;
        }
        let index = table.index_name(suffix);
        let list: Vec<String> = index_cols.iter().map(|c| quote_ident(c)).collect();
        txn.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {q} ({})",
            quote_ident(&index),
            list.join(", ")
        ))
        .await
        .map_err(|e| ctx.db(e, "creating an index"))?;
        report.created_indexes.push(index);
    }

    for c in &columns {
        let readable = match c.name.as_str() {
            "timestamp" => c.type_name == "timestamptz",
            "cost_usd" => ["numeric", "float4", "float8", "int2", "int4", "int8"]
                .contains(&c.type_name.as_str()),
            "input_tokens" | "output_tokens" | "id" => {
                INTEGER_TYPES.contains(&c.type_name.as_str())
                    || (c.name != "id" && c.type_name == "numeric")
            }
            "tx" => c.type_name == "xid8",
            _ => true,
        };
        if !readable {
            report.warnings.push(format!(
                "column {} has type {}, which burnrate cannot read; see the error at start-up for the fix",
                c.name, c.display_type
            ));
        }
    }
    // The shared alert state (alerts, silences, notification log) lives next to it.
    super::alert_state::create_tables(&txn, &super::alert_state::AlertTables::next_to(table))
        .await
        .map_err(|e| ctx.db(e, "creating the alert state tables"))?;
    txn.commit()
        .await
        .map_err(|e| ctx.db(e, "committing db init"))?;
    tracing::info!(table = %table_text, %endpoint, ?report, "db init done");
    Ok(report)
}

/// Key columns (attnums) of the table's plain btree indexes.
async fn btree_index_keys(
    client: &impl GenericClient,
    table: &TableName,
    ctx: &ErrorContext<'_>,
) -> Result<Vec<Vec<i16>>, SourceError> {
    let rows = client
        .query(
            "SELECT i.indkey::int2[] FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             WHERE i.indrelid = to_regclass($1) AND am.amname = 'btree' \
               AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&table.quoted()],
        )
        .await
        .map_err(|e| ctx.db(e, "reading the table's indexes"))?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, Vec<i16>>(0)
                .map_err(|e| ctx.unexpected(format!("index keys: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated_and_quoted() {
        let t = TableName::parse("cost_events").unwrap();
        assert_eq!(t.quoted(), "\"cost_events\"");
        assert_eq!(t.to_string(), "cost_events");
        let t = TableName::parse("Analytics.Cost_Events").unwrap();
        assert_eq!(t.quoted(), "\"analytics\".\"cost_events\"");
        let t = TableName::parse("\"My \"\"Odd\"\" Schema\".events").unwrap();
        assert_eq!(t.schema(), Some("My \"Odd\" Schema"));
        assert_eq!(t.quoted(), "\"My \"\"Odd\"\" Schema\".\"events\"");
        assert_eq!(t.to_string(), "\"My \"\"Odd\"\" Schema\".events");
        let t = TableName::parse("\"a.b\"").unwrap();
        assert_eq!((t.schema(), t.name()), (None, "a.b"));

        for bad in [
            "",
            "cost events",
            "x; DROP TABLE y",
            "a.b.c",
            "1table",
            "\"unterminated",
            "\"\"",
            "\"x\"y",
            "a.",
            ".a",
            &"x".repeat(64),
        ] {
            let err = TableName::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("database.table"), "{err}");
        }
    }

    #[test]
    fn index_names_fit_in_63_bytes() {
        let t = TableName::parse(&"x".repeat(63)).unwrap();
        let n = t.index_name("timestamp_idx");
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_timestamp_idx"));
    }

    #[test]
    fn report_says_what_changed() {
        let mut r = InitReport {
            table: "cost_events".into(),
            endpoint: "h:5432/db".into(),
            created_table: false,
            added_columns: vec!["tx".into(), "id".into()],
            created_indexes: vec!["cost_events_tx_id_idx".into()],
            warnings: vec![],
        };
        let s = r.to_string();
        assert!(
            s.contains("added columns tx, id (existing rows kept)"),
            "{s}"
        );
        assert!(s.contains("cost_events_tx_id_idx"), "{s}");
        r.added_columns.clear();
        r.created_indexes.clear();
        assert!(r.to_string().contains("up to date"));
    }
}
