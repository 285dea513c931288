//! HTTPS to the backends: the certificate material of `[upstream]`, read once per
//! config (at start and on every reload, so a bad file is a config error naming its
//! key), and the name a failed handshake gets in metrics and logs.
//!
//! The material goes on every peer ([`super::peer`]) as Pingora's per-peer CA list
//! and client certificate, so proxied requests, probes and bitsgate's own
//! Cancel-Session verify the same way without a connector of their own. Without
//! `ca_file`, Pingora's connectors trust the system's roots (rustls-native-certs,
//! which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`).

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use pingora::{Error, ErrorType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The `[upstream]` certificate files, loaded.
#[derive(Clone, Default)]
pub struct UpstreamTls {
    /// Roots from `ca_file`; `None` trusts the system's roots.
    pub ca: Option<Arc<CaType>>,
    /// `client_cert` + `client_key`, for farms that require a client certificate.
    pub client: Option<Arc<CertKey>>,
    /// The files as read, for comparing two configs.
    files: Vec<Vec<u8>>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
            && self.ca.is_some() == other.ca.is_some()
            && self.client.is_some() == other.client.is_some()
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca_certificates", &self.ca.as_ref().map(|ca| ca.len()))
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl UpstreamTls {
    /// Reads `ca_file` (PEM roots) and the client certificate pair. Each error names
    /// the file it is about; the caller attaches the key.
    pub fn load(
        ca_file: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let mut files = Vec::new();
        let ca = match ca_file.map(|path| load_roots(path, &mut files)) {
            None => None,
            Some(Ok(ca)) => Some(ca),
            Some(Err(e)) => {
                errors.push(("ca_file", e));
                None
            }
        };
        let client = match client.map(|(cert, key)| load_client(cert, key, &mut files)) {
            None => None,
            Some(Ok(pair)) => Some(pair),
            Some(Err(e)) => {
                errors.extend(e);
                None
            }
        };
        if errors.is_empty() {
            Ok(UpstreamTls { ca, client, files })
        } else {
            Err(errors)
        }
    }
}

fn read(path: &Path, files: &mut Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    files.push(bytes.clone());
    Ok(bytes)
}

/// Every CERTIFICATE block of a PEM file, each checked the way both the connector's
/// parser and rustls's root store will read it.
fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<WrappedX509>, String> {
    let ders = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    if ders.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    let mut out = Vec::with_capacity(ders.len());
    for (i, der) in ders.into_iter().enumerate() {
        // The connector's parser panics on what it cannot parse: check first.
        if let Err(e) = x509_parser::parse_x509_certificate(der.as_ref()) {
            return Err(format!(
                "certificate {} in {} cannot be parsed: {e}",
                i + 1,
                path.display()
            ));
        }
        out.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    Ok(out)
}

fn load_roots(path: &Path, files: &mut Vec<Vec<u8>>) -> Result<Arc<CaType>, String> {
    let bytes = read(path, files)?;
    let certs = certificates(path, &bytes)?;
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(CertificateDer::from(cert)).map_err(|e| {
            format!(
                "certificate {} in {} is not a usable CA: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

fn load_client(
    cert: &Path,
    key: &Path,
    files: &mut Vec<Vec<u8>>,
) -> Result<Arc<CertKey>, Vec<(&'static str, String)>> {
    let chain = read(cert, files).and_then(|bytes| certificates(cert, &bytes));
    let private = read(key, files).and_then(|bytes| {
        PrivateKeyDer::from_pem_slice(&bytes)
            .map_err(|e| format!("{} holds no usable private key: {e}", key.display()))
    });
    let (chain, private) = match (chain, private) {
        (Ok(chain), Ok(private)) => (chain, private),
        (chain, private) => {
            let mut errors = Vec::new();
            if let Err(e) = chain {
                errors.push(("client_cert", e));
            }
            if let Err(e) = private {
                errors.push(("client_key", e));
            }
            return Err(errors);
        }
    };
    let ders: Vec<CertificateDer<'static>> = chain.iter().map(CertificateDer::from).collect();
    // The connector turns the raw key bytes back into a key and panics if it cannot,
    // and rustls refuses a key that does not belong to the certificate: both checked
    // here, once.
    let raw_key = private.secret_der().to_vec();
    let fits = PrivateKeyDer::try_from(raw_key.clone())
        .map_err(|e| e.to_string())
        .and_then(|k| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_client_auth_cert(ders, k)
            .map(|_| ())
            .map_err(|e| e.to_string())
        });
    if let Err(e) = fits {
        return Err(vec![(
            "client_key",
            format!("{} does not fit {}: {e}", key.display(), cert.display()),
        )]);
    }
    let raw_chain = chain.iter().map(|c| c.borrow_raw_cert().clone()).collect();
    Ok(Arc::new(CertKey::new(raw_chain, raw_key)))
}

/// Why a TLS connection to a backend failed, as a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The certificate chains to no trusted root (`ca_file` or the system's).
    UnknownIssuer,
    /// The certificate does not name `tls_server_name`.
    WrongName,
    /// Expired or not valid yet.
    Expired,
    /// Any other certificate problem.
    BadCertificate,
    /// The handshake failed otherwise (not TLS, no shared cipher, client certificate
    /// refused).
    Handshake,
}

impl TlsFailure {
    /// Every value, for series created at zero.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::UnknownIssuer,
        TlsFailure::WrongName,
        TlsFailure::Expired,
        TlsFailure::BadCertificate,
        TlsFailure::Handshake,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::UnknownIssuer => "unknown_issuer",
            TlsFailure::WrongName => "wrong_name",
            TlsFailure::Expired => "expired",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::Handshake => "handshake",
        }
    }

    /// The TLS failure behind a connect error, if it is one. Pingora keeps only
    /// rustls's message, so the certificate error is read from its text.
    pub fn of(error: &Error) -> Option<TlsFailure> {
        if Self::refused_after_handshake(error) {
            return Some(TlsFailure::Handshake);
        }
        if !matches!(
            error.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert
        ) {
            return None;
        }
        let text = error.to_string();
        Some(Self::from_message(&text))
    }

    /// Whether an error after connecting is the backend refusing the TLS session: a
    /// fatal alert at the first read, as a TLS 1.3 server sends when it refuses the
    /// client certificate after the client's side of the handshake is done.
    pub fn refused_after_handshake(error: &Error) -> bool {
        matches!(
            error.etype(),
            ErrorType::ReadError | ErrorType::ConnectionClosed | ErrorType::TLSHandshakeFailure
        ) && error.to_string().contains("received fatal alert")
    }

    /// The failure a handshake error message describes.
    pub fn from_message(text: &str) -> TlsFailure {
        if text.contains("UnknownIssuer") {
            TlsFailure::UnknownIssuer
        } else if text.contains("not valid for name") || text.contains("NotValidForName") {
            TlsFailure::WrongName
        } else if text.contains("expired")
            || text.contains("Expired")
            || text.contains("not valid yet")
            || text.contains("NotValidYet")
        {
            TlsFailure::Expired
        } else if text.contains("invalid peer certificate") {
            TlsFailure::BadCertificate
        } else {
            TlsFailure::Handshake
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_messages_map_to_bounded_reasons() {
        let cases = [
            ("TLS connect() failed: invalid peer certificate: UnknownIssuer, SNI: a", TlsFailure::UnknownIssuer),
            ("invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for y", TlsFailure::WrongName),
            ("invalid peer certificate: certificate expired: verification time 5", TlsFailure::Expired),
            ("invalid peer certificate: BadSignature", TlsFailure::BadCertificate),
            ("received corrupt message of type InvalidContentType", TlsFailure::Handshake),
        ];
        for (text, reason) in cases {
            assert_eq!(TlsFailure::from_message(text), reason, "{text}");
        }
    }

    #[test]
    fn a_connect_refusal_is_no_tls_failure() {
        let error = Error::explain(ErrorType::ConnectRefused, "refused");
        assert_eq!(TlsFailure::of(&error), None);
        let error = Error::explain(
            ErrorType::TLSHandshakeFailure,
            "invalid peer certificate: UnknownIssuer",
        );
        assert_eq!(TlsFailure::of(&error), Some(TlsFailure::UnknownIssuer));
    }
}
