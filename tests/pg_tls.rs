//! TLS to PostgreSQL, against a server this test starts with certificates it makes:
//! each sslmode does what libpq's does, and a wrong root or host name is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use burnrate::source::ConnectTarget;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A throwaway PostgreSQL cluster with ssl=on, stopped and removed on drop.
struct TlsServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (scripts/test installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// PostgreSQL refuses to run as root: run its tools as the postgres user then.
fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    let is_root = unsafe { libc::geteuid() } == 0;
    let status = if is_root {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join(tool))
            .args(args)
            .status()
    } else {
        Command::new(bin.join(tool)).args(args).status()
    }
    .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(status.success(), "{tool} {args:?} failed");
}

fn chown_postgres(path: &Path) {
    if unsafe { libc::geteuid() } == 0 {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }
}

impl TlsServer {
    fn start(cert_pem: &str, key_pem: &str) -> TlsServer {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("burnrate-tls-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let data = dir.path().join("data");
        chown_postgres(dir.path());
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\n\
             ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            dir.path().display()
        );
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
        chown_postgres(dir.path());
        let log = dir.path().join("server.log");
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        TlsServer { dir, bin, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

struct Pki {
    ca_pem: String,
    other_ca_pem: String,
    server_cert: String,
    server_key: String,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert.pem())
}

/// A CA, a server certificate it signs for the name "localhost" only (not for
/// 127.0.0.1), and an unrelated CA.
fn pki() -> Pki {
    let (ca_params, ca_key, ca_pem) = ca("burnrate test CA");
    let (_, _, other_ca_pem) = ca("someone else's CA");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let issuer = Issuer::new(ca_params, ca_key);
    let server = params.signed_by(&server_key, &issuer).unwrap();
    Pki {
        ca_pem,
        other_ca_pem,
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
    }
}

async fn uses_tls(url: &str) -> Result<bool, String> {
    let target = ConnectTarget::from_url(url).map_err(|e| e.to_string())?;
    let client = target.connect().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn every_sslmode_behaves_as_libpq() {
    let pki = pki();
    let server = TlsServer::start(&pki.server_cert, &pki.server_key);
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    let other = files.path().join("other-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&other, &pki.other_ca_pem).unwrap();
    let (ca, other) = (ca.to_str().unwrap(), other.to_str().unwrap());
    let port = server.port;
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");

    assert_eq!(
        uses_tls(&url("127.0.0.1", "sslmode=disable")).await,
        Ok(false)
    );
    assert_eq!(
        uses_tls(&url("127.0.0.1", "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        uses_tls(&url("127.0.0.1", "")).await,
        Ok(true),
        "prefer is the default"
    );
    assert_eq!(
        uses_tls(&url("127.0.0.1", "sslmode=require")).await,
        Ok(true),
        "require does not verify"
    );

    // verify-ca: the chain must lead to our CA; the name does not matter.
    assert_eq!(
        uses_tls(&url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        ))
        .await,
        Ok(true)
    );
    let err = uses_tls(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ))
    .await
    .unwrap_err();
    assert!(
        err.contains("127.0.0.1:") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    // verify-full: the name must match too ("localhost" yes, "127.0.0.1" no).
    assert_eq!(
        uses_tls(&url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}")
        ))
        .await,
        Ok(true)
    );
    let err = uses_tls(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    // Also as key=value, the other connection-string form libpq takes.
    let kv = format!(
        "host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{ca}'"
    );
    assert_eq!(uses_tls(&kv).await, Ok(true));
}
