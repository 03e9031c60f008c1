//! Replies: what a command answers, as one [`Reply`] value, and how that
//! value is written in the protocol the connection speaks.
//!
//! A connection starts in RESP2 and switches with `HELLO 3`, as Redis 6+
//! does. RESP3 has types RESP2 lacks; each one falls back to the RESP2
//! shape Redis itself uses, so a command builds its reply once and both
//! kinds of client read what they would read from Redis:
//!
//! | reply | RESP3 | RESP2 |
//! |---|---|---|
//! | [`Reply::Null`] | `_` | null bulk `$-1` |
//! | [`Reply::NullArray`] | `_` | null array `*-1` |
//! | [`Reply::Map`] | `%` | flat array of keys and values |
//! | [`Reply::Set`] | `~` | array |
//! | [`Reply::Double`] | `,` | bulk string |
//! | [`Reply::Boolean`] | `#t` / `#f` | integer 1 / 0 |
//! | [`Reply::Verbatim`] | `=` with format `txt` | bulk string |
//!
//! No command GridKV answers needs push frames (they carry pub/sub and
//! client-side caching invalidations), so there is no push reply.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use gridkv_server::resp::{Protocol, Reply};
//!
//! let reply = Reply::Array(vec![Reply::bulk("v"), Reply::Null, Reply::Integer(-2)]);
//! let mut out = BytesMut::new();
//! reply.encode(Protocol::Resp2, &mut out);
//! assert_eq!(&out[..], &b"*3\r\n$1\r\nv\r\n$-1\r\n:-2\r\n"[..]);
//! out.clear();
//! reply.encode(Protocol::Resp3, &mut out);
//! assert_eq!(&out[..], &b"*3\r\n$1\r\nv\r\n_\r\n:-2\r\n"[..]);
//! ```

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks: RESP2 until the client sends
/// `HELLO 3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, what every Redis client speaks.
    #[default]
    Resp2,
    /// RESP3 (Redis 6+), with maps, sets, nulls and the other typed replies.
    Resp3,
}

impl Protocol {
    /// Its number, as `HELLO` names it (2 or 3).
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply, encoded by [`Reply::encode`] for the connection's protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A simple string (`+OK`); CR and LF become spaces when written, as a
    /// simple string cannot hold them.
    Simple(Cow<'static, str>),
    /// An error; the message starts with its code (`ERR`, `NOQUORUM`, ...).
    /// CR and LF become spaces, as in [`Reply::Simple`].
    Error(String),
    /// An integer.
    Integer(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// No value (a missing key).
    Null,
    /// No array (an unknown command in `COMMAND INFO`).
    NullArray,
    /// An array.
    Array(Vec<Reply>),
    /// Keys and values.
    Map(Vec<(Reply, Reply)>),
    /// An unordered collection of distinct elements.
    Set(Vec<Reply>),
    /// A floating-point number.
    Double(f64),
    /// True or false.
    Boolean(bool),
    /// Text meant to be shown as is (`INFO`, `CLIENT INFO`): format `txt`.
    Verbatim(Bytes),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// An error reply; `msg` starts with its code.
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }

    /// A bulk string.
    pub fn bulk(value: impl Into<Bytes>) -> Reply {
        Reply::Bulk(value.into())
    }

    /// A bulk string, or [`Reply::Null`] for `None`.
    pub fn bulk_or_null(value: Option<Bytes>) -> Reply {
        value.map_or(Reply::Null, Reply::Bulk)
    }

    /// Whether this is an error reply (counted in `INFO`'s
    /// `total_error_replies`).
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the header of an array of `len` items (the same in RESP2
    /// and RESP3), for a reply written item by item.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use gridkv_server::resp::Reply;
    ///
    /// let mut out = BytesMut::new();
    /// Reply::encode_array_header(1, &mut out);
    /// Reply::encode_bulk(&Bytes::from_static(b"v"), &mut out);
    /// assert_eq!(&out[..], b"*1\r\n$1\r\nv\r\n");
    /// ```
    pub fn encode_array_header(len: usize, out: &mut BytesMut) {
        put_header(out, b'*', len as i64);
    }

    /// Appends one bulk string (the same in RESP2 and RESP3).
    pub fn encode_bulk(value: &[u8], out: &mut BytesMut) {
        put_bulk(out, b'$', &[value]);
    }

    /// Appends the `$len` line of a bulk string whose bytes and final CRLF
    /// the caller writes itself (a large value, written from where it is).
    pub fn encode_bulk_header(len: usize, out: &mut BytesMut) {
        put_header(out, b'$', len as i64);
    }

    /// Bytes of bulk strings inside the reply: about what it holds in
    /// memory beyond its shape.
    pub fn payload_len(&self) -> usize {
        match self {
            Reply::Bulk(v) | Reply::Verbatim(v) => v.len(),
            Reply::Array(items) | Reply::Set(items) => items.iter().map(Reply::payload_len).sum(),
            Reply::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| k.payload_len() + v.payload_len())
                .sum(),
            _ => 0,
        }
    }

    /// Appends the reply to `out` in `protocol`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(s) => {
                out.put_u8(b'+');
                put_line(out, s);
            }
            Reply::Error(msg) => {
                out.put_u8(b'-');
                put_line(out, msg);
            }
            Reply::Integer(n) => put_header(out, b':', *n),
            Reply::Bulk(v) => put_bulk(out, b'$', &[v]),
            Reply::Null if resp3 => out.put_slice(b"_\r\n"),
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                put_header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', pairs.len() as i64);
                } else {
                    put_header(out, b'*', pairs.len() as i64 * 2);
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Reply::Set(items) => {
                put_header(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Double(d) => {
                let text = double_text(*d);
                if resp3 {
                    out.put_u8(b',');
                    put_line(out, &text);
                } else {
                    put_bulk(out, b'$', &[text.as_bytes()]);
                }
            }
            Reply::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Boolean(b) => put_header(out, b':', i64::from(*b)),
            Reply::Verbatim(text) if resp3 => put_bulk(out, b'=', &[b"txt:", text]),
            Reply::Verbatim(text) => put_bulk(out, b'$', &[text]),
        }
    }
}

/// A double as Redis writes it: `inf`, `-inf`, `nan`, else the shortest
/// text that reads back as the same number.
fn double_text(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        d.to_string()
    }
}

/// A `prefix`, a decimal and CRLF: an integer, or an aggregate's length.
fn put_header(out: &mut BytesMut, prefix: u8, n: i64) {
    out.put_u8(prefix);
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// A length-prefixed string made of `parts` (a verbatim string's format
/// and its text are two parts).
fn put_bulk(out: &mut BytesMut, prefix: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + 16);
    put_header(out, prefix, len as i64);
    for part in parts {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

fn put_line(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 2);
    for &b in s.as_bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(reply: &Reply) -> (String, String) {
        let text = |p| {
            let mut out = BytesMut::new();
            reply.encode(p, &mut out);
            String::from_utf8(out.to_vec()).unwrap()
        };
        (text(Protocol::Resp2), text(Protocol::Resp3))
    }

    #[test]
    fn decimals_encode_like_itoa() {
        for n in [0i64, 7, -7, 10, 1234567890, i64::MIN, i64::MAX] {
            assert_eq!(both(&Reply::Integer(n)).0, format!(":{n}\r\n"));
        }
    }

    #[test]
    fn replies_cannot_break_framing() {
        assert_eq!(both(&Reply::error("ERR bad\r\nkey")).0, "-ERR bad  key\r\n");
        assert_eq!(both(&Reply::Simple("a\nb".into())).1, "+a b\r\n");
    }

    #[test]
    fn scalars_are_the_same_in_both() {
        for (reply, want) in [
            (Reply::ok(), "+OK\r\n"),
            (Reply::error("ERR no"), "-ERR no\r\n"),
            (Reply::Integer(-2), ":-2\r\n"),
            (Reply::bulk("v"), "$1\r\nv\r\n"),
            (Reply::bulk(""), "$0\r\n\r\n"),
        ] {
            assert_eq!(both(&reply), (want.to_owned(), want.to_owned()));
        }
    }

    #[test]
    fn resp3_types_fall_back_to_redis_resp2_shapes() {
        let cases = [
            (Reply::Null, "$-1\r\n", "_\r\n"),
            (Reply::NullArray, "*-1\r\n", "_\r\n"),
            (
                Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))]),
                "*2\r\n$1\r\nk\r\n:1\r\n",
                "%1\r\n$1\r\nk\r\n:1\r\n",
            ),
            (
                Reply::Set(vec![Reply::Simple("fast".into())]),
                "*1\r\n+fast\r\n",
                "~1\r\n+fast\r\n",
            ),
            (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (Reply::Double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n"),
            (Reply::Double(f64::NAN), "$3\r\nnan\r\n", ",nan\r\n"),
            (Reply::Boolean(true), ":1\r\n", "#t\r\n"),
            (Reply::Boolean(false), ":0\r\n", "#f\r\n"),
            (
                Reply::Verbatim(Bytes::from_static(b"a:1\r\n")),
                "$5\r\na:1\r\n\r\n",
                "=9\r\ntxt:a:1\r\n\r\n",
            ),
        ];
        for (reply, resp2, resp3) in cases {
            assert_eq!(
                both(&reply),
                (resp2.to_owned(), resp3.to_owned()),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn nested_aggregates_encode_depth_first() {
        let reply = Reply::Array(vec![
            Reply::Map(vec![(Reply::bulk("a"), Reply::Null)]),
            Reply::Array(vec![]),
        ]);
        assert_eq!(
            both(&reply),
            (
                "*2\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n".to_owned(),
                "*2\r\n%1\r\n$1\r\na\r\n_\r\n*0\r\n".to_owned()
            )
        );
    }
}
