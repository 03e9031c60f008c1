//! `gridkv cert`: the certificates a secured cluster needs, made with
//! rcgen.
//!
//! - `gridkv cert ca --out DIR` writes `DIR/ca.pem` and `DIR/ca.key`: the
//!   cluster's certificate authority (ECDSA P-256, so browsers accept what
//!   it signs).
//! - `gridkv cert node --ca-dir DIR --id ID [--host H]... --out DIR2`
//!   writes `DIR2/node.pem` and `DIR2/node.key`: a node certificate naming
//!   its id in the URI SAN `gridkv:node:ID`, for both ends of a
//!   connection (server and client auth). Its key is Ed25519 (membership
//!   signs with it); `--key-type p256` makes one browsers accept, for
//!   `--http-tls` only.
//! - `gridkv cert cluster --out DIR --id A,B,C` makes what is missing of
//!   `DIR/ca/` and `DIR/ID/` for each id (compose files run it at every
//!   start).
//! - `gridkv cert operator --ca-dir DIR --name NAME --out DIR2` writes
//!   `DIR2/operator.pem` and `DIR2/operator.key`: the certificate that
//!   signs `gridkv remove` (URI SAN `gridkv:operator:NAME`).
//!
//! `--out` directories are created with their parents; keys are written
//! with mode 0600 and an existing key is never overwritten unless
//! `--force` is given (a lost CA key means reissuing every certificate).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};

pub use gridkv::net::tls::{NODE_URI_PREFIX, OPERATOR_URI_PREFIX};

/// How long a CA is valid by default: ten years.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// How long a node or operator certificate is valid by default: one year.
pub const DEFAULT_LEAF_DAYS: u32 = 365;

/// `gridkv cert` arguments.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// What to make.
    #[command(subcommand)]
    pub what: CertCommand,
}

/// What `gridkv cert` makes.
#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// A cluster certificate authority: DIR/ca.pem and DIR/ca.key.
    Ca {
        /// Directory to write into (created with its parents).
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "gridkv cluster CA")]
        name: String,
        /// Days the CA is valid.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
        /// Overwrite an existing key.
        #[arg(long)]
        force: bool,
    },
    /// A node certificate: DIR2/node.pem and DIR2/node.key.
    Node {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node id the certificate names.
        #[arg(long)]
        id: String,
        /// A host name or IP address to put in the certificate (for
        /// clients that check names: redis-cli, browsers); repeatable.
        /// Default: localhost and 127.0.0.1.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Directory to write into (created with its parents).
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// The key: ed25519 (cluster traffic and signed membership need
        /// it) or p256 (for `--http-tls` in browsers, which reject
        /// Ed25519).
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
        /// Overwrite an existing key.
        #[arg(long)]
        force: bool,
    },
    /// A whole cluster's certificates in one directory, for compose files
    /// and scripts: DIR/ca/ca.{pem,key} and DIR/ID/node.{pem,key} for each
    /// id, each made only if missing (so it can run at every start).
    Cluster {
        /// Directory to write into (created with its parents).
        #[arg(long)]
        out: PathBuf,
        /// Node ids (comma-separated or repeated). Each certificate names
        /// the id as a host too (the service name in compose), plus
        /// localhost and 127.0.0.1.
        #[arg(long = "id", value_delimiter = ',', required = true)]
        ids: Vec<String>,
        /// Extra host names or IPs for every node certificate.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Days each node certificate is valid.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// An operator certificate (signs `gridkv remove`): DIR2/operator.pem
    /// and DIR2/operator.key.
    Operator {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The operator's name.
        #[arg(long)]
        name: String,
        /// Directory to write into (created with its parents).
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Overwrite an existing key.
        #[arg(long)]
        force: bool,
    },
}

/// The key algorithm of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// Ed25519: what cluster certificates must use.
    Ed25519,
    /// ECDSA P-256: what browsers accept.
    P256,
}

impl KeyType {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or a key.
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file exists and `--force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// An argument that cannot go into a certificate.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A node: its id and the host names/IPs to include.
    Node {
        /// The node id (`gridkv:node:ID`).
        id: String,
        /// DNS names or IP addresses.
        hosts: Vec<String>,
    },
    /// An operator (`gridkv:operator:NAME`).
    Operator {
        /// The operator's name.
        name: String,
    },
}

fn rcgen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Rcgen { what, source }
}

fn validity(params: &mut CertificateParams, from: SystemTime, days: u32) {
    params.not_before = from.into();
    params.not_after = (from + Duration::from_secs(u64::from(days) * 86_400)).into();
}

/// Makes a CA valid from `from` (an hour before now is what the CLI uses,
/// so nodes with slightly slow clocks accept it) for `days`.
///
/// # Examples
///
/// ```
/// use gridkv_server::cert::make_ca;
/// use std::time::SystemTime;
///
/// let ca = make_ca("test CA", SystemTime::now(), 1)?;
/// assert!(ca.cert.starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(ca.key.contains("PRIVATE KEY"));
/// # Ok::<(), gridkv_server::cert::CertError>(())
/// ```
pub fn make_ca(name: &str, from: SystemTime, days: u32) -> Result<Pem, CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(rcgen_err("generating the CA key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "gridkv");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, from, days);
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("signing the CA"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Makes a leaf certificate for `subject`, signed by the CA `ca`, valid from
/// `from` for `days`, with a key of `key_type`.
///
/// # Examples
///
/// ```
/// use gridkv_server::cert::{make_ca, make_leaf, KeyType, Subject};
/// use std::time::SystemTime;
///
/// let now = SystemTime::now();
/// let ca = make_ca("test CA", now, 1)?;
/// let node = Subject::Node { id: "a".into(), hosts: vec!["localhost".into()] };
/// let leaf = make_leaf(&ca, &node, now, 1, KeyType::Ed25519)?;
/// assert!(leaf.cert.starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok::<(), gridkv_server::cert::CertError>(())
/// ```
pub fn make_leaf(
    ca: &Pem,
    subject: &Subject,
    from: SystemTime,
    days: u32,
    key_type: KeyType,
) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(rcgen_err("reading the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)
        .map_err(rcgen_err("reading the CA certificate"))?;
    let key =
        KeyPair::generate_for(key_type.algorithm()).map_err(rcgen_err("generating the key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let (common_name, uri, hosts) = match subject {
        Subject::Node { id, hosts } => {
            check_name("node id", id)?;
            (id.clone(), format!("{NODE_URI_PREFIX}{id}"), hosts.clone())
        }
        Subject::Operator { name } => {
            check_name("operator name", name)?;
            (
                name.clone(),
                format!("{OPERATOR_URI_PREFIX}{name}"),
                Vec::new(),
            )
        }
    };
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "gridkv");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let uri = uri
        .clone()
        .try_into()
        .map_err(|_| CertError::Invalid(format!("`{uri}` is not an ASCII URI")))?;
    params.subject_alt_names.push(SanType::URI(uri));
    for host in &hosts {
        params.subject_alt_names.push(host_san(host)?);
    }
    validity(&mut params, from, days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_err("signing the certificate"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The ids and names a certificate may carry: what a node id may be
/// (letters, digits, `.`, `_`, `-`), so the URI parses back to the same id.
fn check_name(what: &str, name: &str) -> Result<(), CertError> {
    gridkv::NodeId::new(name)
        .map(|_| ())
        .map_err(|e| CertError::Invalid(format!("{what} `{name}`: {e}")))
}

fn host_san(host: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host
        .to_owned()
        .try_into()
        .map_err(|_| CertError::Invalid(format!("host `{host}` is not an ASCII DNS name")))?;
    Ok(SanType::DnsName(name))
}

/// Runs `gridkv cert`, printing what it wrote.
///
/// # Errors
///
/// A message naming the file or argument at fault.
pub fn run(args: CertArgs) -> Result<(), String> {
    let from = SystemTime::now() - Duration::from_secs(3600);
    let written = match args.what {
        CertCommand::Ca {
            out,
            name,
            days,
            force,
        } => {
            let ca = make_ca(&name, from, days).map_err(|e| e.to_string())?;
            write_pair(&out, "ca", &ca, force).map_err(|e| e.to_string())?
        }
        CertCommand::Node {
            ca_dir,
            id,
            hosts,
            out,
            days,
            key_type,
            force,
        } => {
            let ca = read_ca(&ca_dir).map_err(|e| e.to_string())?;
            let hosts = if hosts.is_empty() {
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
            } else {
                hosts
            };
            let leaf = make_leaf(&ca, &Subject::Node { id, hosts }, from, days, key_type)
                .map_err(|e| e.to_string())?;
            write_pair(&out, "node", &leaf, force).map_err(|e| e.to_string())?
        }
        CertCommand::Cluster {
            out,
            ids,
            hosts,
            days,
        } => make_cluster(&out, &ids, &hosts, from, days).map_err(|e| e.to_string())?,
        CertCommand::Operator {
            ca_dir,
            name,
            out,
            days,
            force,
        } => {
            let ca = read_ca(&ca_dir).map_err(|e| e.to_string())?;
            let leaf = make_leaf(
                &ca,
                &Subject::Operator { name },
                from,
                days,
                KeyType::Ed25519,
            )
            .map_err(|e| e.to_string())?;
            write_pair(&out, "operator", &leaf, force).map_err(|e| e.to_string())?
        }
    };
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `gridkv cert cluster`: the CA in `out/ca` and a node certificate in
/// `out/ID` for each of `ids`, each made only when its key is missing.
/// Returns the files written.
///
/// # Errors
///
/// A [`CertError`] naming the file or id.
pub fn make_cluster(
    out: &Path,
    ids: &[String],
    hosts: &[String],
    from: SystemTime,
    days: u32,
) -> Result<Vec<PathBuf>, CertError> {
    let mut written = Vec::new();
    let ca_dir = out.join("ca");
    if !ca_dir.join("ca.key").exists() {
        let ca = make_ca("gridkv cluster CA", from, DEFAULT_CA_DAYS)?;
        written.extend(write_pair(&ca_dir, "ca", &ca, false)?);
    }
    let ca = read_ca(&ca_dir)?;
    for id in ids {
        let dir = out.join(id);
        if dir.join("node.key").exists() {
            continue;
        }
        let mut names = vec![id.clone(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(hosts.iter().cloned());
        let subject = Subject::Node {
            id: id.clone(),
            hosts: names,
        };
        let leaf = make_leaf(&ca, &subject, from, days, KeyType::Ed25519)?;
        written.extend(write_pair(&dir, "node", &leaf, false)?);
    }
    Ok(written)
}

/// Reads `DIR/ca.pem` and `DIR/ca.key`.
///
/// # Errors
///
/// [`CertError::Io`] naming the file.
pub fn read_ca(dir: &Path) -> Result<Pem, CertError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|source| CertError::Io { path, source })
    };
    Ok(Pem {
        cert: read("ca.pem")?,
        key: read("ca.key")?,
    })
}

/// Writes `DIR/<stem>.pem` and `DIR/<stem>.key` (mode 0600), creating
/// `dir` with its parents; refuses to replace an existing key unless
/// `force`. Returns the paths written.
///
/// # Errors
///
/// [`CertError::Exists`] or [`CertError::Io`].
pub fn write_pair(
    dir: &Path,
    stem: &str,
    pem: &Pem,
    force: bool,
) -> Result<Vec<PathBuf>, CertError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CertError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    if !force && key_path.exists() {
        return Err(CertError::Exists(key_path));
    }
    write_file(&key_path, pem.key.as_bytes(), true).map_err(io(&key_path))?;
    write_file(&cert_path, pem.cert.as_bytes(), false).map_err(io(&cert_path))?;
    Ok(vec![cert_path, key_path])
}

/// Writes through a temporary file then renames, so a node reloading its
/// files never reads half a certificate. Keys are created 0600.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pem: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn node_certificate_names_its_id_and_hosts() {
        let now = SystemTime::now();
        let ca = make_ca("t", now, 1).unwrap();
        let subject = Subject::Node {
            id: "node-1".into(),
            hosts: vec!["localhost".into(), "10.1.2.3".into()],
        };
        let leaf = make_leaf(&ca, &subject, now, 1, KeyType::Ed25519).unwrap();
        let der = parse(&leaf.cert);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert!(
            sans.iter().any(|s| s.contains("gridkv:node:node-1")),
            "{sans:?}"
        );
        assert!(sans.iter().any(|s| s.contains("localhost")), "{sans:?}");
        assert!(
            sans.iter()
                .any(|s| s.contains("10.1.2.3") || s.contains("[10, 1, 2, 3]")),
            "{sans:?}"
        );
        // Signed by the CA, with an Ed25519 key.
        let ca_der = parse(&ca.cert);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.3.101.112"
        );
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn cluster_makes_what_is_missing_only() {
        let dir = std::env::temp_dir().join(format!("gridkv-cluster-{}", std::process::id()));
        let ids = vec!["n1".to_owned(), "n2".to_owned()];
        let first = make_cluster(&dir, &ids, &[], SystemTime::now(), 1).unwrap();
        assert_eq!(first.len(), 6, "{first:?}");
        let n1 = fs::read_to_string(dir.join("n1/node.pem")).unwrap();
        let ids = vec!["n1".to_owned(), "n2".to_owned(), "n3".to_owned()];
        let second = make_cluster(&dir, &ids, &[], SystemTime::now(), 1).unwrap();
        assert_eq!(second.len(), 2, "only n3 is new: {second:?}");
        assert_eq!(fs::read_to_string(dir.join("n1/node.pem")).unwrap(), n1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_ids_are_refused() {
        let now = SystemTime::now();
        let ca = make_ca("t", now, 1).unwrap();
        let bad = Subject::Node {
            id: "a b".into(),
            hosts: vec![],
        };
        assert!(matches!(
            make_leaf(&ca, &bad, now, 1, KeyType::Ed25519),
            Err(CertError::Invalid(_))
        ));
    }

    #[test]
    fn keys_are_private_and_never_silently_replaced() {
        let dir = std::env::temp_dir().join(format!("gridkv-cert-{}", std::process::id()));
        let out = dir.join("a/b");
        let ca = make_ca("t", SystemTime::now(), 1).unwrap();
        let written = write_pair(&out, "ca", &ca, false).unwrap();
        assert_eq!(written.len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(out.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            write_pair(&out, "ca", &ca, false),
            Err(CertError::Exists(_))
        ));
        write_pair(&out, "ca", &ca, true).unwrap();
        assert_eq!(read_ca(&out).unwrap().cert, ca.cert);
        fs::remove_dir_all(&dir).unwrap();
    }
}
