//! `bitsgate demo --backend-tls`: a CA and a leaf certificate for 127.0.0.1, made at
//! start, so the reference servers can serve HTTPS and the proxy can verify them
//! against that CA exactly as it verifies a farm's internal CA.

use anyhow::Context;
use bits_testkit::server::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// PEM files written under one directory.
pub struct DemoPki {
    /// The CA the proxy trusts (`[upstream] ca_file`).
    pub ca: PathBuf,
    /// The backends' certificate and key, signed by `ca`, for 127.0.0.1.
    pub server: TlsFiles,
}

impl DemoPki {
    /// Makes the CA and leaf and writes them to `dir` (created if needed).
    pub fn create(dir: &Path) -> anyhow::Result<DemoPki> {
        std::fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "bitsgate demo CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)
            .context("making the demo CA")?;
        // An IP address SAN: the proxy checks the backend's address, 127.0.0.1, as
        // its server name when `tls_server_name` is not set.
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        let key = KeyPair::generate()?;
        let leaf = params
            .signed_by(&key, &ca)
            .context("making the demo backend certificate")?;
        let pki = DemoPki {
            ca: dir.join("ca.pem"),
            server: TlsFiles {
                cert: dir.join("backend.pem"),
                key: dir.join("backend-key.pem"),
            },
        };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.server.cert, leaf.pem())?;
        std::fs::write(&pki.server.key, key.serialize_pem())?;
        Ok(pki)
    }
}
