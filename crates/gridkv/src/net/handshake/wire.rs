//! What both handshake messages share on the wire: the magic bytes, the
//! protocol version, the field limits, and the checks decoding applies to
//! every field it reads from a peer.

use serde::Deserialize;

use super::error::HandshakeError;

/// The first four bytes of every handshake message: "GKV1".
pub const MAGIC: [u8; 4] = *b"GKV1";

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest cluster name, in bytes.
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

/// Longest `auth` field, in bytes: room for a certificate-free scheme (key
/// id, nonce, signature) with margin, while a whole handshake message stays
/// under a third of the pre-handshake frame limit.
pub const MAX_AUTH_LEN: usize = 1024;

/// A postcard error, as [`HandshakeError::Malformed`].
pub(super) fn malformed(error: postcard::Error) -> HandshakeError {
    HandshakeError::Malformed {
        detail: error.to_string(),
    }
}

/// The input after [`MAGIC`], or [`HandshakeError::BadMagic`].
pub(super) fn strip_magic(bytes: &[u8]) -> Result<&[u8], HandshakeError> {
    match bytes.split_first_chunk::<4>() {
        Some((magic, rest)) if *magic == MAGIC => Ok(rest),
        _ => Err(HandshakeError::BadMagic),
    }
}

/// Decodes a `T` that must span all of `bytes`.
pub(super) fn take_all<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, HandshakeError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(HandshakeError::TrailingBytes { count: rest.len() });
    }
    Ok(value)
}

/// A field of at most `max` bytes, or [`HandshakeError::FieldTooLong`].
pub(super) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), HandshakeError> {
    if len > max {
        return Err(HandshakeError::FieldTooLong { field, len, max });
    }
    Ok(())
}

/// A name from the peer that we will print: bounded, and free of control
/// characters, which could forge or garble log lines.
pub(super) fn check_text(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<(), HandshakeError> {
    check_len(field, text.len(), max)?;
    if text.chars().any(char::is_control) {
        return Err(HandshakeError::ControlCharacter { field });
    }
    Ok(())
}
