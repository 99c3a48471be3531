//! A throwaway certificate authority for a local nats-server with TLS on (the TLS tests,
//! `offpath bench isolation`'s secured stack): a CA, a server certificate for
//! `127.0.0.1`/`localhost` and a client certificate, as PEM files in a temporary directory
//! (removed on drop), and the nats-server `tls { }` block that uses them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating a key or a certificate failed.
    #[error("generating a test certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the files failed.
    #[error("writing a test certificate: {0}")]
    Io(#[from] std::io::Error),
}

/// The files of a throwaway CA.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes a CA and a server and a client certificate signed by it.
    pub fn new() -> Result<Self, PkiError> {
        let dir = tempfile::Builder::new().prefix("offpath-pki-").tempdir()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let pki = Self { dir };
        std::fs::write(pki.ca(), ca.pem())?;
        for (name, names) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["offpath-client".to_string()]),
        ] {
            let key = KeyPair::generate()?;
            let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
            std::fs::write(pki.path(&format!("{name}.pem")), cert.pem())?;
            crate::private_file::write_private(
                &pki.path(&format!("{name}-key.pem")),
                &key.serialize_pem(),
            )?;
        }
        Ok(pki)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (what a client passes as `--nats-tls-ca`).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The client certificate and its key (for mutual TLS).
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client-key.pem"))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nats-server's `tls { }` block: the server certificate; with `verify`, client
    /// certificates signed by the CA are required too.
    pub fn server_block(&self, verify: bool) -> String {
        let file = |name: &str| format!("{:?}", self.path(name).display().to_string());
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n  \
             timeout: 2\n}}\n",
            file("server.pem"),
            file("server-key.pem"),
            file("ca.pem"),
        )
    }
}
