//! Validation of HTTPS to the backends: `[upstream] ca_file`, `client_cert`,
//! `client_key` (read here, so a reload with a bad file is refused like any other
//! config error) and `[[backends]] tls`, `tls_server_name`.

use super::model::BackendTls;
use super::raw::{RawBackend, RawUpstream};
use super::validate::Validator;
use crate::backend::tls::UpstreamTls;
use std::path::Path;

impl Validator {
    pub(super) fn upstream_tls(&mut self, raw: &RawUpstream) -> UpstreamTls {
        let client = match (&raw.client_cert, &raw.client_key) {
            (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let missing = if raw.client_key.is_none() {
                    "upstream.client_key"
                } else {
                    "upstream.client_cert"
                };
                self.push(
                    missing,
                    "is missing: client_cert and client_key go together",
                    "set both (PEM certificate chain and its private key), or neither",
                );
                None
            }
        };
        match UpstreamTls::load(raw.ca_file.as_deref().map(Path::new), client) {
            Ok(tls) => tls,
            Err(errors) => {
                for (field, message) in errors {
                    let fix = match field {
                        "ca_file" => "point it at a PEM file of the CA certificates that sign the backends' certificates",
                        "client_cert" => "point it at a PEM file with the client certificate first, then its intermediates",
                        _ => "point it at the PEM private key (PKCS#8, PKCS#1 or SEC1) of client_cert",
                    };
                    self.push(format!("upstream.{field}"), message, fix);
                }
                UpstreamTls::default()
            }
        }
    }

    /// `tls` and `tls_server_name` of `backends[i]`; `address` is the text as written.
    pub(super) fn backend_tls(&mut self, i: usize, raw: &RawBackend) -> Option<BackendTls> {
        let key = |field: &str| format!("backends[{i}].{field}");
        if !raw.tls.unwrap_or(false) {
            if raw.tls_server_name.is_some() {
                self.push(
                    key("tls_server_name"),
                    "has no effect without tls = true",
                    "set tls = true for HTTPS to this backend, or remove tls_server_name",
                );
            }
            return None;
        }
        let name = match (&raw.tls_server_name, &raw.address) {
            (Some(name), _) => name.clone(),
            (None, Some(address)) => crate::reach::host_of(address).to_owned(),
            // The missing address is reported already.
            (None, None) => return None,
        };
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            let (field, fix) = if raw.tls_server_name.is_some() {
                (
                    "tls_server_name",
                    "write the DNS name or IP address the backend's certificate carries",
                )
            } else {
                (
                    "address",
                    "set tls_server_name to the name the backend's certificate carries",
                )
            };
            self.push(
                key(field),
                format!("{name:?} is not a DNS name or IP address to verify a certificate against"),
                fix,
            );
            return None;
        }
        Some(BackendTls { server_name: name })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use rcgen::{CertificateParams, KeyPair};
    use std::path::Path;

    /// A self-signed certificate and its key, and a second, unrelated key.
    fn files(dir: &Path) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.join("other-key.pem"), other.serialize_pem()).unwrap();
        std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    }

    fn config(
        dir: &Path,
        upstream: &str,
        backend: &str,
    ) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            "[upstream]\n{upstream}\n[[backends]]\nid = \"b\"\naddress = \"127.0.0.1:8443\"\n{backend}\n"
        )
        .replace("DIR", dir.to_str().unwrap());
        load_str(&text).map_err(|e| e.0.into_iter().map(|e| e.key).collect())
    }

    #[test]
    fn certificate_files_are_loaded_and_a_backend_defaults_to_its_address_as_name() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        let upstream = "ca_file = \"DIR/cert.pem\"\nclient_cert = \"DIR/cert.pem\"\nclient_key = \"DIR/key.pem\"";
        let config = config(dir.path(), upstream, "tls = true").unwrap();
        assert_eq!(config.upstream.tls.ca.as_ref().map(|ca| ca.len()), Some(1));
        assert!(config.upstream.tls.client.is_some());
        let tls = config.backends[0].tls.as_ref().expect("tls");
        assert_eq!(tls.server_name, "127.0.0.1");
    }

    #[test]
    fn every_bad_file_and_setting_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        files(dir.path());
        let cases = [
            ("ca_file = \"DIR/missing.pem\"", "", "upstream.ca_file"),
            ("ca_file = \"DIR/garbage.pem\"", "", "upstream.ca_file"),
            ("client_cert = \"DIR/cert.pem\"", "", "upstream.client_key"),
            ("client_key = \"DIR/key.pem\"", "", "upstream.client_cert"),
            (
                "client_cert = \"DIR/cert.pem\"\nclient_key = \"DIR/other-key.pem\"",
                "",
                "upstream.client_key",
            ),
            (
                "client_cert = \"DIR/garbage.pem\"\nclient_key = \"DIR/key.pem\"",
                "",
                "upstream.client_cert",
            ),
            (
                "",
                "tls_server_name = \"iis1.corp.example\"",
                "backends[0].tls_server_name",
            ),
            (
                "",
                "tls = true\ntls_server_name = \"not a name\"",
                "backends[0].tls_server_name",
            ),
        ];
        for (upstream, backend, key) in cases {
            let errors = config(dir.path(), upstream, backend).expect_err(key);
            assert_eq!(errors, vec![key.to_owned()], "{upstream} {backend}");
        }
    }

    #[test]
    fn the_default_server_name_is_the_host_part_of_the_address() {
        use crate::reach::host_of;
        assert_eq!(host_of("iis1.corp.example:443"), "iis1.corp.example");
        assert_eq!(host_of("10.0.0.11:443"), "10.0.0.11");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("iis1"), "iis1");
    }
}
