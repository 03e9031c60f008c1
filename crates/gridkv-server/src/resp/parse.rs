//! Parsing client commands off a connection's buffer (the request side of
//! RESP, the same in RESP2 and RESP3).
//!
//! Commands arrive as arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! or as inline commands (`GET k\r\n`, what a person types into `telnet`).
//! The parser is zero-copy: a complete command is split off the connection's
//! buffer once and its arguments are [`Bytes`] slices of it, so a value
//! reaches the store without being copied.
//!
//! A [`Parser`] is incremental: it remembers how far into the buffer the
//! command it is reading has been validated, so a command that arrives in
//! many small reads is scanned once, not once per read (a 7 MB command
//! trickled in 1 KiB reads cost 60 times the CPU of the same command sent
//! at once when every read re-parsed from its first byte).
//!
//! Every size is bounded ([`Limits`]): the whole command, the number of
//! arguments, one bulk, an inline command and a length line. Input past a
//! bound, or input that is not RESP, is a [`ProtocolError`]; the server
//! answers `-ERR Protocol error: ...` and closes the connection, as Redis
//! does, because the stream can no longer be framed.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use gridkv_server::resp::{Limits, Parser};
//!
//! let limits = Limits::default();
//! let mut parser = Parser::new();
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPI"[..]);
//! let args = parser.next(&mut buf, &limits).unwrap().unwrap();
//! assert_eq!(args, vec![&b"GET"[..], &b"key"[..]]);
//! // The second command is incomplete: nothing is consumed until it is.
//! assert!(parser.next(&mut buf, &limits).unwrap().is_none());
//! buf.extend_from_slice(b"NG\r\n");
//! assert_eq!(parser.next(&mut buf, &limits).unwrap().unwrap(), vec![&b"PING"[..]]);
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::Limit;

/// Bounds on what one command may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (one key or value) in bytes. A longer bulk is a
    /// protocol error before any of it is buffered. Default 8 MiB (the
    /// store's value limit is 4 MiB by default; a value between the two is
    /// refused by the store with a clear error and the connection stays
    /// open).
    pub max_bulk: usize,
    /// Most arguments in one command (command name included). Default
    /// 1,048,576, as Redis.
    pub max_args: usize,
    /// Longest inline command. Default 64 KiB, as Redis.
    pub max_inline: usize,
    /// Most bytes of one command, all its arguments and framing together.
    /// Default 512 MiB. Checked as each length is announced, before the
    /// bytes arrive.
    pub max_command: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 8 << 20,
            max_args: 1 << 20,
            max_inline: 64 << 10,
            max_command: 512 << 20,
        }
    }
}

/// Input that cannot be framed as RESP, or exceeds a [`Limits`] bound.
///
/// # Examples
///
/// ```
/// use gridkv_server::limits::Limit;
/// use gridkv_server::resp::ProtocolError;
///
/// let e = ProtocolError::TooLarge { limit: Limit::CommandArgs, max: 3 };
/// assert_eq!(e.to_string(), "Protocol error: command exceeds max-command-args (3)");
/// assert_eq!(e.limit(), Some(Limit::CommandArgs));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The input is not RESP (the message says what was wrong).
    #[error("Protocol error: {0}")]
    Malformed(String),
    /// A command went past one of the [`Limits`].
    #[error("Protocol error: command exceeds {} ({max})", limit.name())]
    TooLarge {
        /// The bound.
        limit: Limit,
        /// Its value.
        max: u64,
    },
}

impl ProtocolError {
    /// The bound exceeded, if that is what this is.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ProtocolError::TooLarge { limit, .. } => Some(*limit),
            ProtocolError::Malformed(_) => None,
        }
    }
}

fn err(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(msg.into())
}

fn too_large(limit: Limit, max: usize) -> ProtocolError {
    ProtocolError::TooLarge {
        limit,
        max: max as u64,
    }
}

/// The longest length line that can be valid: a prefix, a sign, 18
/// digits and CRLF. A longer one without its CRLF is refused at once
/// rather than buffered (and rescanned) up to the inline limit.
const MAX_LENGTH_LINE: usize = 1 + 1 + 18 + 2;

/// The position of `\r\n` at or after `from`, or where the search stopped.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    let mut i = 0;
    while let Some(off) = hay[i..].iter().position(|&b| b == b'\r') {
        let at = i + off;
        if hay.get(at + 1) == Some(&b'\n') {
            return Some(from + at);
        }
        if at + 1 >= hay.len() {
            return None;
        }
        i = at + 1;
    }
    None
}

/// Parses a decimal length from a `*`/`$` line (without the prefix byte).
fn parse_len(line: &[u8]) -> Option<i64> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if neg { -n } else { n })
}

/// Reads one length line at `pos` that starts with `prefix`. `Ok(None)`:
/// incomplete.
fn length_line(buf: &[u8], pos: usize, prefix: u8) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    // The common line, `$100\r\n`: digits read as they are scanned, the
    // CRLF found right after them. Anything else (a sign, a stray byte,
    // more than 18 digits, an incomplete line) takes the general path
    // below, which gives the same answer for this case; this one skips its
    // two passes over the line (a third of the parser's instructions).
    if first == prefix {
        let line = &buf[pos + 1..];
        let (mut n, mut digits) = (0i64, 0);
        while let Some(d @ b'0'..=b'9') = line.get(digits).filter(|_| digits < 18) {
            n = n * 10 + i64::from(d - b'0');
            digits += 1;
        }
        if digits > 0 && line.get(digits..digits + 2) == Some(b"\r\n") {
            return Ok(Some((n, pos + 1 + digits + 2)));
        }
    }
    if first != prefix {
        return Err(err(format!(
            "expected '{}', got '{}'",
            prefix as char,
            first.escape_ascii()
        )));
    }
    let invalid = || {
        err(if prefix == b'*' {
            "invalid multibulk length"
        } else {
            "invalid bulk length"
        })
    };
    match find_crlf(buf, pos + 1) {
        Some(end) => {
            let n = parse_len(&buf[pos + 1..end]).ok_or_else(invalid)?;
            Ok(Some((n, end + 2)))
        }
        None if buf.len() - pos > MAX_LENGTH_LINE => Err(invalid()),
        None => Ok(None),
    }
}

/// Reads commands off one connection's buffer, remembering between calls
/// how far the command in progress has been validated.
///
/// The caller only appends to the buffer between calls (reads from the
/// socket); the parser consumes a command from its front once the whole
/// command is there.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use gridkv_server::resp::{Limits, Parser};
///
/// let command = b"*2\r\n$6\r\nEXISTS\r\n$3\r\nkey\r\n";
/// let (mut parser, mut buf) = (Parser::new(), BytesMut::new());
/// for byte in &command[..command.len() - 1] {
///     buf.extend_from_slice(&[*byte]);
///     assert!(parser.next(&mut buf, &Limits::default()).unwrap().is_none());
/// }
/// buf.extend_from_slice(b"\n");
/// assert_eq!(parser.next(&mut buf, &Limits::default()).unwrap().unwrap().len(), 2);
/// // Each byte was looked at a bounded number of times, not once per read.
/// assert!(parser.scanned_bytes() < 4 * command.len() as u64);
/// ```
#[derive(Debug, Default)]
pub struct Parser {
    /// Offsets of the arguments read so far of the array in progress.
    spans: Vec<(usize, usize)>,
    /// Arguments the array in progress announced (0: none in progress).
    count: usize,
    /// How far into the buffer the array in progress is validated.
    pos: usize,
    /// How far an inline line in progress was searched for its newline.
    inline_searched: usize,
    /// Bytes examined since the parser was made.
    scanned: u64,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes examined so far: about the bytes parsed, whatever the number
    /// of reads they arrived in (the `parser_scanned_bytes` figure).
    pub fn scanned_bytes(&self) -> u64 {
        self.scanned
    }

    /// Splits one complete command off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a command (nothing
    /// is consumed; call again when more bytes arrived). An empty array or
    /// an empty inline line is skipped, as Redis does. After a
    /// [`ProtocolError`] the parser and the buffer are unspecified: close
    /// the connection.
    ///
    /// While a large bulk is arriving, this reserves room for it in `buf`
    /// (bounded by [`Limits::max_bulk`]) so the buffer grows once, not in
    /// steps.
    ///
    /// # Errors
    ///
    /// [`ProtocolError`] for input that is not RESP or exceeds `limits`.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.count == 0 {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.inline(buf, limits)? {
                        Inline::Command(args) => return Ok(Some(args)),
                        Inline::Incomplete => return Ok(None),
                        Inline::Blank => continue,
                    }
                }
                let Some((count, pos)) = length_line(buf, 0, b'*')? else {
                    self.scanned += buf.len() as u64;
                    return Ok(None);
                };
                self.scanned += pos as u64;
                if count <= 0 {
                    // `*0` and `*-1`: nothing to run.
                    buf.advance(pos);
                    continue;
                }
                if count as u64 > limits.max_args as u64 {
                    return Err(too_large(Limit::CommandArgs, limits.max_args));
                }
                // Each argument takes at least `$0\r\n\r\n`.
                if (count as u64).saturating_mul(6) + pos as u64 > limits.max_command as u64 {
                    return Err(too_large(Limit::CommandBytes, limits.max_command));
                }
                self.count = count as usize;
                self.pos = pos;
                self.spans.clear();
                self.spans.reserve(self.count.min(64));
            }
            while self.spans.len() < self.count {
                let Some((len, start)) = length_line(buf, self.pos, b'$')? else {
                    self.scanned += (buf.len() - self.pos) as u64;
                    return Ok(None);
                };
                if len < 0 {
                    return Err(err("invalid bulk length"));
                }
                if len as u64 > limits.max_bulk as u64 {
                    return Err(too_large(Limit::BulkBytes, limits.max_bulk));
                }
                let end = start + len as usize;
                if end + 2 > limits.max_command {
                    return Err(too_large(Limit::CommandBytes, limits.max_command));
                }
                if buf.len() < end + 2 {
                    // Make room for the rest of this bulk in one step; its
                    // length line is read again next time (a few bytes).
                    self.scanned += (start - self.pos) as u64;
                    buf.reserve(end + 2 - buf.len());
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(err("bulk string not terminated by CRLF"));
                }
                self.scanned += (end + 2 - self.pos) as u64;
                self.spans.push((start, end));
                self.pos = end + 2;
            }
            let frame = buf.split_to(self.pos).freeze();
            self.count = 0;
            self.pos = 0;
            return Ok(Some(
                self.spans
                    .drain(..)
                    .map(|(s, e)| frame.slice(s..e))
                    .collect(),
            ));
        }
    }

    fn inline(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Inline, ProtocolError> {
        let from = self.inline_searched.min(buf.len());
        let Some(nl) = buf[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| from + i)
        else {
            self.scanned += (buf.len() - from) as u64;
            self.inline_searched = buf.len();
            if buf.len() > limits.max_inline {
                return Err(too_large(Limit::InlineBytes, limits.max_inline));
            }
            return Ok(Inline::Incomplete);
        };
        self.scanned += (nl + 1 - from) as u64;
        self.inline_searched = 0;
        if nl > limits.max_inline {
            return Err(too_large(Limit::InlineBytes, limits.max_inline));
        }
        let line = buf.split_to(nl + 1).freeze();
        let end = if nl > 0 && line[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let args: Vec<Bytes> = line[..end]
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| line.slice_ref(w))
            .collect();
        if args.len() > limits.max_args {
            return Err(too_large(Limit::CommandArgs, limits.max_args));
        }
        // An empty line (a keep-alive newline) is skipped.
        Ok(if args.is_empty() {
            Inline::Blank
        } else {
            Inline::Command(args)
        })
    }
}

/// What one inline line held.
enum Inline {
    Command(Vec<Bytes>),
    Incomplete,
    Blank,
}

/// Splits one complete command off the front of `buf` with a fresh
/// [`Parser`]: for callers that hold the whole input at once. A
/// connection keeps one [`Parser`] instead, so a command arriving in
/// pieces is not scanned again from its start on every read.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use gridkv_server::resp::{parse_command, Limits};
///
/// let mut buf = BytesMut::from(&b"PING\r\n"[..]);
/// assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap().unwrap(), vec![&b"PING"[..]]);
/// ```
///
/// # Errors
///
/// [`ProtocolError`] for input that is not RESP or exceeds `limits`.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    Parser::new().next(buf, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cmd) = parse_command(&mut buf, &Limits::default())? {
            out.push(cmd.iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn pipelined_commands_split_in_order() {
        let mut input = encode(&[b"SET", b"k", b"v"]);
        input.extend(encode(&[b"GET", b"k"]));
        let cmds = parse_all(&input).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0], vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        assert_eq!(cmds[1], vec![b"GET".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn binary_values_with_crlf_inside_survive() {
        let value = b"a\r\nb\0\xff\r\n";
        let cmds = parse_all(&encode(&[b"SET", b"\0k\r\n", value])).unwrap();
        assert_eq!(cmds[0][1], b"\0k\r\n");
        assert_eq!(cmds[0][2], value);
    }

    #[test]
    fn every_split_point_yields_the_same_command() {
        let input = encode(&[b"SET", b"key", &[7u8; 300]]);
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(
                parse_command(&mut buf, &Limits::default()).unwrap(),
                None,
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
            buf.extend_from_slice(&input[cut..]);
            let cmd = parse_command(&mut buf, &Limits::default())
                .unwrap()
                .unwrap();
            assert_eq!(cmd[2].len(), 300);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn inline_commands_and_blank_lines() {
        let cmds = parse_all(b"\r\nPING\r\n  SET  a   b \nGET a\r\n").unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[1], vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn empty_arrays_are_skipped() {
        let mut input = b"*0\r\n*-1\r\n".to_vec();
        input.extend(encode(&[b"PING"]));
        assert_eq!(parse_all(&input).unwrap(), vec![vec![b"PING".to_vec()]]);
    }

    #[test]
    fn malformed_input_is_a_protocol_error() {
        for bad in [
            &b"*x\r\n"[..],
            b"*1\r\n+PING\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$2\r\nabcd\r\n",
            b"*1\r\n$1a\r\n",
            b"*99999999999999999999\r\n",
        ] {
            assert!(
                parse_all(bad).is_err(),
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
    }

    /// `length_line`'s fast path (digits, then CRLF) reads what the general
    /// path reads, and leaves every other line to it.
    #[test]
    fn length_lines_read_alike_on_both_paths() {
        for (line, want) in [
            (&b"$0\r\n"[..], Some((0, 4))),
            (b"$007\r\n", Some((7, 6))),
            (
                b"*999999999999999999\r\n",
                Some((999_999_999_999_999_999, 21)),
            ),
            (b"$-1\r\n", Some((-1, 5))),
            (b"$12", None),
            (b"$12\r", None),
        ] {
            let got = length_line(line, 0, line[0]).unwrap();
            assert_eq!(got, want, "{}", line.escape_ascii());
        }
        assert!(length_line(b"$1234567890123456789\r\n", 0, b'$').is_err());
        assert!(length_line(b"$1x\r\n", 0, b'$').is_err());
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        let limits = Limits {
            max_bulk: 10,
            max_args: 3,
            max_inline: 16,
            max_command: 40,
        };
        let refused = |input: &[u8]| {
            let mut buf = BytesMut::from(input);
            parse_command(&mut buf, &limits).unwrap_err()
        };
        assert_eq!(refused(b"*1\r\n$11\r\n").limit(), Some(Limit::BulkBytes));
        assert_eq!(refused(b"*4\r\n").limit(), Some(Limit::CommandArgs));
        assert_eq!(refused(&[b'a'; 17]).limit(), Some(Limit::InlineBytes));
        assert_eq!(refused(b"a b c d\r\n").limit(), Some(Limit::CommandArgs));
        // Three bulks of 10 bytes and their framing pass 40 bytes at the
        // third length line, before its bytes are sent.
        let e = refused(b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n");
        assert_eq!(e.limit(), Some(Limit::CommandBytes));
        assert_eq!(
            e.to_string(),
            "Protocol error: command exceeds max-command-bytes (40)"
        );
        let e = refused(b"*1\r\n$1234567890123456789012");
        assert_eq!(e.limit(), None, "a malformed length, not a limit");
        let mut buf = BytesMut::from(&b"*1\r\n$10\r\n0123456789\r\n"[..]);
        assert!(parse_command(&mut buf, &limits).unwrap().is_some());
    }

    fn exists_command(keys: usize) -> Vec<u8> {
        let names: Vec<Vec<u8>> = (0..keys).map(|i| format!("key:{i}").into_bytes()).collect();
        let mut args: Vec<&[u8]> = vec![b"EXISTS"];
        args.extend(names.iter().map(|k| k.as_slice()));
        encode(&args)
    }

    /// The parser remembers where it stopped: a command trickled in small
    /// pieces is scanned about once, not once per piece.
    #[test]
    fn a_trickled_command_is_scanned_once() {
        let command = exists_command(20_000);
        for piece in [1, 7, 1024] {
            let (mut parser, mut buf) = (Parser::new(), BytesMut::new());
            let mut parsed = None;
            for chunk in command.chunks(piece) {
                buf.extend_from_slice(chunk);
                if let Some(args) = parser.next(&mut buf, &Limits::default()).unwrap() {
                    parsed = Some(args);
                }
            }
            assert_eq!(parsed.expect("parsed").len(), 20_001);
            let scanned = parser.scanned_bytes();
            // Each piece rereads at most one partial length line.
            let bound = command.len() as u64 + 22 * command.len().div_ceil(piece) as u64;
            assert!(
                scanned <= bound,
                "piece {piece}: scanned {scanned} of {} bytes",
                command.len()
            );
        }
    }

    #[test]
    fn a_trickled_inline_command_is_searched_once() {
        let line = format!("{}\r\n", "GET k ".repeat(2_000));
        let (mut parser, mut buf) = (Parser::new(), BytesMut::new());
        for byte in line.as_bytes() {
            buf.extend_from_slice(&[*byte]);
            let _ = parser.next(&mut buf, &Limits::default()).unwrap();
        }
        assert!(buf.is_empty());
        assert_eq!(parser.scanned_bytes(), line.len() as u64);
    }

    #[test]
    fn large_bulk_reserves_its_room_once() {
        let mut buf = BytesMut::from(&b"*1\r\n$1000000\r\nab"[..]);
        assert!(
            parse_command(&mut buf, &Limits::default())
                .unwrap()
                .is_none()
        );
        assert!(buf.capacity() >= 1_000_002 + 14);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_commands_roundtrip(args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..6), cut in 0usize..400) {
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let input = encode(&refs);
            let cut = cut.min(input.len());
            let mut buf = BytesMut::from(&input[..cut]);
            let first = parse_command(&mut buf, &Limits::default()).unwrap();
            if cut < input.len() { proptest::prop_assert!(first.is_none()); }
            buf.extend_from_slice(&input[cut..]);
            let got = match first { Some(c) => c, None => parse_command(&mut buf, &Limits::default()).unwrap().unwrap() };
            let got: Vec<Vec<u8>> = got.iter().map(|a| a.to_vec()).collect();
            proptest::prop_assert_eq!(got, args);
        }

        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut buf = BytesMut::from(&input[..]);
            for _ in 0..64 {
                match parse_command(&mut buf, &Limits::default()) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
