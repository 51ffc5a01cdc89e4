//! Where to connect: `--database-url`, then `$DATABASE_URL`, then the config's
//! `database.url`, with anything they leave out filled from the libpq variables
//! (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGAPPNAME, PGCONNECT_TIMEOUT)
//! and libpq's defaults, as `psql` would. One difference: a URL that names a host
//! but no port means port 5432 (the driver fills it in), where libpq would use PGPORT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{SourceError, describe_driver_error};
use super::tls::{SslMode, TlsSettings, client_config, split_tls_params};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PORT: u16 = 5432;
/// libpq's default Unix socket directory on Debian-family systems.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
pub const APPLICATION_NAME: &str = "burnrate";

/// A resolved connection: the driver's config and a printable "host:port/dbname".
#[derive(Debug, Clone)]
pub struct ConnectTarget {
    /// Complete: host, port, user and dbname are always set.
    pub config: tokio_postgres::Config,
    /// "host:port/dbname" for status lines and errors; never holds a password.
    pub endpoint: String,
    /// sslmode and sslrootcert, as libpq reads them.
    pub tls: TlsSettings,
    /// Where the connection string came from ("--database-url", "DATABASE_URL", "the
    /// config key database.url"); None: the PG* variables and libpq's defaults.
    pub origin: Option<&'static str>,
}

impl ConnectTarget {
    /// Resolves from the flag and config values and the process environment.
    pub fn resolve(
        explicit_url: Option<&str>,
        config_url: Option<&str>,
    ) -> Result<ConnectTarget, SourceError> {
        resolve_with(
            explicit_url,
            config_url,
            &|key| std::env::var(key).ok(),
            &|dir| dir.is_dir(),
        )
    }

    /// A target for exactly this URL (or key=value string), defaults filled in but no
    /// environment consulted. For tests and tools that already hold a full URL.
    pub fn from_url(url: &str) -> Result<ConnectTarget, SourceError> {
        resolve_with(Some(url), None, &|_| None, &|_| false)
    }

    /// The primary's target (`--primary-url`, `$BURNRATE_PRIMARY_URL`, then the
    /// config's `database.primary_url`), if one is given.
    pub fn resolve_primary(
        explicit_url: Option<&str>,
        config_url: Option<&str>,
    ) -> Result<Option<ConnectTarget>, SourceError> {
        resolve_primary_with(
            explicit_url,
            config_url,
            &|key| std::env::var(key).ok(),
            &|dir| dir.is_dir(),
        )
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// Opens a connection (TLS as sslmode says) and drives it on the current runtime.
    pub async fn connect(&self) -> Result<Client, SourceError> {
        self.connect_with(None).await
    }

    /// `connect`, and every NOTIFY the session receives (after a LISTEN) wakes `wake`.
    pub async fn connect_with(&self, wake: Option<Arc<Notify>>) -> Result<Client, SourceError> {
        let mut config = self.config.clone();
        config.ssl_mode(self.tls.mode.driver_mode());
        let tls = client_config(&self.tls).map_err(|e| self.connect_failed(e.to_string()))?;
        let endpoint = self.endpoint.clone();
        let client = match tls {
            None => {
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|e| self.connect_error(&e))?;
                tokio::spawn(drive(connection, endpoint, wake));
                client
            }
            Some(tls) => {
                let (client, connection) = config
                    .connect(MakeRustlsConnect::new(tls))
                    .await
                    .map_err(|e| self.connect_error(&e))?;
                tokio::spawn(drive(connection, endpoint, wake));
                client
            }
        };
        Ok(client)
    }

    /// Asks the server to cancel a running query, over TLS when the connection used it.
    pub async fn cancel(&self, token: tokio_postgres::CancelToken) {
        let result = match client_config(&self.tls) {
            Ok(Some(tls)) => token.cancel_query(MakeRustlsConnect::new(tls)).await,
            _ => token.cancel_query(NoTls).await,
        };
        if let Err(e) = result {
            tracing::debug!(endpoint = %self.endpoint, error = %describe_driver_error(&e), "cancel request failed");
        }
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> SourceError {
        let cause = match std::error::Error::source(e) {
            // The driver's own connect timeout has no I/O cause.
            None if e.to_string().contains("timeout") => {
                let secs = self
                    .config
                    .get_connect_timeout()
                    .map_or(0, Duration::as_secs);
                format!("no answer within {secs} s")
            }
            _ if speaks_other_protocol(e) => format!(
                "the server at {} did not answer as PostgreSQL (is another service listening on \
                 that port?)",
                self.host_port()
            ),
            _ => describe_driver_error(e),
        };
        self.connect_failed(cause)
    }

    fn connect_failed(&self, cause: String) -> SourceError {
        SourceError::Connect {
            endpoint: self.endpoint.clone(),
            database: self.database().to_string(),
            user: self.user().to_string(),
            cause: self.scrub(&cause),
            origin: self.origin,
        }
    }

    /// "host:port" of the first host, for messages.
    fn host_port(&self) -> String {
        self.endpoint
            .rsplit_once('/')
            .map_or(self.endpoint.as_str(), |(hp, _)| hp)
            .to_string()
    }

    /// Belt and braces: no message may ever echo the password, whatever a driver or
    /// server puts in its text.
    fn scrub(&self, text: &str) -> String {
        match self
            .config
            .get_password()
            .and_then(|p| std::str::from_utf8(p).ok())
        {
            Some(pw) if !pw.is_empty() => text.replace(pw, "***"),
            _ => text.to_string(),
        }
    }
}

/// Whether the peer answered, but not in PostgreSQL's protocol (an HTTP or SSH
/// server on the port): the driver then reports framing errors such as "bytes
/// remaining on stream" or an invalid message, which mean nothing to a user.
fn speaks_other_protocol(e: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind;
    if e.as_db_error().is_some() {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // rustls reports certificate and handshake failures as InvalidData too:
            // those are TLS problems, said as such by `describe_driver_error`.
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return false;
            }
            let text = io.to_string();
            return matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::InvalidInput)
                || text.contains("bytes remaining on stream")
                || text.contains("invalid message");
        }
        cur = c.source();
    }
    let text = e.to_string();
    text.contains("unexpected message") || text.contains("error parsing")
}

async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    endpoint: String,
    wake: Option<Arc<Notify>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Polling the messages drives the connection as awaiting it would, and also
    // hands over notifications (and notices, which are only logged).
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) => {
                tracing::trace!(%endpoint, channel = n.channel(), "notified");
                if let Some(w) = &wake {
                    w.notify_one();
                }
            }
            Ok(AsyncMessage::Notice(notice)) => {
                tracing::debug!(%endpoint, notice = %notice.message(), "server notice");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%endpoint, error = %describe_driver_error(&e), "PostgreSQL connection ended");
                return;
            }
        }
    }
}

/// Resolves a target with injected environment lookups, so tests need not mutate the
/// process environment. `env` returns a variable's value; `dir_exists` answers for the
/// default socket directory.
pub fn resolve_with(
    explicit_url: Option<&str>,
    config_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    dir_exists: &dyn Fn(&Path) -> bool,
) -> Result<ConnectTarget, SourceError> {
    let env = |key: &str| env(key).filter(|v| !v.is_empty());
    let database_url = env("DATABASE_URL");
    let chosen = [
        ("--database-url", explicit_url.map(str::to_string)),
        ("DATABASE_URL", database_url),
        (
            "the config key database.url",
            config_url.map(str::to_string),
        ),
    ]
    .into_iter()
    .find_map(|(origin, url)| url.filter(|u| !u.trim().is_empty()).map(|u| (origin, u)));
    resolve_chosen(chosen, &env, dir_exists)
}

/// The primary's target when one is given (`--primary-url`, `$BURNRATE_PRIMARY_URL`,
/// the config's `database.primary_url`, first match wins), its gaps filled from the
/// libpq variables like the read URL's; None when none is given.
pub fn resolve_primary_with(
    explicit_url: Option<&str>,
    config_url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    dir_exists: &dyn Fn(&Path) -> bool,
) -> Result<Option<ConnectTarget>, SourceError> {
    let env = |key: &str| env(key).filter(|v| !v.is_empty());
    let chosen = [
        ("--primary-url", explicit_url.map(str::to_string)),
        (PRIMARY_URL_ENV, env(PRIMARY_URL_ENV)),
        (
            "the config key database.primary_url",
            config_url.map(str::to_string),
        ),
    ]
    .into_iter()
    .find_map(|(origin, url)| url.filter(|u| !u.trim().is_empty()).map(|u| (origin, u)));
    match chosen {
        None => Ok(None),
        Some(c) => resolve_chosen(Some(c), &env, dir_exists).map(Some),
    }
}

/// The environment variable naming the primary (see `resolve_primary_with`).
pub const PRIMARY_URL_ENV: &str = "BURNRATE_PRIMARY_URL";

fn resolve_chosen(
    chosen: Option<(&'static str, String)>,
    env: &dyn Fn(&str) -> Option<String>,
    dir_exists: &dyn Fn(&Path) -> bool,
) -> Result<ConnectTarget, SourceError> {
    // The driver knows neither verify-* modes nor sslrootcert: take them out first.
    let (chosen, url_sslmode, url_rootcert) = match chosen {
        Some((origin, url)) => {
            let (rest, mode, root) = split_tls_params(&url);
            (Some((origin, rest)), mode.map(|m| (origin, m)), root)
        }
        None => (None, None, None),
    };
    let mut config = match &chosen {
        Some((origin, url)) => url.trim().parse::<tokio_postgres::Config>().map_err(|e| {
            SourceError::InvalidConnectionString {
                origin,
                detail: parse_detail(&e),
            }
        })?,
        None => tokio_postgres::Config::new(),
    };

    // libpq semantics: the connection string wins, the PG* variables fill its gaps.
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host.trim());
                }
            }
            None if dir_exists(Path::new(DEFAULT_SOCKET_DIR)) => {
                config.host(DEFAULT_SOCKET_DIR);
            }
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        let port = match env("PGPORT") {
            Some(p) => {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| SourceError::InvalidConnectionString {
                        origin: "PGPORT",
                        detail: format!("{p:?} is not a port number"),
                    })?
            }
            None => DEFAULT_PORT,
        };
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .ok_or_else(|| SourceError::InvalidConnectionString {
                origin: "the environment",
                detail: "no database user given (none in the connection string; PGUSER, USER and LOGNAME are unset)".into(),
            })?;
        config.user(user);
    }
    if config.get_password().is_none()
        && let Some(pw) = env("PGPASSWORD")
    {
        config.password(pw);
    }
    if config.get_dbname().is_none() {
        let db =
            env("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or_default().to_string());
        config.dbname(db);
    }
    if config.get_application_name().is_none() {
        config.application_name(env("PGAPPNAME").unwrap_or_else(|| APPLICATION_NAME.to_string()));
    }
    if config.get_connect_timeout().is_none() {
        // As in libpq, zero or a negative number means "no timeout"; we keep ours then.
        let secs = env("PGCONNECT_TIMEOUT")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0);
        config.connect_timeout(secs.map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs));
    }

    let mode = match url_sslmode.or_else(|| env("PGSSLMODE").map(|m| ("PGSSLMODE", m))) {
        Some((origin, m)) => SslMode::parse(&m).ok_or_else(|| SourceError::InvalidConnectionString {
            origin,
            detail: format!(
                "sslmode {m:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
        })?,
        None => SslMode::default(),
    };
    let root_cert = url_rootcert
        .or_else(|| env("PGSSLROOTCERT"))
        .map(PathBuf::from);
    let tls = TlsSettings { mode, root_cert };
    let endpoint = endpoint_of(&config);
    Ok(ConnectTarget {
        config,
        endpoint,
        tls,
        origin: chosen.map(|(origin, _)| origin),
    })
}

/// The driver's parse errors name only keys ("unknown option `x`", "invalid value for
/// option `port`"); anything else may quote the input, which can hold a password.
fn parse_detail(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e).map(|c| c.to_string()) {
        Some(c) if c.starts_with("unknown option") || c.starts_with("invalid value for option") => {
            c
        }
        _ => "it could not be parsed".into(),
    }
}

/// "host:port/dbname"; several hosts are joined with commas.
fn endpoint_of(config: &tokio_postgres::Config) -> String {
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if hosts.is_empty() {
        hosts = config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
    }
    let ports = config.get_ports();
    let hosts: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports
                .get(i)
                .or(ports.first())
                .copied()
                .unwrap_or(DEFAULT_PORT);
            format!("{h}:{port}")
        })
        .collect();
    format!("{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn resolve(
        flag: Option<&str>,
        cfg: Option<&str>,
        env: &[(&str, &str)],
        socket: bool,
    ) -> ConnectTarget {
        resolve_with(flag, cfg, &env_of(env), &|_| socket).unwrap()
    }

    #[test]
    fn the_primary_comes_from_its_flag_env_or_config_key_and_is_optional() {
        let primary = |flag: Option<&str>, cfg: Option<&str>, env: &[(&str, &str)]| {
            resolve_primary_with(flag, cfg, &env_of(env), &|_| false)
                .unwrap()
                .map(|t| (t.endpoint, t.origin))
        };
        // DATABASE_URL names the read server, never the primary.
        let env = [
            ("DATABASE_URL", "postgres://u@replica/llm"),
            ("BURNRATE_PRIMARY_URL", "postgres://u@envprimary:5433/llm"),
        ];
        assert_eq!(primary(None, None, &env[..1]), None);
        assert_eq!(
            primary(
                Some("postgres://u@flagprimary/llm"),
                Some("postgres://u@cfg/llm"),
                &env
            ),
            Some(("flagprimary:5432/llm".into(), Some("--primary-url")))
        );
        assert_eq!(
            primary(None, Some("postgres://u@cfg/llm"), &env),
            Some(("envprimary:5433/llm".into(), Some("BURNRATE_PRIMARY_URL")))
        );
        assert_eq!(
            primary(
                None,
                Some("postgres://u@cfg/llm"),
                &[("BURNRATE_PRIMARY_URL", "")]
            ),
            Some((
                "cfg:5432/llm".into(),
                Some("the config key database.primary_url")
            ))
        );
        // A bad one says where it came from and what it is for.
        let err = resolve_primary_with(
            Some("postgres://u@h:notaport/db"),
            None,
            &env_of(&[]),
            &|_| false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--primary-url"), "{err}");
    }

    #[test]
    fn flag_beats_env_beats_config() {
        let env = [("DATABASE_URL", "postgres://u@envhost:5433/envdb")];
        let cfg = Some("postgres://u@cfghost/cfgdb");
        let t = resolve(Some("postgres://u@flaghost:6000/flagdb"), cfg, &env, false);
        assert_eq!(t.endpoint, "flaghost:6000/flagdb");
        let t = resolve(None, cfg, &env, false);
        assert_eq!(t.endpoint, "envhost:5433/envdb");
        let t = resolve(None, cfg, &[], false);
        assert_eq!(t.endpoint, "cfghost:5432/cfgdb");
        // An empty DATABASE_URL counts as unset.
        let t = resolve(None, cfg, &[("DATABASE_URL", "")], false);
        assert_eq!(t.endpoint, "cfghost:5432/cfgdb");
    }

    #[test]
    fn libpq_variables_fill_gaps_only() {
        let env = [
            ("PGHOST", "pghost"),
            ("PGPORT", "7777"),
            ("PGUSER", "pguser"),
            ("PGDATABASE", "pgdb"),
            ("PGPASSWORD", "pw"),
            ("PGAPPNAME", "myapp"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("USER", "osuser"),
        ];
        let t = resolve(None, None, &env, true);
        assert_eq!(t.endpoint, "pghost:7777/pgdb");
        assert_eq!(t.user(), "pguser");
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(t.config.get_application_name(), Some("myapp"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_secs(9))
        );

        // The URL's parts win; missing ones still come from the variables.
        let t = resolve(Some("postgres://urluser@/urldb"), None, &env, true);
        assert_eq!(t.endpoint, "pghost:7777/urldb");
        assert_eq!(t.user(), "urluser");
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        let t = resolve(Some("host=kvhost dbname=kvdb"), None, &env, true);
        assert_eq!(t.endpoint, "kvhost:7777/kvdb");
        // Unlike libpq, a URL naming a host without a port means 5432 (the driver's
        // URL parser fills it in).
        let t = resolve(Some("postgres://urluser@urlhost/urldb"), None, &env, true);
        assert_eq!(t.endpoint, "urlhost:5432/urldb");
    }

    #[test]
    fn libpq_defaults() {
        let t = resolve(None, None, &[("USER", "alice")], true);
        assert_eq!(t.endpoint, "/var/run/postgresql:5432/alice");
        assert!(matches!(t.config.get_hosts(), [Host::Unix(_)]));
        assert_eq!(t.config.get_application_name(), Some("burnrate"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        let t = resolve(None, None, &[("USER", "alice")], false);
        assert_eq!(t.endpoint, "localhost:5432/alice");
        assert_eq!(t.database(), "alice");
        let err = resolve_with(None, None, &env_of(&[]), &|_| false).unwrap_err();
        assert!(err.to_string().contains("PGUSER"), "{err}");
    }

    #[test]
    fn key_value_form_and_unix_socket_in_url() {
        let t = resolve(
            Some("host=db.internal port=5439 user=bob dbname=llm application_name=x"),
            None,
            &[],
            false,
        );
        assert_eq!(t.endpoint, "db.internal:5439/llm");
        assert_eq!(t.config.get_application_name(), Some("x"));
        let t = resolve(Some("postgresql://bob@%2Ftmp%2Fpg/llm"), None, &[], false);
        assert_eq!(t.endpoint, "/tmp/pg:5432/llm");
        let t = resolve(Some("postgres://bob@[::1]:5433/llm"), None, &[], false);
        assert_eq!(t.endpoint, "[::1]:5433/llm");
    }

    #[test]
    fn password_never_reaches_endpoint_or_errors() {
        let t = resolve(
            Some("postgres://bob:hunter2secret@db:5432/llm"),
            None,
            &[],
            false,
        );
        assert_eq!(t.config.get_password(), Some(&b"hunter2secret"[..]));
        assert!(!t.endpoint.contains("hunter2secret"));
        assert!(!format!("{t:?}").contains("hunter2secret"));
        let e = t.connect_error_for_test("server said hunter2secret");
        let text = e.to_string();
        assert!(!text.contains("hunter2secret"), "{text}");
        assert!(
            text.contains("db:5432/llm") && text.contains("user bob"),
            "{text}"
        );

        for bad in [
            "postgres://bob:hunter2secret@db:notaport/llm",
            "host=db password=hunter2secret 'unterminated",
            "host=db password=hunter2secret bogus=1",
        ] {
            let err = resolve_with(Some(bad), None, &env_of(&[]), &|_| false)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("hunter2secret"), "{err}");
            assert!(err.contains("--database-url"), "{err}");
        }
        let err = resolve_with(
            None,
            None,
            &env_of(&[("DATABASE_URL", "host=x bogus=1")]),
            &|_| false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("DATABASE_URL") && err.contains("unknown option `bogus`"),
            "{err}"
        );
    }

    impl ConnectTarget {
        fn connect_error_for_test(&self, cause: &str) -> SourceError {
            self.connect_failed(cause.to_string())
        }
    }
}
