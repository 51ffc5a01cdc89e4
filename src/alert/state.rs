//! Where the alert book lives: shared in PostgreSQL (every monitor and cron check
//! of the database agrees, and exactly one sends each message), or, when the role
//! is read-only or the tables are missing, a local file under the XDG state
//! directory, one per database, table and tenant (`alerts-<hash>.json`, with
//! `alerts-<hash>.lock` serialising local processes).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::lifecycle::{Book, LogKey, Message};
use crate::source::ConnectTarget;
use crate::source::alert_state::{AlertStateDb, StateDbError};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Db(#[from] crate::source::SourceError),
    #[error("alert state file {path}: {cause}. Check that its directory is writable")]
    File { path: PathBuf, cause: String },
}

enum Backend {
    Shared(Box<AlertStateDb>),
    Local(PathBuf),
}

/// The alert book's home, chosen once at start.
pub struct AlertStore {
    backend: Backend,
    /// Why the local file is used, when it is.
    fallback: Option<String>,
    instance: String,
    /// "host/dbname": what every message names.
    database: String,
    local_path: PathBuf,
    /// The shared state is configured but unreachable: rounds use the local file
    /// (dedupe per machine) until it answers again, then what was sent meanwhile is
    /// merged back into the shared state.
    degraded: Option<Degraded>,
    /// The book as of the last round on the shared state: what the local file
    /// starts from when the shared state becomes unreachable.
    last_shared: Option<(Book, chrono::DateTime<chrono::Utc>)>,
}

/// Why and since when the shared state is not in use.
struct Degraded {
    since: chrono::DateTime<chrono::Utc>,
    reason: String,
}

/// A lock file made with `create_new` (portable, and within the crate's MSRV):
/// held while it exists; one left by a crashed process is taken over after a minute.
struct LocalLock(PathBuf);

impl LocalLock {
    fn take(path: &Path) -> Result<LocalLock, StateError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(LocalLock(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(60));
                    if stale {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(file_err(
                            path,
                            "held by another burnrate for over 10 s; remove it if no burnrate runs",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(file_err(path, e)),
            }
        }
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `$XDG_STATE_HOME/burnrate/alerts-<hash>.json` (next to the log): one file per
/// database (`endpoint`, "host:port/dbname"), table and tenant, so a check against
/// another database never sees, nor resolves, this one's alerts. The name is a
/// hash of those, never of a password.
pub fn local_state_file(endpoint: &str, table: &str, tenant: Option<&str>) -> PathBuf {
    let log = crate::config::default_log_file();
    log.with_file_name(local_state_name(endpoint, table, tenant))
}

fn local_state_name(endpoint: &str, table: &str, tenant: Option<&str>) -> String {
    let mut key = super::Labels::new();
    key.insert("endpoint".into(), endpoint.to_string());
    key.insert("table".into(), table.to_string());
    if let Some(t) = tenant {
        key.insert("tenant".into(), t.to_string());
    }
    format!("alerts-{}.json", super::fingerprint("local state", &key))
}

/// How messages name the database: "host/dbname" (several hosts joined with
/// commas). Never a user or a password.
pub fn database_label(target: &ConnectTarget) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = target
        .config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        target
            .config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        hosts.join(",")
    };
    format!("{hosts}/{}", target.database())
}

/// "host:pid", to tell instances apart in the log.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl AlertStore {
    /// Shared when the database allows it, else the local file (saying why).
    pub async fn open(
        target: Option<ConnectTarget>,
        cost_table: &str,
        local: PathBuf,
    ) -> AlertStore {
        let instance = instance_name();
        let Some(target) = target else {
            return AlertStore {
                backend: Backend::Local(local.clone()),
                fallback: Some("no database".into()),
                database: "(no database)".into(),
                instance,
                local_path: local,
                degraded: None,
                last_shared: None,
            };
        };
        let database = database_label(&target);
        let mut db = match AlertStateDb::new(target, cost_table) {
            Ok(db) => db,
            Err(e) => {
                return AlertStore {
                    backend: Backend::Local(local.clone()),
                    fallback: Some(e.to_string()),
                    instance,
                    database: database.clone(),
                    local_path: local,
                    degraded: None,
                    last_shared: None,
                };
            }
        };
        match db.probe().await {
            Ok(()) => AlertStore {
                backend: Backend::Shared(Box::new(db)),
                fallback: None,
                instance,
                database: database.clone(),
                local_path: local,
                degraded: None,
                last_shared: None,
            },
            Err(StateDbError::Db(e)) => {
                // Unreachable (not refused): shared as soon as it answers; the
                // local file meanwhile.
                let reason = e.to_string();
                tracing::warn!(reason = %reason, path = %local.display(), "alert state: shared state unreachable, using the local file until it answers");
                AlertStore {
                    backend: Backend::Shared(Box::new(db)),
                    fallback: None,
                    instance,
                    database: database.clone(),
                    local_path: local,
                    degraded: Some(Degraded {
                        since: chrono::Utc::now(),
                        reason,
                    }),
                    last_shared: None,
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(reason = %reason, path = %local.display(), "alert state: using a local file");
                AlertStore {
                    backend: Backend::Local(local.clone()),
                    fallback: Some(reason),
                    instance,
                    database: database.clone(),
                    local_path: local,
                    degraded: None,
                    last_shared: None,
                }
            }
        }
    }

    pub fn local(path: PathBuf, reason: &str) -> AlertStore {
        AlertStore {
            backend: Backend::Local(path.clone()),
            fallback: Some(reason.to_string()),
            instance: instance_name(),
            database: "(no database)".into(),
            local_path: path,
            degraded: None,
            last_shared: None,
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// "host/dbname", for messages.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Names the database messages from this store are about ("host/dbname").
    pub fn with_database(mut self, label: impl Into<String>) -> AlertStore {
        self.database = label.into();
        self
    }

    /// Whether this round's state is the shared one (not the local file, neither
    /// for a read-only role nor while the database is unreachable).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Shared(_)) && self.degraded.is_none()
    }

    /// For people: "shared in PostgreSQL at host:5432/db" or "local file ... (why)".
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Shared(db) => match &self.degraded {
                None => format!("shared in PostgreSQL at {}", db.endpoint()),
                Some(d) => format!(
                    "local file {} while the shared state in PostgreSQL at {} is unreachable \
                     (since {} UTC: {}): alerts are deduplicated on this machine only",
                    self.local_path.display(),
                    db.endpoint(),
                    d.since.format("%H:%M:%S"),
                    d.reason
                ),
            },
            Backend::Local(p) => format!(
                "local file {} ({}): alert state is not shared with other monitors",
                p.display(),
                self.fallback.as_deref().unwrap_or("chosen")
            ),
        }
    }

    /// Loads, applies `f`, stores, and claims the messages `f` returns (see
    /// `AlertStateDb::transact`). Nothing is stored when `commit` is false.
    pub async fn transact<T: Send + 'static>(
        &mut self,
        channel: &str,
        commit: bool,
        f: impl FnOnce(&mut Book) -> (T, Vec<Message>) + Clone + Send + 'static,
    ) -> Result<(T, Vec<Message>, Book), StateError> {
        if let Backend::Shared(db) = &mut self.backend {
            // Back after an outage: take in what the local file announced meanwhile.
            let outage = match &self.degraded {
                Some(d) => {
                    let path = self.local_path.clone();
                    let local = tokio::task::spawn_blocking(move || read_book(&path))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    Some((local, d.since))
                }
                None => None,
            };
            let g = f.clone();
            let merge = outage.clone();
            let r = db
                .transact(&self.instance, channel, commit, move |b: &mut Book| {
                    if let Some((local, since)) = &merge {
                        b.merge_outage(local, *since);
                    }
                    g(b)
                })
                .await;
            match r {
                Ok(v) => {
                    if let Some(d) = self.degraded.take() {
                        tracing::info!(since = %d.since, "alert state: the shared state answers again; merged what was sent meanwhile");
                    }
                    self.last_shared = Some((v.2.clone(), chrono::Utc::now()));
                    return Ok(v);
                }
                Err(StateDbError::Db(e)) => {
                    // Unreachable: this round on the local file (dedupe per machine),
                    // starting from the last shared book, and say so.
                    let reason = e.to_string();
                    let seed = match &self.degraded {
                        None => {
                            tracing::warn!(reason = %reason, path = %self.local_path.display(), "alert state: shared state unreachable, using the local file until it answers");
                            self.last_shared.take()
                        }
                        Some(_) => None,
                    };
                    let since = self
                        .degraded
                        .as_ref()
                        .map_or_else(chrono::Utc::now, |d| d.since);
                    self.degraded = Some(Degraded { since, reason });
                    let path = self.local_path.clone();
                    let p2 = path.clone();
                    return tokio::task::spawn_blocking(move || {
                        local_transact(&p2, commit, move |b: &mut Book| {
                            if let Some((shared, as_of)) = &seed {
                                b.seed_from_shared(shared, *as_of);
                            }
                            f(b)
                        })
                    })
                    .await
                    .map_err(|e| file_err(&path, e))?;
                }
                Err(StateDbError::Unusable(reason)) => {
                    // Permissions changed under us: go local, and say so.
                    tracing::warn!(reason = %reason, "alert state: falling back to a local file");
                    self.fallback = Some(reason);
                    self.degraded = None;
                    self.backend = Backend::Local(self.local_path.clone());
                }
            }
        }
        let Backend::Local(path) = &self.backend else {
            unreachable!("shared handled above")
        };
        let path = path.clone();
        let p2 = path.clone();
        tokio::task::spawn_blocking(move || local_transact(&p2, commit, f))
            .await
            .map_err(|e| StateError::File {
                path: path.clone(),
                cause: e.to_string(),
            })?
    }

    /// The stored book, for display.
    pub async fn load(&mut self) -> Result<Book, StateError> {
        if self.degraded.is_some() {
            let path = self.local_path.clone();
            return tokio::task::spawn_blocking(move || read_book(&path))
                .await
                .map_err(|e| file_err(&self.local_path, e))?;
        }
        match &mut self.backend {
            Backend::Shared(db) => db.load().await.map_err(|e| match e {
                StateDbError::Db(e) => StateError::Db(e),
                StateDbError::Unusable(r) => StateError::File {
                    path: PathBuf::new(),
                    cause: r,
                },
            }),
            Backend::Local(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_book(&path))
                    .await
                    .unwrap_or_else(|e| {
                        Err(StateError::File {
                            path: PathBuf::new(),
                            cause: e.to_string(),
                        })
                    })
            }
        }
    }

    /// Logs a delivery outcome (shared state only: the local file logs by its book).
    pub async fn record(&mut self, keys: &[LogKey], channel: &str, status: &str, detail: &str) {
        if let Backend::Shared(db) = &mut self.backend
            && self.degraded.is_none()
            && let Err(e) = db.record(keys, channel, status, detail).await
        {
            tracing::warn!(error = %e, "alert state: cannot log a delivery");
        }
    }
}

impl AlertStore {
    /// A claimed message was not delivered (network, 5xx after every retry, a full
    /// queue): release its claim so the next round sends it again.
    pub async fn release(&mut self, keys: &[LogKey], channel: &str) -> Result<usize, StateError> {
        if let Backend::Shared(db) = &mut self.backend
            && self.degraded.is_none()
        {
            return match db.release(&self.instance, channel, keys).await {
                Ok(n) => Ok(n),
                Err(StateDbError::Db(e)) => Err(StateError::Db(e)),
                Err(StateDbError::Unusable(r)) => Err(file_err(Path::new("(shared)"), r)),
            };
        }
        let keys = keys.to_vec();
        let (n, _, _) = self
            .transact(channel, true, move |b| (b.release(&keys), Vec::new()))
            .await?;
        Ok(n)
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::File {
        path: path.to_path_buf(),
        cause: e.to_string(),
    }
}

fn read_book(path: &Path) -> Result<Book, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            file_err(
                path,
                format!("unreadable ({e}); move it away to start with a fresh state"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Book::default()),
        Err(e) => Err(file_err(path, e)),
    }
}

fn local_transact<T>(
    path: &Path,
    commit: bool,
    f: impl FnOnce(&mut Book) -> (T, Vec<Message>),
) -> Result<(T, Vec<Message>, Book), StateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    let lock = LocalLock::take(&path.with_extension("lock"))?;
    let mut book = read_book(path)?;
    let (value, messages) = f(&mut book);
    if commit {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&book).map_err(|e| file_err(path, e))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| file_err(&tmp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| file_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))?;
    }
    drop(lock);
    Ok((value, messages, book))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_file_is_per_database_table_and_tenant() {
        let a = local_state_name("db:5432/llm", "cost_events", None);
        assert!(a.starts_with("alerts-") && a.ends_with(".json"), "{a}");
        assert_eq!(a, local_state_name("db:5432/llm", "cost_events", None));
        for other in [
            local_state_name("db:5432/other", "cost_events", None),
            local_state_name("db:5433/llm", "cost_events", None),
            local_state_name("db2:5432/llm", "cost_events", None),
            local_state_name("db:5432/llm", "public.cost_events2", None),
            local_state_name("db:5432/llm", "cost_events", Some("acme")),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn messages_name_the_database_as_host_and_dbname_without_secrets() {
        let t = ConnectTarget::from_url("postgres://ana:s3cret@db.example.com:6543/llm").unwrap();
        assert_eq!(database_label(&t), "db.example.com/llm");
        let store = AlertStore::local(PathBuf::from("/nonexistent/x.json"), "test")
            .with_database(database_label(&t));
        assert_eq!(store.database(), "db.example.com/llm");
        let name = local_state_name(&t.endpoint, "cost_events", None);
        assert!(!name.contains("s3cret") && !name.contains("ana"), "{name}");
    }
}
