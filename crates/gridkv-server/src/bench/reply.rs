//! Reading the server's replies: a bounded, zero-copy RESP parser (the
//! bench reads RESP2 replies; it never sends `HELLO 3`).

/// Largest bulk string a reply may carry, and the largest `--data-size`:
/// 512 MiB, Redis's own `proto-max-bulk-len` default.
pub(super) const MAX_BULK: usize = 512 * 1024 * 1024;

/// Largest reply line (status, error, integer or length header) without its
/// CRLF. Real lines are a few dozen bytes; the cap keeps a server that never
/// sends CRLF from growing the read buffer without end.
const MAX_LINE: usize = 64 * 1024;

/// Largest element count of a reply array. The bench's own commands never get
/// arrays back; the cap only turns a corrupt header into an error.
const MAX_ARRAY: usize = 64 * 1024 * 1024;

/// Deepest nesting of reply arrays; the parser recurses, so this bounds its
/// stack.
const MAX_DEPTH: usize = 32;

/// A RESP2 reply, borrowing its bytes from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply<'a> {
    /// `+OK`.
    Simple(&'a [u8]),
    /// `-ERR ...`, without the `-`.
    Error(&'a [u8]),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nbar`, or `$-1` (None).
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`, or `*-1` (None).
    Array(Option<Vec<Reply<'a>>>),
}

/// Why a reply cannot be parsed. The connection is then unusable: nothing
/// says where the next reply starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ProtocolError {
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("bad number {0:?} in a reply header")]
    BadNumber(String),
    #[error("negative length {0} (only -1, for null, is allowed)")]
    NegativeLength(i64),
    #[error("bulk string of {0} bytes exceeds the 512 MiB limit")]
    BulkTooLarge(i64),
    #[error("array of {0} elements exceeds the limit of {MAX_ARRAY}")]
    ArrayTooLarge(i64),
    #[error("arrays nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply line ends in LF without CR")]
    BareLf,
    #[error("bulk string not followed by CRLF")]
    MissingCrlf,
}

/// Parses one reply from the front of `buf`: `Ok(None)` if it has not fully
/// arrived, otherwise the reply and how many bytes it took.
///
/// Never allocates for anything but arrays, and never on the word of a
/// length header: a bulk that claims 500 MiB costs only the bytes that came.
pub(super) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

/// Parses the reply starting at `start`; returns it and where it ends.
fn parse_at(
    buf: &[u8],
    start: usize,
    depth: usize,
) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let Some(&tag) = buf.get(start) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(ProtocolError::UnknownType(tag));
    }
    let Some((line, next)) = line_at(buf, start + 1)? else {
        return Ok(None);
    };
    let parsed = match tag {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(parse_int(line)?), next),
        b'$' => match parse_len(line)? {
            None => (Reply::Bulk(None), next),
            Some(len) if len > MAX_BULK => {
                return Err(ProtocolError::BulkTooLarge(len as i64));
            }
            Some(len) => {
                let end = next + len;
                let Some(crlf) = buf.get(end..end + 2) else {
                    return Ok(None);
                };
                if crlf != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                (Reply::Bulk(Some(&buf[next..end])), end + 2)
            }
        },
        _ => match parse_len(line)? {
            None => (Reply::Array(None), next),
            Some(len) if len > MAX_ARRAY => {
                return Err(ProtocolError::ArrayTooLarge(len as i64));
            }
            Some(_) if depth >= MAX_DEPTH => return Err(ProtocolError::TooDeep),
            Some(len) => {
                // Capacity from the header only up to a small bound: the
                // elements themselves must arrive before they cost memory.
                let mut items = Vec::with_capacity(len.min(16));
                let mut at = next;
                for _ in 0..len {
                    let Some((item, end)) = parse_at(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = end;
                }
                (Reply::Array(Some(items)), at)
            }
        },
    };
    Ok(Some(parsed))
}

/// The line starting at `start`, without its CRLF, and where the next one
/// starts.
fn line_at(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf == 0 || window[lf - 1] != b'\r' => Err(ProtocolError::BareLf),
        Some(lf) => Ok(Some((&rest[..lf - 1], start + lf + 1))),
        None if rest.len() > MAX_LINE + 1 => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
}

/// A length header: `-1` is null, other negatives are errors.
fn parse_len(line: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match parse_int(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError::NegativeLength(n)),
        n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// A strict RESP integer: an optional `-`, then at least one digit, no sign
/// of `+`, no spaces, no overflow.
fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError::BadNumber(error_message(&line[..line.len().min(32)]));
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        let d = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(n)
}

/// Longest error message kept for the summary, in bytes.
const MAX_ERROR_MESSAGE: usize = 200;

/// An error reply's message for the summary: lossy UTF-8, cut to
/// [`MAX_ERROR_MESSAGE`] bytes.
pub(super) fn error_message(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(MAX_ERROR_MESSAGE)];
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Reply<'_>, usize) {
        parse_reply(input)
            .expect("valid reply")
            .expect("complete reply")
    }

    #[test]
    fn parses_each_reply_type() {
        assert_eq!(parse_all(b"+OK\r\n"), (Reply::Simple(b"OK"), 5));
        assert_eq!(
            parse_all(b"-ERR quorum not reached\r\n"),
            (Reply::Error(b"ERR quorum not reached"), 25)
        );
        assert_eq!(parse_all(b":-42\r\n"), (Reply::Integer(-42), 6));
        assert_eq!(parse_all(b"$3\r\nbar\r\n"), (Reply::Bulk(Some(b"bar")), 9));
        assert_eq!(parse_all(b"$0\r\n\r\n"), (Reply::Bulk(Some(b"")), 6));
        assert_eq!(parse_all(b"$-1\r\n"), (Reply::Bulk(None), 5));
        assert_eq!(parse_all(b"*-1\r\n"), (Reply::Array(None), 5));
        assert_eq!(parse_all(b"*0\r\n"), (Reply::Array(Some(vec![])), 4));
        assert_eq!(
            parse_all(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            (
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(None),
                    Reply::Array(Some(vec![Reply::Simple(b"x")])),
                ])),
                21
            )
        );
    }

    #[test]
    fn bulk_strings_are_binary_safe() {
        let (reply, used) = parse_all(b"$6\r\na\r\n\0\xffb\r\n+next\r\n");
        assert_eq!(reply, Reply::Bulk(Some(b"a\r\n\0\xffb")));
        assert_eq!(used, 12);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let whole: &[u8] = b"*4\r\n+OK\r\n-ERR x\r\n$5\r\nhello\r\n*2\r\n:7\r\n$-1\r\n";
        for cut in 0..whole.len() {
            assert_eq!(
                parse_reply(&whole[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        assert_eq!(parse_all(whole).1, whole.len());
    }

    #[test]
    fn rejects_malformed_replies() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"?what\r\n", UnknownType(b'?')),
            (b"%1\r\n", UnknownType(b'%')),
            (b":12a\r\n", BadNumber("12a".into())),
            (b":\r\n", BadNumber(String::new())),
            (b":-\r\n", BadNumber("-".into())),
            (b":+5\r\n", BadNumber("+5".into())),
            (
                b":99999999999999999999\r\n",
                BadNumber("99999999999999999999".into()),
            ),
            (b"$-2\r\n", NegativeLength(-2)),
            (b"*-5\r\n", NegativeLength(-5)),
            (b"$536870913\r\n", BulkTooLarge(536_870_913)),
            (b"*67108865\r\n", ArrayTooLarge(67_108_865)),
            (b"$3\r\nbarXY", MissingCrlf),
            (b"+OK\n", BareLf),
            (b"\n", UnknownType(b'\n')),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_reply(input).as_ref(),
                Err(expected),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extreme_integers_parse() {
        assert_eq!(
            parse_all(b":-9223372036854775808\r\n").0,
            Reply::Integer(i64::MIN)
        );
        assert_eq!(
            parse_all(b":9223372036854775807\r\n").0,
            Reply::Integer(i64::MAX)
        );
    }

    #[test]
    fn a_bulk_at_the_limit_waits_for_its_bytes() {
        // The header alone is accepted; the parser waits for the payload
        // without reserving it.
        assert_eq!(parse_reply(b"$536870912\r\nabc"), Ok(None));
    }

    #[test]
    fn lines_are_bounded() {
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 2));
        assert_eq!(parse_reply(&long), Err(ProtocolError::LineTooLong));
        // Up to the limit, the line is just not complete yet.
        assert_eq!(parse_reply(&long[..MAX_LINE + 1]), Ok(None));
        let mut at_limit = long[..MAX_LINE + 1].to_vec();
        at_limit.extend_from_slice(b"\r\n");
        assert!(matches!(parse_all(&at_limit).0, Reply::Simple(s) if s.len() == MAX_LINE));
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut v = b"*1\r\n".repeat(depth);
            v.extend_from_slice(b":1\r\n");
            v
        };
        assert!(parse_reply(&nested(MAX_DEPTH)).unwrap().is_some());
        assert_eq!(
            parse_reply(&nested(MAX_DEPTH + 1)),
            Err(ProtocolError::TooDeep)
        );
    }
}
