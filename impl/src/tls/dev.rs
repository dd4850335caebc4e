//! Throwaway certificates for a local cluster (`shoal dev --tls`) and for tests: a CA and one
//! certificate per node, made with rcgen.
//!
//! The CA's key stays in the directory beside its certificate, so a later start signs the
//! certificates of new nodes with the same CA and clients keep trusting it. A node's
//! certificate serves both ends of a peer connection (server and client authentication) and
//! the HTTPS API. None of this is for production: the CA key sits unprotected beside the data.

use super::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The files [`dev_certificates`] made or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCertificates {
    /// The CA certificate (PEM): what peers and clients trust.
    pub ca: PathBuf,
    /// Per node, in the order asked for: `(id, certificate, key)`.
    pub nodes: Vec<(u64, PathBuf, PathBuf)>,
}

/// The CA's parameters: the same every time, so the CA key alone rebuilds its issuer.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Makes (or reuses) in `dir` a CA named `ca_name` (`ca.pem`, `ca.key`) and, for each id of
/// `nodes`, a certificate signed by it (`nID.pem`, `nID.key`) valid for every name of `names`
/// (DNS names or IP addresses, e.g. `localhost` and `127.0.0.1`). Existing files are kept;
/// keys are written readable by their owner only.
pub fn dev_certificates(
    dir: &Path,
    ca_name: &str,
    nodes: &[u64],
    names: &[String],
) -> Result<DevCertificates, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join("ca.pem");
    let ca_key_file = dir.join("ca.key");
    let params = ca_params(ca_name);
    let ca_key = if ca_cert.exists() && ca_key_file.exists() {
        let pem = super::read_file("CA key", &ca_key_file)?;
        KeyPair::from_pem(&String::from_utf8_lossy(&pem))?
    } else {
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write(&ca_key_file, &key.serialize_pem(), true)?;
        write(&ca_cert, &cert.pem(), false)?;
        key
    };
    let issuer = Issuer::new(params, ca_key);
    let mut out = Vec::new();
    for &id in nodes {
        let cert_file = dir.join(format!("n{id}.pem"));
        let key_file = dir.join(format!("n{id}.key"));
        if !(cert_file.exists() && key_file.exists()) {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names.to_vec())?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("shoal node {id}"));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer)?;
            write(&key_file, &key.serialize_pem(), true)?;
            write(&cert_file, &cert.pem(), false)?;
        }
        out.push((id, cert_file, key_file));
    }
    Ok(DevCertificates {
        ca: ca_cert,
        nodes: out,
    })
}

/// Writes `text` to `path`, readable by its owner only if `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)
}
