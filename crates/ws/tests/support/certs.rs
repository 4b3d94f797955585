//! Test certificates: a throw-away CA and a leaf for localhost, 127.0.0.1 and ::1, made fresh
//! at run time (nothing to expire in the repository).

#![allow(dead_code)]

/// PEM strings of a test CA and a server certificate signed by it.
pub(crate) struct TestPki {
    /// The CA certificate (give it to clients as their root).
    pub(crate) ca_pem: String,
    /// The server certificate chain (leaf).
    pub(crate) cert_pem: String,
    /// The server private key (PKCS#8).
    pub(crate) key_pem: String,
}

/// Makes a CA and a leaf for `names` (DNS names or IP addresses).
pub(crate) fn make_pki(names: &[&str]) -> Result<TestPki, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Switchboard test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    Ok(TestPki { ca_pem: ca_cert.pem(), cert_pem: leaf_cert.pem(), key_pem: leaf_key.serialize_pem() })
}
