//! Parsing client commands off a connection's buffer (the request side of
//! RESP, the same in RESP2 and RESP3).
//!
//! Commands arrive as arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! or as inline commands (`GET k\r\n`, what a person types into `telnet`).
//! The parser is zero-copy: a complete command is split off the connection's
//! buffer once and its arguments are [`Bytes`] slices of it, so a value
//! reaches the store without being copied.
//!
//! Every size is bounded ([`Limits`]): a length line, the number of
//! arguments, one bulk, and an inline command. Input past a bound, or input
//! that is not RESP, is a [`ProtocolError`]; the server answers
//! `-ERR Protocol error: ...` and closes the connection, as Redis does,
//! because the stream can no longer be framed.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use gridkv_server::resp::{parse_command, Limits};
//!
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPI"[..]);
//! let args = parse_command(&mut buf, &Limits::default()).unwrap().unwrap();
//! assert_eq!(args, vec![&b"GET"[..], &b"key"[..]]);
//! // The second command is incomplete: nothing is consumed until it is.
//! assert!(parse_command(&mut buf, &Limits::default()).unwrap().is_none());
//! buf.extend_from_slice(b"NG\r\n");
//! assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap().unwrap(), vec![&b"PING"[..]]);
//! ```

use bytes::{Bytes, BytesMut};

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
    /// Longest inline command, and longest `*`/`$` length line. Default
    /// 64 KiB, as Redis.
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 8 << 20,
            max_args: 1 << 20,
            max_inline: 64 << 10,
        }
    }
}

/// Input that cannot be framed as RESP, or exceeds a [`Limits`] bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn err(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

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
fn length_line(
    buf: &[u8],
    pos: usize,
    prefix: u8,
    limits: &Limits,
) -> Result<Option<(i64, usize)>, ProtocolError> {
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
    match find_crlf(buf, pos + 1) {
        Some(end) => {
            let n = parse_len(&buf[pos + 1..end]).ok_or_else(|| {
                err(if prefix == b'*' {
                    "invalid multibulk length"
                } else {
                    "invalid bulk length"
                })
            })?;
            Ok(Some((n, end + 2)))
        }
        None if buf.len() - pos > limits.max_inline => Err(err("too big length line")),
        None => Ok(None),
    }
}

/// Splits one complete command off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a command (nothing is
/// consumed; call again when more bytes arrived). An empty array or an
/// empty inline line is skipped, as Redis does. After a [`ProtocolError`]
/// the buffer's contents are unspecified: close the connection.
///
/// While a large bulk is arriving, this reserves room for it in `buf`
/// (bounded by [`Limits::max_bulk`]) so the buffer grows once, not in
/// steps.
///
/// # Errors
///
/// [`ProtocolError`] for input that is not RESP or exceeds `limits`.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != b'*' {
            return parse_inline(buf, limits);
        }
        let Some((count, mut pos)) = length_line(buf, 0, b'*', limits)? else {
            return Ok(None);
        };
        if count <= 0 {
            // `*0` and `*-1`: nothing to run.
            let _ = buf.split_to(pos);
            continue;
        }
        if count as u64 > limits.max_args as u64 {
            return Err(err("invalid multibulk length"));
        }
        let count = count as usize;
        // Offsets of each argument in `buf`, collected before consuming.
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let Some((len, start)) = length_line(buf, pos, b'$', limits)? else {
                return Ok(None);
            };
            if len < 0 || len as u64 > limits.max_bulk as u64 {
                return Err(err("invalid bulk length"));
            }
            let len = len as usize;
            let end = start + len;
            if buf.len() < end + 2 {
                // Make room for the rest of this bulk in one step.
                buf.reserve(end + 2 - buf.len());
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(err("bulk string not terminated by CRLF"));
            }
            spans.push((start, end));
            pos = end + 2;
        }
        let frame = buf.split_to(pos).freeze();
        return Ok(Some(
            spans.into_iter().map(|(s, e)| frame.slice(s..e)).collect(),
        ));
    }
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > limits.max_inline {
                return Err(err("too big inline request"));
            }
            return Ok(None);
        };
        if nl > limits.max_inline {
            return Err(err("too big inline request"));
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
            return Err(err("too many arguments"));
        }
        if !args.is_empty() {
            return Ok(Some(args));
        }
        // Empty line (a keep-alive newline): skip it.
        match buf.first() {
            None => return Ok(None),
            Some(b'*') => return parse_command(buf, limits),
            Some(_) => {}
        }
    }
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
        let limits = Limits::default();
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
            let got = length_line(line, 0, line[0], &limits).unwrap();
            assert_eq!(got, want, "{}", line.escape_ascii());
        }
        assert!(length_line(b"$1234567890123456789\r\n", 0, b'$', &limits).is_err());
        assert!(length_line(b"$1x\r\n", 0, b'$', &limits).is_err());
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        let limits = Limits {
            max_bulk: 10,
            max_args: 3,
            max_inline: 16,
        };
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        assert!(parse_command(&mut buf, &limits).is_err());
        let mut buf = BytesMut::from(&b"*4\r\n"[..]);
        assert!(parse_command(&mut buf, &limits).is_err());
        let mut buf = BytesMut::from(&[b'a'; 17][..]);
        assert!(parse_command(&mut buf, &limits).is_err());
        let mut buf = BytesMut::from(&b"*1\r\n$1234567890123456789"[..]);
        assert!(parse_command(&mut buf, &limits).is_err());
        let mut buf = BytesMut::from(&b"*1\r\n$10\r\n0123456789\r\n"[..]);
        assert!(parse_command(&mut buf, &limits).unwrap().is_some());
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
