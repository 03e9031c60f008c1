//! Random and mutated byte streams through the whole receive path: frame
//! decoder, then envelope decoder (and the handshake decoders), fed in
//! random chunk sizes. Nothing panics, nothing allocates beyond the frame
//! limit, and an unmutated stream decodes to exactly what was sent.
//!
//! 100 000 cases by default (small frames, so a few seconds);
//! `PROPTEST_CASES` scales it.

use bytes::{Bytes, BytesMut};
use gridkv::net::envelope::{Envelope, ErrorCode, Lane};
use gridkv::net::frame::{FrameDecoder, encode_frame};
use gridkv::net::handshake::{Hello, HelloReply};
use proptest::prelude::*;

#[path = "common/certs.rs"]
mod certs;

const LIMIT: usize = 256;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000)
}

fn lane() -> impl Strategy<Value = Lane> {
    prop_oneof![Just(Lane::Control), Just(Lane::Data)]
}

fn body() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn envelope() -> impl Strategy<Value = Envelope> {
    prop_oneof![
        (lane(), any::<u64>(), body()).prop_map(|(lane, id, body)| Envelope::Request {
            lane,
            id,
            body
        }),
        (lane(), any::<u64>(), body()).prop_map(|(lane, id, body)| Envelope::Response {
            lane,
            id,
            body
        }),
        (lane(), any::<u64>(), any::<u16>()).prop_map(|(lane, id, code)| Envelope::Error {
            lane,
            id,
            code: ErrorCode::from_wire(code)
        }),
        (lane(), body()).prop_map(|(lane, body)| Envelope::OneWay { lane, body }),
        any::<u64>().prop_map(|token| Envelope::Ping { token }),
        any::<u64>().prop_map(|token| Envelope::Pong { token }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn apply(stream: &mut Vec<u8>, mutation: &Mutation) {
    if stream.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, bits } => {
            let at = at % stream.len();
            stream[at] ^= bits;
        }
        Mutation::Truncate { at } => stream.truncate(at % stream.len()),
        Mutation::Insert { at, bytes } => {
            let at = at % (stream.len() + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
    }
}

/// Feeds `stream` in chunks as a connection's reader would; returns the
/// envelopes decoded before the first error (which closes the connection).
fn receive(stream: &[u8], chunks: &[usize]) -> (Vec<Envelope>, bool) {
    let decoder = FrameDecoder::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    let mut chunk = chunks.iter().cycle();
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty() && frame.len() <= LIMIT);
                    match Envelope::decode(frame) {
                        Ok(envelope) => out.push(envelope),
                        Err(_) => return (out, true),
                    }
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        // Never more buffered than one frame plus one chunk.
        assert!(buf.len() <= 4 + LIMIT + 64, "buffered {}", buf.len());
        if rest.is_empty() {
            return (out, false);
        }
        let n = (*chunk.next().unwrap()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn streams_decode_to_what_was_sent_and_mutations_never_panic(
        envelopes in proptest::collection::vec(envelope(), 0..6),
        mutations in proptest::collection::vec(mutation(), 0..3),
        chunks in proptest::collection::vec(1usize..64, 1..4),
    ) {
        let mut stream = BytesMut::new();
        for envelope in &envelopes {
            let mut payload = BytesMut::new();
            envelope.encode(&mut payload);
            encode_frame(&payload, LIMIT, &mut stream).unwrap();
        }
        let mut bytes = stream.to_vec();
        let (decoded, failed) = receive(&bytes, &chunks);
        prop_assert!(!failed);
        prop_assert_eq!(&decoded, &envelopes);

        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        // Whatever the mutation, the receive path ends cleanly (some
        // envelopes, then perhaps an error), and handshake decoders too.
        let _ = receive(&bytes, &chunks);
        let _ = Hello::decode(&bytes);
        let _ = HelloReply::decode(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
        chunks in proptest::collection::vec(1usize..64, 1..4),
    ) {
        let _ = receive(&bytes, &chunks);
        let _ = Hello::decode(&bytes);
        let _ = HelloReply::decode(&bytes);
        let _ = gridkv::membership::wire::Packet::decode(&bytes);
    }

    /// Membership packets: a valid packet with bytes flipped, cut or
    /// inserted decodes to an error or to some packet, never a panic, and
    /// an intact one round-trips.
    #[test]
    fn membership_packets_round_trip_and_mutations_never_panic(
        seq in any::<u64>(),
        incarnation in any::<u64>(),
        n in 0usize..6,
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        use gridkv::membership::wire::{Message, Packet, Update};
        use gridkv::membership::{Identity, Member};
        use gridkv::{Generation, NodeId};
        let member = |i: usize| {
            let mut m = Member::new(Identity::new(
                NodeId::new(&format!("node-{i}")).unwrap(),
                Generation::new(i as u64),
                format!("10.0.0.{i}:7946"),
            ));
            m.incarnation = incarnation;
            Update::of(&m)
        };
        let packet = Packet {
            from: member(0),
            message: if n % 2 == 0 {
                Message::Ping { seq, target: NodeId::new("node-1").unwrap() }
            } else {
                Message::PushPull { members: (0..n).map(member).collect(), reply: true }
            },
            updates: (0..n).map(member).collect(),
            clock: gridkv::membership::wire::ClockReading { wall_ms: seq, hlc: n as u64 },
        };
        let mut bytes = packet.encode();
        prop_assert_eq!(Packet::decode(&bytes).unwrap(), packet);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let _ = Packet::decode(&bytes);
    }

    /// The refusal TLS added (an id certified, another claimed): valid ids
    /// round-trip, and the reply mutated decodes to an error or some
    /// reply, never a panic.
    #[test]
    fn identity_mismatch_refusals_round_trip_and_mutations_never_panic(
        certified in "[a-z0-9._-]{1,40}",
        claimed in "[a-z0-9._-]{1,40}",
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        use gridkv::NodeId;
        use gridkv::net::handshake::{IdMismatch, RefusalReason};
        let reply = HelloReply::Refused {
            reason: RefusalReason::IdentityMismatch(IdMismatch::boxed(
                NodeId::new(&certified).unwrap(),
                NodeId::new(&claimed).unwrap(),
            )),
        };
        let mut bytes = reply.encode().unwrap();
        prop_assert_eq!(HelloReply::decode(&bytes).unwrap(), reply);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let _ = HelloReply::decode(&bytes);
    }
}

/// A trust bundle and a node certificate (DER) it trusts, made once.
fn trusted_certificate() -> &'static (gridkv::net::tls::TlsStore, Vec<u8>) {
    static MADE: std::sync::OnceLock<(gridkv::net::tls::TlsStore, Vec<u8>)> =
        std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let ca = certs::Ca::new("fuzz CA");
        let (me, peer) = (ca.node("me"), ca.node("peer"));
        let store = gridkv::net::tls::TlsStore::from_pem(
            ca.pem.as_bytes(),
            me.cert.as_bytes(),
            me.key.as_bytes(),
        )
        .unwrap();
        let der = CertificateDer::from_pem_slice(peer.cert.as_bytes()).unwrap();
        (store, der.to_vec())
    })
}

proptest! {
    // Each case checks a signature: fewer cases than the decoders above.
    #![proptest_config(ProptestConfig::with_cases((cases() / 50).max(64)))]

    /// Peer certificates as membership checks them (signed claims carry
    /// them): a trusted one is accepted; one with bytes flipped, cut or
    /// inserted is refused (its signature no longer holds, or it no longer
    /// parses), never accepted and never a panic.
    #[test]
    fn mutated_certificates_are_refused_never_accepted(
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        use gridkv::membership::trust::Credentials;
        let (store, der) = trusted_certificate();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let certified = store.verify_certificate(der, now_ms).unwrap();
        prop_assert_eq!(certified.node_id.as_str(), "peer");
        let mut bytes = der.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if bytes != *der {
            let result = store.verify_certificate(&bytes, now_ms);
            prop_assert!(result.is_err(), "a mutated certificate was accepted");
        }
    }
}
