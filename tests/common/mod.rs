//! Throwaway PostgreSQL databases for integration tests.
//!
//! Each test creates its own database (`burnrate_t_<pid>_<n>_<nanos>`) and drops it at
//! the end, so tests never see each other's rows. The server comes from
//! `BURNRATE_TEST_ADMIN_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn admin_url() -> String {
    std::env::var("BURNRATE_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL at {url}: {e}. Run scripts/test, which starts it."));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub struct TestDb {
    pub name: String,
    /// URL of the throwaway database.
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("burnrate_t_{}_{}_{}", std::process::id(), n, nanos);
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{}", &base[..i], name),
            None => panic!("BURNRATE_TEST_ADMIN_URL must end in /DBNAME"),
        };
        TestDb { name, url }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Drops the database (terminating leftover connections). Call at the end of a
    /// test; a crashed test leaves a `burnrate_t_*` database that scripts/test removes.
    pub async fn drop_db(self) {
        let admin = connect(&admin_url()).await;
        let _ = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop test database");
    }
}
pub mod proxy;
pub mod pty;
pub mod slack;

/// A child process killed and reaped when dropped, so a failing test leaves no
/// `snapshot --follow` (and its database session) running behind it.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Runs `burnrate ARGS --database-url URL` (no config file, no DATABASE_URL from the
/// environment) and asserts it succeeded; for a test's set-up steps.
pub fn burnrate_ok(url: &str, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url])
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
