//! Tenant isolation enforced by the database: `burnrate db init --rls`.
//!
//! A tenant's monitor logs in as its own PostgreSQL role, a member of
//! `burnrate_tenant_monitor`. The table `burnrate_tenant_logins` (next to the cost
//! table) maps each login to its tenant, and a row-level security policy lets a
//! monitor see only rows of its tenant: the guard is the server, not a WHERE clause
//! of ours. Every other role (the writers, admins) keeps seeing and writing all rows.

use std::fmt;

use tokio_postgres::Client;

use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::schema::{TableName, quote_ident};

/// The group role of every tenant monitor login.
pub const MONITOR_ROLE: &str = "burnrate_tenant_monitor";
/// The login -> tenant map, created in the cost table's schema.
pub const LOGINS_TABLE: &str = "burnrate_tenant_logins";
const TENANT_POLICY: &str = "burnrate_tenant_isolation";
const OTHERS_POLICY: &str = "burnrate_all_rows_for_others";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsReport {
    pub table: String,
    pub logins_table: String,
}

impl fmt::Display for RlsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "row-level security is on for {}: a member of {MONITOR_ROLE} sees only its tenant's rows",
            self.table
        )?;
        writeln!(
            f,
            "map each monitor login to its tenant in {}; for example:",
            self.logins_table
        )?;
        writeln!(
            f,
            "  CREATE ROLE acme_monitor LOGIN PASSWORD '...' IN ROLE {MONITOR_ROLE};"
        )?;
        writeln!(f, "  GRANT CONNECT ON DATABASE <db> TO acme_monitor;")?;
        write!(
            f,
            "  INSERT INTO {} (login, tenant_id) VALUES ('acme_monitor', 'acme');",
            self.logins_table
        )
    }
}

/// The logins table's name, in the cost table's schema.
fn logins_table(table: &TableName) -> String {
    match table.schema() {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(LOGINS_TABLE)),
        None => quote_ident(LOGINS_TABLE),
    }
}

pub async fn enable_rls(target: &ConnectTarget, table: &str) -> Result<RlsReport, SourceError> {
    let table = TableName::parse(table)?;
    let mut client = target.connect().await?;
    enable_rls_with_client(&mut client, &table, &target.endpoint).await
}

/// Idempotent: the role, the map, the grants and the policies are created once, in
/// one transaction, under the same advisory lock as `db init`.
pub async fn enable_rls_with_client(
    client: &mut Client,
    table: &TableName,
    endpoint: &str,
) -> Result<RlsReport, SourceError> {
    let table_text = table.to_string();
    let ctx = ErrorContext {
        endpoint,
        table: &table_text,
        statement_timeout: Default::default(),
    };
    let q = table.quoted();
    let logins = logins_table(table);
    let role = quote_ident(MONITOR_ROLE);
    let txn = client
        .transaction()
        .await
        .map_err(|e| ctx.db(e, "starting db init --rls"))?;
    super::schema::lock_for_init(&txn, &q, &ctx).await?;
    let role_literal = MONITOR_ROLE.replace('\'', "''");
    // Roles are cluster-wide: another database may have created it already.
    let statements = [
        format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role_literal}') THEN CREATE ROLE {role} NOLOGIN; END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {logins} (login name PRIMARY KEY, tenant_id text NOT NULL)"
        ),
        format!("GRANT SELECT ON {q} TO {role}"),
        format!("GRANT SELECT ON {logins} TO {role}"),
        format!("ALTER TABLE {q} ENABLE ROW LEVEL SECURITY"),
        format!(
            "DROP POLICY IF EXISTS {} ON {q}",
            quote_ident(TENANT_POLICY)
        ),
        format!(
            "CREATE POLICY {} ON {q} FOR SELECT TO {role} USING \
             (tenant_id IN (SELECT l.tenant_id FROM {logins} l WHERE l.login = session_user))",
            quote_ident(TENANT_POLICY)
        ),
        format!(
            "DROP POLICY IF EXISTS {} ON {q}",
            quote_ident(OTHERS_POLICY)
        ),
        // Without this, enabling RLS would lock out every writer that is not the owner.
        format!(
            "CREATE POLICY {} ON {q} FOR ALL TO PUBLIC \
             USING (NOT pg_has_role(current_user, '{role_literal}', 'MEMBER')) \
             WITH CHECK (NOT pg_has_role(current_user, '{role_literal}', 'MEMBER'))",
            quote_ident(OTHERS_POLICY)
        ),
    ];
    if let Some(schema) = table.schema() {
        txn.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {} TO {role}",
            quote_ident(schema)
        ))
        .await
        .map_err(|e| ctx.db(e, "granting schema usage to the monitor role"))?;
    }
    for sql in &statements {
        txn.batch_execute(sql)
            .await
            .map_err(|e| ctx.db(e, "enabling row-level security"))?;
    }
    txn.commit()
        .await
        .map_err(|e| ctx.db(e, "committing db init --rls"))?;
    Ok(RlsReport {
        table: table_text,
        logins_table: logins.replace('"', ""),
    })
}
