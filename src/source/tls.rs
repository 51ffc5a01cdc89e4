//! TLS to PostgreSQL as libpq understands `sslmode` and `sslrootcert` (in the URL, in
//! key=value strings, and as PGSSLMODE / PGSSLROOTCERT), with rustls.
//!
//! | sslmode | encrypts | verifies the chain | verifies the host name |
//! |---|---|---|---|
//! | disable | no | - | - |
//! | prefer (default) | if the server offers it | only with a root certificate | no |
//! | require | yes | only with a root certificate (as libpq) | no |
//! | verify-ca | yes | yes | no |
//! | verify-full | yes | yes | yes |
//!
//! The root certificate comes from `sslrootcert`, else `~/.postgresql/root.crt`
//! when that file exists (libpq's default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s.trim() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
    /// What the driver is told: it only knows whether to try and whether to insist.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            // "allow" tries plain text first in libpq; the driver cannot, so it
            // prefers TLS, which is never less safe.
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

/// The TLS part of a connection target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "sslmode={mode} needs a root certificate: set sslrootcert=/path/to/root.crt (or PGSSLROOTCERT), or create ~/.postgresql/root.crt"
    )]
    NoRootCert { mode: &'static str },
    #[error("cannot read the root certificate {path}: {detail}")]
    BadRootCert { path: PathBuf, detail: String },
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// The connection string without sslmode/sslrootcert (the driver knows neither
/// verify-* nor sslrootcert), and the values found. Works on URLs and on key=value.
pub fn split_tls_params(conn: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let trimmed = conn.trim();
    // Leave anything without TLS keys exactly as written, for the driver to judge.
    if !trimmed.contains("sslmode") && !trimmed.contains("sslrootcert") {
        return (trimmed.to_string(), None, None);
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return (trimmed.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)),
                "sslrootcert" => root = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rebuilt, mode, root);
    }
    // key=value pairs; values may be single-quoted with backslash escapes.
    let mut kept = String::new();
    let mut rest = trimmed;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else {
            if !kept.is_empty() {
                kept.push(' ');
            }
            kept.push_str(rest);
            break;
        };
        let key = rest[..eq].trim().to_string();
        let mut after = rest[eq + 1..].trim_start();
        let (value, raw_len) = if let Some(stripped) = after.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = stripped.char_indices();
            let mut end = stripped.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            (v, end + 1)
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), end)
        };
        let raw = &after[..raw_len.min(after.len())];
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => {
                if !kept.is_empty() {
                    kept.push(' ');
                }
                kept.push_str(&format!("{key}={raw}"));
            }
        }
        after = &after[raw_len.min(after.len())..];
        rest = after;
    }
    (kept, mode, root)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let bad = |detail: String| TlsSetupError::BadRootCert {
        path: path.to_path_buf(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}

/// libpq's default root certificate, if present.
fn default_root_cert() -> Option<PathBuf> {
    let p = dirs::home_dir()?.join(".postgresql").join("root.crt");
    p.is_file().then_some(p)
}

/// The rustls client config for these settings (None for sslmode=disable).
pub fn client_config(tls: &TlsSettings) -> Result<Option<rustls::ClientConfig>, TlsSetupError> {
    if tls.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = provider();
    let root = tls.root_cert.clone().or_else(default_root_cert);
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, root) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(TlsSetupError::NoRootCert {
                mode: tls.mode.name(),
            });
        }
        (_, None) => Arc::new(EncryptOnly {
            provider: provider.clone(),
        }),
        (mode, Some(path)) => {
            let roots = load_roots(&path)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly { inner: webpki })
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(config))
}

/// sslmode=prefer/require without a root certificate: encrypted, unauthenticated,
/// exactly as libpq. Handshake signatures are still checked.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// sslmode=verify-ca: the chain must lead to the root; the name may differ.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tls_params_from_urls() {
        let (rest, mode, root) = split_tls_params(
            "postgres://u:pw@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:pw@h:5432/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, _) = split_tls_params("postgresql://h/db");
        assert_eq!((rest.as_str(), mode), ("postgresql://h/db", None));
    }

    #[test]
    fn strips_tls_params_from_key_value_strings() {
        let (rest, mode, root) = split_tls_params(
            "host=h sslmode=verify-ca password='a b\\'c' sslrootcert='/x y/ca.pem' dbname=d",
        );
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/x y/ca.pem"));
        assert_eq!(rest, "host=h password='a b\\'c' dbname=d");
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a b'c"[..]));
    }

    #[test]
    fn modes_parse_and_verify_modes_need_a_root() {
        for m in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(SslMode::parse(m).map(SslMode::name), Some(m));
        }
        assert_eq!(SslMode::parse("sometimes"), None);
        let err = client_config(&TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: None,
        });
        if default_root_cert().is_none() {
            assert!(matches!(err, Err(TlsSetupError::NoRootCert { .. })));
        }
        assert!(
            client_config(&TlsSettings {
                mode: SslMode::Disable,
                root_cert: None
            })
            .unwrap()
            .is_none()
        );
        assert!(
            client_config(&TlsSettings {
                mode: SslMode::Require,
                root_cert: None
            })
            .unwrap()
            .is_some()
        );
        let missing = client_config(&TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some("/nonexistent/ca.pem".into()),
        });
        assert!(matches!(missing, Err(TlsSetupError::BadRootCert { .. })));
    }
}
