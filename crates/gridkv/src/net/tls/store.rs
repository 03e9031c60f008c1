//! [`TlsStore`]: the node's TLS material as loaded now, swapped whole on a
//! reload, with the rustls configurations each new connection takes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use ed25519_dalek::SigningKey;
use parking_lot::Mutex;
use rustls::{ClientConfig, ServerConfig};

use super::configs::Configs;
use super::error::TlsError;
use super::material::{Material, TlsFiles};
use super::status::{CertExpiry, TlsStatus};
use super::verify::Bundle;
use crate::NodeId;

/// How many distinct node certificates one store hands out to membership
/// over its life (see [`TlsStore::reload`]).
pub const MAX_ROTATIONS: usize = 256;

/// One load of the material, whole: what a connection or a signature uses
/// is always from one load.
pub(crate) struct Loaded {
    pub(crate) bundle: Arc<Bundle>,
    pub(crate) signing: SigningKey,
    /// The slot of [`Inner::leaves`] holding this load's leaf (DER).
    pub(crate) leaf_slot: usize,
    pub(crate) certificates: Vec<CertExpiry>,
    pub(crate) configs: Configs,
}

struct Inner {
    node_id: NodeId,
    files: Option<TlsFiles>,
    current: ArcSwap<Loaded>,
    /// Every distinct leaf loaded, in order: membership borrows the
    /// current one for as long as it holds the store, so none is ever
    /// dropped or moved (hence a bounded arena of write-once slots).
    leaves: Box<[OnceLock<Box<[u8]>>]>,
    /// Serialises reloads; also the next free slot of `leaves`.
    reload: Mutex<usize>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_error: Mutex<Option<TlsError>>,
}

/// A node's TLS material (trust bundle, certificate chain, Ed25519 key) as
/// loaded now, and the rustls configurations made from it.
///
/// Cheap to clone; every clone is the same store. [`TlsStore::reload`]
/// re-reads the files and swaps the material whole; a reload that fails
/// keeps what was loaded before. Each new connection takes the
/// configurations current when it opens; open connections keep theirs.
///
/// # Examples
///
/// ```
/// use gridkv::net::tls::TlsStore;
///
/// // A CA and a node certificate naming node "a" (what `gridkv cert` makes).
/// let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
/// let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
/// ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
/// let ca_cert = ca.self_signed(&ca_key)?;
/// let issuer = rcgen::Issuer::new(ca, ca_key);
/// let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
/// let mut node = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
/// node.subject_alt_names.push(rcgen::SanType::URI("gridkv:node:a".try_into()?));
/// let cert = node.signed_by(&key, &issuer)?;
///
/// let store = TlsStore::from_pem(
///     ca_cert.pem().as_bytes(),
///     cert.pem().as_bytes(),
///     key.serialize_pem().as_bytes(),
/// )?;
/// assert_eq!(store.node_id().as_str(), "a");
/// let status = store.status();
/// assert_eq!(status.certificates.len(), 2); // the node's, the CA's
/// assert_eq!((status.reloads_ok, status.reloads_failed), (0, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TlsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStore")
            .field("node_id", &self.inner.node_id)
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl TlsStore {
    /// Loads the material from files.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming what is wrong: a file unreadable or over
    /// `MAX_PEM_FILE` (1 MiB), no certificate, a key
    /// that is not PKCS#8 Ed25519 or not the certificate's, a certificate
    /// that names no node (or an operator), or that does not chain to the
    /// bundle now.
    pub fn from_files(files: TlsFiles) -> Result<TlsStore, TlsError> {
        let [ca, cert, key] = files.read()?;
        Self::load(Some(files), &ca, &cert, &key)
    }

    /// Loads the material from PEM bytes: the trust bundle (every
    /// CERTIFICATE in it), the node's chain (leaf first) and its PKCS#8
    /// key. Such a store has no files to reload; [`TlsStore::replace_pem`]
    /// swaps its material.
    ///
    /// # Errors
    ///
    /// As [`TlsStore::from_files`].
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<TlsStore, TlsError> {
        Self::load(None, ca, chain, key)
    }

    fn load(
        files: Option<TlsFiles>,
        ca: &[u8],
        chain: &[u8],
        key: &[u8],
    ) -> Result<TlsStore, TlsError> {
        let material = Material::parse(ca, chain, key)?;
        let leaves: Box<[OnceLock<Box<[u8]>>]> =
            (0..MAX_ROTATIONS).map(|_| OnceLock::new()).collect();
        let _ = leaves[0].set(material.chain[0].to_vec().into_boxed_slice());
        let loaded = Self::assemble(material, 0)?;
        Ok(TlsStore {
            inner: Arc::new(Inner {
                node_id: loaded.0,
                files,
                current: ArcSwap::from_pointee(loaded.1),
                leaves,
                reload: Mutex::new(1),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        })
    }

    fn assemble(material: Material, leaf_slot: usize) -> Result<(NodeId, Loaded), TlsError> {
        let configs = Configs::new(&material)?;
        Ok((
            material.node_id,
            Loaded {
                bundle: material.bundle,
                signing: material.signing,
                leaf_slot,
                certificates: material.certificates,
                configs,
            },
        ))
    }

    /// The node id the certificate names (fixed for the store's life).
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The files the material was loaded from, if any.
    pub fn files(&self) -> Option<&TlsFiles> {
        self.inner.files.as_ref()
    }

    /// Re-reads the files and, if the new material loads and names the
    /// same node, makes it current for every connection opened from now
    /// on. Counted in [`TlsStatus::reloads_ok`] or `reloads_failed`, and
    /// logged.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when the new material fails to load (the old stays),
    /// [`TlsError::IdChanged`] when it names another node,
    /// [`TlsError::NoFiles`] for a store made from PEM bytes, and
    /// [`TlsError::RotationLimit`] after `MAX_ROTATIONS` (256) distinct node
    /// certificates.
    pub fn reload(&self) -> Result<(), TlsError> {
        let result = match &self.inner.files {
            Some(files) => files
                .read()
                .and_then(|[ca, cert, key]| self.swap(&ca, &cert, &key)),
            None => Err(TlsError::NoFiles),
        };
        self.count(result)
    }

    /// As [`TlsStore::reload`], from PEM bytes instead of the files.
    ///
    /// # Errors
    ///
    /// As [`TlsStore::reload`], except [`TlsError::NoFiles`].
    pub fn replace_pem(&self, ca: &[u8], chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let result = self.swap(ca, chain, key);
        self.count(result)
    }

    fn swap(&self, ca: &[u8], chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let material = Material::parse(ca, chain, key)?;
        if material.node_id != self.inner.node_id {
            return Err(TlsError::IdChanged {
                old: self.inner.node_id.to_string(),
                new: material.node_id.to_string(),
            });
        }
        let mut next = self.inner.reload.lock();
        let current = self.inner.current.load();
        let leaf = material.chain[0].to_vec();
        let slot = if self.leaf(current.leaf_slot) == &leaf[..] {
            current.leaf_slot
        } else if *next < MAX_ROTATIONS {
            *next
        } else {
            return Err(TlsError::RotationLimit { max: MAX_ROTATIONS });
        };
        let (_, loaded) = Self::assemble(material, slot)?;
        if slot == *next {
            let _ = self.inner.leaves[slot].set(leaf.into_boxed_slice());
            *next += 1;
        }
        self.inner.current.store(Arc::new(loaded));
        Ok(())
    }

    fn count(&self, result: Result<(), TlsError>) -> Result<(), TlsError> {
        match &result {
            Ok(()) => {
                self.inner.reloads_ok.fetch_add(1, Relaxed);
                *self.inner.last_error.lock() = None;
                tracing::info!(node = %self.inner.node_id, "TLS material reloaded");
            }
            Err(error) => {
                self.inner.reloads_failed.fetch_add(1, Relaxed);
                *self.inner.last_error.lock() = Some(error.clone());
                tracing::warn!(node = %self.inner.node_id, %error, "TLS reload failed; keeping the material loaded before");
            }
        }
        result
    }

    /// Each loaded certificate's expiry and the reload counts, for the
    /// server's metrics ("days left").
    ///
    /// # Examples
    ///
    /// ```
    /// # use gridkv::net::tls::TlsStore;
    /// # fn status(store: &TlsStore) {
    /// let now = std::time::SystemTime::now();
    /// for cert in store.status().certificates {
    ///     println!("{} {}: {:.0} days left", cert.kind.as_str(), cert.subject, cert.days_left(now));
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> TlsStatus {
        TlsStatus {
            node_id: self.inner.node_id,
            certificates: self.inner.current.load().certificates.clone(),
            reloads_ok: self.inner.reloads_ok.load(Relaxed),
            reloads_failed: self.inner.reloads_failed.load(Relaxed),
            last_error: self.inner.last_error.lock().as_ref().map(ToString::to_string),
        }
    }

    /// The configuration for dialling a cluster peer, as loaded now.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.inner.current.load().configs.client)
    }

    /// The configuration for accepting a cluster peer (client certificate
    /// required), as loaded now.
    pub fn cluster_server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.current.load().configs.cluster_server)
    }

    /// A server configuration with the node's certificate for listeners
    /// other than the cluster's (RESP, HTTP): client certificates optional,
    /// checked against the bundle when given.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.current.load().configs.server)
    }

    /// The current load.
    pub(crate) fn loaded(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.inner.current.load()
    }

    /// The leaf in `slot` (set before any load names it).
    pub(crate) fn leaf(&self, slot: usize) -> &[u8] {
        self.inner.leaves[slot].get().map_or(&[], |leaf| &leaf[..])
    }
}
