//! Key patterns as Redis matches them (`~pattern` in an ACL): `*` any
//! run of bytes, `?` one byte, `[abc]`, `[a-z]`, `[^...]` a class, `\x`
//! the byte `x`. Case-sensitive, as keys are.
//!
//! A pattern is compiled once, when the ACL is loaded, and matched in
//! O(pattern × key) steps at most: a `*` only ever backtracks to the
//! last `*` seen, never to earlier ones, so a hostile pattern such as
//! `*a*a*a*a*b` cannot make a key lookup exponential (Redis's own matcher
//! recurses per `*` and needed a "skip longer" guard for that).
//!
//! # Examples
//!
//! ```
//! use gridkv_server::auth::Glob;
//!
//! let p = Glob::new(b"cache:[a-c]?:*").unwrap();
//! assert!(p.matches(b"cache:b1:anything"));
//! assert!(!p.matches(b"cache:d1:x"));
//! assert!(Glob::new(b"\\*").unwrap().matches(b"*"));
//! ```

/// Longest pattern accepted, in bytes: enough for any prefix a cache
/// needs, and it bounds the match's cost per key.
pub const MAX_PATTERN: usize = 1024;

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One byte, exactly.
    Byte(u8),
    /// `?`: any one byte.
    Any,
    /// `*`: any run of bytes (consecutive stars are one).
    Star,
    /// `[...]`: one byte in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Token {
    fn accepts(&self, byte: u8) -> bool {
        match self {
            Token::Byte(b) => *b == byte,
            Token::Any => true,
            Token::Star => unreachable!("a star is matched by the caller"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&byte)) != *negated
            }
        }
    }
}

/// A compiled key pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: Vec<u8>,
    tokens: Vec<Token>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Longer than [`MAX_PATTERN`].
    #[error("pattern is {0} bytes, the most is {MAX_PATTERN}")]
    TooLong(usize),
}

impl Glob {
    /// Compiles `pattern`. As in Redis, an unclosed `[` runs to the end of
    /// the pattern, a trailing `\` is a literal backslash, and a range
    /// written backwards (`[z-a]`) means the same as forwards.
    ///
    /// # Errors
    ///
    /// [`GlobError::TooLong`] past [`MAX_PATTERN`] bytes.
    pub fn new(pattern: &[u8]) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN {
            return Err(GlobError::TooLong(pattern.len()));
        }
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let c = pattern[i];
            i += 1;
            match c {
                b'*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                b'?' => tokens.push(Token::Any),
                b'\\' if i < pattern.len() => {
                    tokens.push(Token::Byte(pattern[i]));
                    i += 1;
                }
                b'[' => {
                    let negated = pattern.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    while i < pattern.len() && pattern[i] != b']' {
                        let mut lo = pattern[i];
                        if lo == b'\\' && i + 1 < pattern.len() {
                            i += 1;
                            lo = pattern[i];
                            ranges.push((lo, lo));
                            i += 1;
                        } else if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() {
                            let hi = pattern[i + 2];
                            ranges.push((lo.min(hi), lo.max(hi)));
                            i += 3;
                        } else {
                            ranges.push((lo, lo));
                            i += 1;
                        }
                    }
                    // Past the `]` (or the end of an unclosed class).
                    i += 1;
                    tokens.push(Token::Class { negated, ranges });
                }
                other => tokens.push(Token::Byte(other)),
            }
        }
        Ok(Glob {
            source: pattern.to_vec(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.source
    }

    /// Whether the pattern is `*` alone (every key).
    pub fn is_all(&self) -> bool {
        self.tokens == [Token::Star]
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &[u8]) -> bool {
        let tokens = &self.tokens;
        let (mut t, mut k) = (0, 0);
        // The token after the last star seen, and the key position that
        // star's run currently ends at: on a mismatch the run grows by one.
        let mut star: Option<(usize, usize)> = None;
        while k < key.len() {
            match tokens.get(t) {
                Some(Token::Star) => {
                    t += 1;
                    star = Some((t, k));
                }
                Some(token) if token.accepts(key[k]) => {
                    t += 1;
                    k += 1;
                }
                _ => match star {
                    Some((after, end)) => {
                        t = after;
                        k = end + 1;
                        star = Some((after, end + 1));
                    }
                    None => return false,
                },
            }
        }
        tokens[t..].iter().all(|token| *token == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        Glob::new(pattern.as_bytes())
            .unwrap()
            .matches(key.as_bytes())
    }

    /// Redis's matcher, written the direct recursive way (exponential, so
    /// only for short inputs), as the reference.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => (0..=s.len()).any(|i| reference(&p[1..], &s[i..])),
            Some(_) if s.is_empty() => false,
            Some(b'?') => reference(&p[1..], &s[1..]),
            Some(b'\\') if p.len() >= 2 => p[1] == s[0] && reference(&p[2..], &s[1..]),
            Some(b'[') => {
                let mut i = 1;
                let negated = p.get(1) == Some(&b'^');
                if negated {
                    i += 1;
                }
                let mut hit = false;
                while i < p.len() && p[i] != b']' {
                    if p[i] == b'\\' && i + 1 < p.len() {
                        hit |= p[i + 1] == s[0];
                        i += 2;
                    } else if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() {
                        let (a, b) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                        hit |= (a..=b).contains(&s[0]);
                        i += 3;
                    } else {
                        hit |= p[i] == s[0];
                        i += 1;
                    }
                }
                let rest = if i < p.len() {
                    &p[i + 1..]
                } else {
                    &p[p.len()..]
                };
                hit != negated && reference(rest, &s[1..])
            }
            Some(&c) => c == s[0] && reference(&p[1..], &s[1..]),
        }
    }

    #[test]
    fn redis_glob_forms() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("user:*", "user:1"));
        assert!(!m("user:*", "users:1"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("h[b-a]llo", "hallo"), "a backwards range");
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("a\\", "a\\"), "a trailing backslash is literal");
        assert!(m("[abc", "b"), "an unclosed class runs to the end");
        assert!(m("[\\]]", "]"));
        assert!(!m("Key", "key"), "case-sensitive");
        assert!(m("a*b*c", "aXXbYYc") && !m("a*b*c", "aXXbYY"));
        assert!(Glob::new(b"*").unwrap().is_all());
        assert!(Glob::new(b"**").unwrap().is_all());
        assert!(!Glob::new(b"a*").unwrap().is_all());
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        // Exponential for a naive matcher: 2^40 steps.
        let pattern = format!("{}b", "*a".repeat(40));
        let key = "a".repeat(4000);
        assert!(!m(&pattern, &key));
    }

    #[test]
    fn too_long_is_refused() {
        assert_eq!(
            Glob::new(&[b'a'; MAX_PATTERN + 1]),
            Err(GlobError::TooLong(MAX_PATTERN + 1))
        );
    }

    #[test]
    fn agrees_with_the_reference_on_random_inputs() {
        // Seeded so a failure replays; the seed is printed.
        use rand::{Rng, SeedableRng};
        let seed: u64 = 0x5eed_0016;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let alphabet = b"ab*?[]^-\\";
        for round in 0..20_000 {
            let p: Vec<u8> = (0..rng.random_range(0..8))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let s: Vec<u8> = (0..rng.random_range(0..7))
                .map(|_| b"ab]-"[rng.random_range(0..4)])
                .collect();
            let got = Glob::new(&p).unwrap().matches(&s);
            assert_eq!(
                got,
                reference(&p, &s),
                "seed {seed:#x} round {round}: pattern {:?} key {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&s)
            );
        }
    }
}
