//! Certificates for tests and benches, made with rcgen: a CA, and leaves
//! signed by it naming a node (`gridkv:node:ID`), an operator, or nothing,
//! with the key algorithm and validity a test asks for.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SignatureAlgorithm,
};

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate with its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

/// A calendar day: `(year, month, day)`.
pub type Day = (i32, u8, u8);

/// What a leaf should be.
pub struct Spec<'a> {
    /// URI SANs (`gridkv:node:ID`, ...).
    pub uris: Vec<String>,
    pub algorithm: &'static SignatureAlgorithm,
    /// `(not_before, not_after)` as `(year, month, day)`; `None` for rcgen's
    /// default (1975 to 4096).
    pub validity: Option<(Day, Day)>,
    pub common_name: &'a str,
}

impl<'a> Spec<'a> {
    /// An Ed25519 node certificate naming `id`.
    pub fn node(id: &'a str) -> Spec<'a> {
        Spec {
            uris: vec![format!("gridkv:node:{id}")],
            algorithm: &rcgen::PKCS_ED25519,
            validity: None,
            common_name: id,
        }
    }
}

impl Ca {
    /// A self-signed Ed25519 CA.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// An Ed25519 node certificate naming `id`.
    pub fn node(&self, id: &str) -> Leaf {
        self.leaf(Spec::node(id))
    }

    /// A leaf as `spec` says.
    pub fn leaf(&self, spec: Spec<'_>) -> Leaf {
        let key = KeyPair::generate_for(spec.algorithm).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        for uri in spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(((y0, m0, d0), (y1, m1, d1))) = spec.validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gridkv-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` in the directory; returns the path.
    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
