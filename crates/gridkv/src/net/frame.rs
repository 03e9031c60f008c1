//! Length-delimited framing: how messages are cut out of a TCP byte stream.
//!
//! Every frame on a GridKV connection is a 4-byte big-endian length followed
//! by that many bytes of payload. [`encode_frame`] writes one;
//! [`FrameDecoder`] cuts complete frames out of whatever bytes have arrived so
//! far, without copying them (each frame is split off the read buffer as
//! [`Bytes`]).
//!
//! Both are pure functions over byte buffers: no socket, no runtime. The
//! connection code reads into a [`BytesMut`], calls
//! [`FrameDecoder::decode`] until it returns `Ok(None)`, and closes the
//! connection on any [`FrameError`].
//!
//! # Limits
//!
//! A frame's length is checked against the decoder's limit as soon as its
//! 4-byte prefix has arrived, before any of its payload is buffered, so a peer
//! cannot make a node hold more than one limit's worth of a frame. A
//! connection starts with [`PRE_HANDSHAKE_MAX_FRAME`], which is ample for the
//! handshake and nothing else, and raises its limit with
//! [`FrameDecoder::set_max_frame`] (usually to [`DEFAULT_MAX_FRAME`]) once
//! the peer has identified itself.
//!
//! # Empty frames
//!
//! A frame of zero bytes is an error ([`FrameError::Empty`]), on both the
//! encoding and the decoding side. Every GridKV message starts with at least
//! a one-byte message tag, so no correct peer ever sends one: an empty frame
//! means the two sides disagree about where frames start (or the peer is not
//! a GridKV node), and failing at the framing layer names that problem
//! instead of reporting a confusing message-decoding error one layer up.
//! Keep-alives are ordinary messages, so they can carry RTT samples.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the length prefix in front of every frame, in bytes.
pub const LEN_PREFIX: usize = 4;

/// Frame limit before the handshake completes: 4 KiB.
///
/// The handshake messages are far smaller (see
/// [`handshake`](super::handshake)); a stranger that has not yet identified
/// itself gets no more buffer than that.
pub const PRE_HANDSHAKE_MAX_FRAME: usize = 4 * 1024;

/// Default frame limit after the handshake: 16 MiB, well above the largest
/// value plus its key and message header.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// The largest payload a 4-byte prefix can describe.
const PREFIX_MAX: usize = u32::MAX as usize;

/// Why a frame cannot be encoded or decoded. Either way the connection is
/// unusable: the caller closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's length exceeds the limit in force.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the frame's payload, in bytes.
        len: usize,
        /// The limit in force, in bytes.
        max: usize,
    },
    /// The frame has no payload; see the [module docs](self#empty-frames).
    #[error("empty frame: no GridKV message is zero bytes long")]
    Empty,
}

/// Cuts frames out of a connection's read buffer.
///
/// It keeps no partial state between calls: everything not yet returned stays
/// in the caller's buffer, so the decoder is just the limit in force and can
/// be changed between any two calls.
///
/// The decoder never reserves buffer space on the peer's word: a frame that
/// claims 16 MiB and then sends 5 bytes costs 5 bytes, not 16 MiB. Memory
/// grows only as bytes actually arrive, and the caller's read loop decides
/// how much to read at a time.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use gridkv::net::frame::{encode_frame, FrameDecoder, FrameError, PRE_HANDSHAKE_MAX_FRAME};
///
/// let mut decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
/// let mut wire = BytesMut::new();
/// encode_frame(b"hello", PRE_HANDSHAKE_MAX_FRAME, &mut wire)?;
///
/// // Bytes arrive in pieces: nothing until the frame is complete.
/// let mut read_buf = BytesMut::new();
/// read_buf.extend_from_slice(&wire[..6]);
/// assert_eq!(decoder.decode(&mut read_buf)?, None);
/// read_buf.extend_from_slice(&wire[6..]);
/// assert_eq!(decoder.decode(&mut read_buf)?.as_deref(), Some(&b"hello"[..]));
/// assert!(read_buf.is_empty());
/// # Ok::<(), FrameError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that accepts payloads of 1 to `max_frame` bytes.
    ///
    /// A limit above `u32::MAX` acts as `u32::MAX`, the most a prefix can
    /// describe.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::frame::{FrameDecoder, PRE_HANDSHAKE_MAX_FRAME};
    ///
    /// let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    /// assert_eq!(decoder.max_frame(), 4096);
    /// ```
    pub const fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The limit in force, in payload bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::frame::{FrameDecoder, DEFAULT_MAX_FRAME};
    ///
    /// assert_eq!(FrameDecoder::new(DEFAULT_MAX_FRAME).max_frame(), 16 << 20);
    /// ```
    pub const fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the limit; it applies from the next frame whose prefix is
    /// decoded (a connection raises it once the handshake succeeds).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use gridkv::net::frame::{
    ///     encode_frame, FrameDecoder, FrameError, DEFAULT_MAX_FRAME, PRE_HANDSHAKE_MAX_FRAME,
    /// };
    ///
    /// let big = vec![7u8; 10_000];
    /// let mut buf = BytesMut::new();
    /// encode_frame(&big, DEFAULT_MAX_FRAME, &mut buf)?;
    ///
    /// let mut decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    /// assert!(matches!(decoder.decode(&mut buf), Err(FrameError::TooLarge { len: 10_000, .. })));
    ///
    /// // After the handshake the same bytes are a valid frame.
    /// decoder.set_max_frame(DEFAULT_MAX_FRAME);
    /// assert_eq!(decoder.decode(&mut buf)?.map(|f| f.len()), Some(10_000));
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Takes the next complete frame's payload off the front of `src`.
    ///
    /// - `Ok(Some(payload))`: a frame was complete; its prefix and payload
    ///   are removed from `src` and the payload is returned without a copy.
    /// - `Ok(None)`: `src` holds less than a whole frame; read more and call
    ///   again. Nothing is removed.
    /// - `Err(_)`: the frame at the front is over the limit or empty. This is
    ///   reported as soon as the 4-byte prefix is present, whatever follows,
    ///   and nothing is removed (so calling again reports the same error):
    ///   close the connection.
    ///
    /// Never panics and never allocates payload space, whatever `src` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use gridkv::net::frame::{FrameDecoder, FrameError};
    ///
    /// let mut decoder = FrameDecoder::new(1024);
    ///
    /// // A prefix claiming 1 MiB is refused before any payload arrives.
    /// let mut buf = BytesMut::from(&(1u32 << 20).to_be_bytes()[..]);
    /// assert_eq!(
    ///     decoder.decode(&mut buf),
    ///     Err(FrameError::TooLarge { len: 1 << 20, max: 1024 })
    /// );
    ///
    /// // Two frames arriving together come out one at a time.
    /// let mut buf = BytesMut::from(&b"\0\0\0\x01a\0\0\0\x02bc"[..]);
    /// assert_eq!(decoder.decode(&mut buf)?.as_deref(), Some(&b"a"[..]));
    /// assert_eq!(decoder.decode(&mut buf)?.as_deref(), Some(&b"bc"[..]));
    /// assert_eq!(decoder.decode(&mut buf)?, None);
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = src.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        check_len(len, self.max_frame)?;
        // Only a 32-bit target with a limit near `u32::MAX` can overflow
        // here; such a frame could never be buffered there anyway.
        let Some(total) = len.checked_add(LEN_PREFIX) else {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        };
        if src.len() < total {
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        Ok(Some(src.split_to(len).freeze()))
    }
}

/// Appends `payload` to `dst` as one frame (prefix, then payload).
///
/// Refuses, leaving `dst` untouched, a payload longer than `max` (the limit
/// the receiving peer enforces; above `u32::MAX` acts as `u32::MAX`) or an
/// empty one, so a node never sends a frame its peer would reject.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use gridkv::net::frame::{encode_frame, FrameError};
///
/// let mut dst = BytesMut::new();
/// encode_frame(b"ping", 1024, &mut dst)?;
/// assert_eq!(&dst[..], b"\0\0\0\x04ping");
///
/// assert_eq!(
///     encode_frame(&[0; 2000], 1024, &mut dst),
///     Err(FrameError::TooLarge { len: 2000, max: 1024 })
/// );
/// assert_eq!(encode_frame(b"", 1024, &mut dst), Err(FrameError::Empty));
/// assert_eq!(dst.len(), 8);
/// # Ok::<(), FrameError>(())
/// ```
pub fn encode_frame(payload: &[u8], max: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
    let len = payload.len();
    check_len(len, max)?;
    dst.reserve(LEN_PREFIX + len);
    // `check_len` bounded `len` by `u32::MAX`.
    dst.put_u32(len as u32);
    dst.put_slice(payload);
    Ok(())
}

/// The one rule both directions share: 1 to `min(max, u32::MAX)` bytes.
fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max.min(PREFIX_MAX) {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> BytesMut {
        let mut buf = BytesMut::new();
        for p in payloads {
            encode_frame(p, DEFAULT_MAX_FRAME, &mut buf).unwrap();
        }
        buf
    }

    #[test]
    fn prefix_is_four_bytes_big_endian() {
        let buf = framed(&[&[0xAB; 0x0102]]);
        assert_eq!(&buf[..4], &[0, 0, 1, 2]);
        assert_eq!(buf.len(), 4 + 0x0102);
    }

    #[test]
    fn incomplete_input_waits_and_consumes_nothing() {
        let decoder = FrameDecoder::new(64);
        let full = framed(&[b"abcdef"]);
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
        }
    }

    #[test]
    fn frames_are_split_without_copying() {
        let decoder = FrameDecoder::new(64);
        let mut buf = framed(&[b"first", b"second"]);
        buf.extend_from_slice(&[0, 0]); // the start of a third prefix
        let base = buf.as_ptr() as usize;
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        // The payload still lives where it was read: right after its prefix.
        assert_eq!(first.as_ptr() as usize, base + LEN_PREFIX);
        assert_eq!(&first[..], b"first");
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn limit_is_inclusive() {
        let decoder = FrameDecoder::new(8);
        let mut buf = framed(&[&[1; 8]]);
        assert_eq!(decoder.decode(&mut buf).unwrap().map(|f| f.len()), Some(8));

        let mut buf = framed(&[&[1; 9]]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        );
        assert_eq!(buf.len(), 4 + 9, "an oversized frame is left in place");
    }

    #[test]
    fn oversized_prefix_is_refused_from_the_prefix_alone() {
        let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: PRE_HANDSHAKE_MAX_FRAME
            })
        );
        assert_eq!(
            buf.capacity(),
            capacity,
            "no space reserved for the payload"
        );
        // Repeated calls report the same error rather than resynchronising.
        assert!(decoder.decode(&mut buf).is_err());
    }

    #[test]
    fn a_claimed_length_reserves_nothing() {
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&(DEFAULT_MAX_FRAME as u32).to_be_bytes());
        buf.extend_from_slice(b"x");
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.capacity(), 16);
    }

    #[test]
    fn empty_frames_are_refused_both_ways() {
        let decoder = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 1, 2][..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::Empty));
        let mut dst = BytesMut::new();
        assert_eq!(encode_frame(&[], 64, &mut dst), Err(FrameError::Empty));
        assert!(dst.is_empty());
    }

    #[test]
    fn limits_beyond_the_prefix_range_cap_at_u32_max() {
        // A 4 GiB payload is not materialised: check_len is the whole rule.
        let len = PREFIX_MAX + 1;
        assert_eq!(
            check_len(len, usize::MAX),
            Err(FrameError::TooLarge {
                len,
                max: usize::MAX
            })
        );
        assert_eq!(check_len(PREFIX_MAX, usize::MAX), Ok(()));
        let decoder = FrameDecoder::new(usize::MAX);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn raising_the_limit_applies_to_the_frame_in_waiting() {
        let mut decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
        let big = vec![3u8; PRE_HANDSHAKE_MAX_FRAME + 1];
        let mut buf = framed(&[b"hello", &big]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert!(decoder.decode(&mut buf).is_err());
        decoder.set_max_frame(DEFAULT_MAX_FRAME);
        assert_eq!(decoder.decode(&mut buf).unwrap().as_deref(), Some(&big[..]));
    }

    #[test]
    fn errors_read_clearly() {
        assert_eq!(
            FrameError::TooLarge { len: 20, max: 10 }.to_string(),
            "frame of 20 bytes exceeds the limit of 10 bytes"
        );
    }
}
