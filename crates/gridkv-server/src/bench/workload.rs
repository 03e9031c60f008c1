//! What the bench sends: RESP commands for each operation, and the keys
//! each client draws from its own seeded generator.

use gridkv::rng::{SplitMix64, mix64};

/// A command the bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Set,
    Get,
}

/// Appends one command for key `key:<key>` as a RESP array of bulk strings.
/// `value` is the SET value already encoded as a bulk string.
pub(super) fn encode_command(out: &mut Vec<u8>, op: Op, key: u64, value: &[u8]) {
    match op {
        Op::Set => out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n"),
        Op::Get => out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n"),
    }
    let mut digits = [0u8; 20];
    let digits = decimal(key, &mut digits);
    out.push(b'$');
    out.extend_from_slice(decimal(
        (b"key:".len() + digits.len()) as u64,
        &mut [0u8; 20],
    ));
    out.extend_from_slice(b"\r\nkey:");
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    if op == Op::Set {
        out.extend_from_slice(value);
    }
}

/// Appends `data` as a RESP bulk string. Binary-safe: the length prefix, not
/// the content, says where it ends.
pub(super) fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(decimal(data.len() as u64, &mut [0u8; 20]));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Formats `n` in decimal into `buf`, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The key and command choice of one client: the library's seeded
/// generator, so that a `--seed` names the same key sequence whatever
/// version of a dependency the binary was built with.
#[derive(Debug, Clone)]
pub(super) struct KeyRng(SplitMix64);

impl KeyRng {
    /// The generator of client `index` under `seed`. The start is mixed,
    /// not offset: SplitMix64 streams whose states differ by a multiple of
    /// its increment are the same stream shifted.
    pub(super) fn for_client(seed: u64, index: usize) -> Self {
        KeyRng(SplitMix64::new(mix64(seed ^ mix64(index as u64 + 1))))
    }

    /// Uniform in `[0, n)` for `n > 0`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// True with probability `p` (0 never, 1 always).
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.0.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::reply::{Reply, parse_reply};

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut value = Vec::new();
        push_bulk(&mut value, b"v\r\n\0");
        let mut out = Vec::new();
        encode_command(&mut out, Op::Set, 1234, &value);
        encode_command(&mut out, Op::Get, 0, &value);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$8\r\nkey:1234\r\n$4\r\nv\r\n\0\r\n*2\r\n$3\r\nGET\r\n$5\r\nkey:0\r\n"
        );
        // What we send parses as RESP too.
        let (set, used) = parse_reply(&out).unwrap().unwrap();
        assert_eq!(
            set,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"SET")),
                Reply::Bulk(Some(b"key:1234")),
                Reply::Bulk(Some(b"v\r\n\0")),
            ]))
        );
        assert_eq!(
            parse_reply(&out[used..]).unwrap().unwrap().0,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"GET")),
                Reply::Bulk(Some(b"key:0"))
            ]))
        );
    }

    #[test]
    fn decimal_formats_like_display() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    // ---- key choice ----

    #[test]
    fn keys_stay_in_the_keyspace_and_cover_it() {
        let mut rng = KeyRng::for_client(7, 0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        // Uniform: each of 10 keys near 1000.
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        let mut one = KeyRng::for_client(7, 3);
        assert!((0..100).all(|_| one.below(1) == 0));
        let mut big = KeyRng::for_client(7, 3);
        assert!((0..1000).all(|_| big.below(u64::MAX) < u64::MAX));
    }

    #[test]
    fn a_seed_repeats_its_keys_and_clients_differ() {
        let draw = |seed, client| {
            let mut rng = KeyRng::for_client(seed, client);
            (0..32).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
        // Not one stream shifted by a step (the trap of offset seeds).
        assert_ne!(draw(1, 0)[1..], draw(1, 1)[..31]);
        assert_ne!(draw(1, 1)[1..], draw(1, 0)[..31]);
    }

    #[test]
    fn chance_follows_the_ratio() {
        let mut rng = KeyRng::for_client(3, 0);
        let hits = (0..100_000).filter(|_| rng.chance(0.9)).count();
        assert!((89_000..91_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| !rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
    }
}
