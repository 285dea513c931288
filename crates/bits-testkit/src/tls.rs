//! TLS settings for the server and the client: rustls with the *ring* provider (the
//! provider the proxy uses), certificates and keys from PEM files.

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol offered and accepted: BITS is HTTP/1.1 only.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(path: &Path, what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {what}: {e}", path.display()),
    )
}

/// Every certificate in a PEM file, in order; an error when there is none.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(path, "cannot read certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, "bad certificate", e))?;
    if certs.is_empty() {
        return Err(invalid(
            path,
            "no certificate",
            "the file has no CERTIFICATE block",
        ));
    }
    Ok(certs)
}

/// The server side: `cert` is the chain (leaf first), `key` its private key (PKCS#8,
/// PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    server_config_with_client_ca(cert, key, None)
}

/// [`server_config`], and with `client_ca` a client certificate signed by a CA in that
/// PEM file is required (a handshake without one fails).
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> io::Result<Arc<ServerConfig>> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, "bad private key", e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(path, "unusable CA certificate", e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| invalid(path, "no client verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(cert, "certificate and key do not fit", e))?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The client side: trusts the certificates in `ca_file`, or the system's roots
/// without one. Server certificates are always verified.
pub fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(path, "unusable CA certificate", e))?;
            }
        }
        None => {
            // Unreadable system certificates are skipped: the ones that load still count.
            let system = rustls_native_certs::load_native_certs()?;
            roots.add_parsable_certificates(system);
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}
