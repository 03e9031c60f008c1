//! What security costs and refuses: cluster TLS (certificate expiry,
//! reloads, refused handshakes), signed membership (refused claims), and
//! the front ends (authentication, ACL, admin token).

use super::{Prom, Snapshot};

/// Every security metric.
pub(super) fn render(p: &mut Prom, snapshot: &Snapshot) {
    cluster(p, snapshot);
    clients(p, snapshot);
}

/// Cluster side: TLS on or off, each certificate's time left, reloads, and
/// what signed membership refused.
fn cluster(p: &mut Prom, snapshot: &Snapshot) {
    p.one(
        "cluster_tls",
        "gauge",
        "1 when cluster traffic is mutual TLS, 0 when plaintext (loopback or --insecure).",
        u8::from(snapshot.tls.is_some()),
    );
    if let Some(tls) = &snapshot.tls {
        let now = std::time::SystemTime::now();
        p.family(
            "tls_certificate_expiry_seconds",
            "gauge",
            "Seconds until each loaded certificate expires (negative once expired): the node's own and each trusted CA.",
        );
        for cert in &tls.certificates {
            let subject = cert.subject.replace(['\\', '"', '\n'], "_");
            p.sample(
                "tls_certificate_expiry_seconds",
                &format!("kind=\"{}\",subject=\"{subject}\"", cert.kind.as_str()),
                (cert.days_left(now) * 86_400.0).round(),
            );
        }
        p.family(
            "tls_reloads_total",
            "counter",
            "Reloads of the cluster TLS files (SIGHUP or a change), by result; a failed one keeps the material in force.",
        );
        p.sample("tls_reloads_total", "result=\"ok\"", tls.reloads_ok);
        p.sample("tls_reloads_total", "result=\"failed\"", tls.reloads_failed);
    }
    let t = &snapshot.transport;
    p.one(
        "transport_tls_failures_total",
        "counter",
        "Cluster connections whose TLS handshake failed (plaintext peers, untrusted or expired certificates).",
        t.tls_failures,
    );
    p.one(
        "transport_identity_mismatches_total",
        "counter",
        "Cluster handshakes refused because the id claimed is not the one the peer's certificate names.",
        t.identity_mismatches,
    );
    let m = &snapshot.membership.security;
    p.family(
        "membership_claims_refused_total",
        "counter",
        "Membership claims refused by signed membership, by reason.",
    );
    for (reason, value) in [
        ("forged", m.forged),
        ("unverifiable", m.unverifiable),
        ("stale", m.stale),
        ("sender_mismatch", m.sender_mismatch),
        ("removal_without_majority", m.removals_refused),
    ] {
        p.sample(
            "membership_claims_refused_total",
            &format!("reason=\"{reason}\""),
            value,
        );
    }
    p.one(
        "membership_signatures_checked_total",
        "counter",
        "Membership signatures verified (each distinct claim once; relays hit the cache).",
        m.signatures_checked,
    );
}

/// Client side: authentication refusals, ACL reloads, failed TLS
/// handshakes and refused admin requests.
fn clients(p: &mut Prom, snapshot: &Snapshot) {
    let (st, auth) = (&snapshot.server, &snapshot.auth);
    p.one(
        "resp_auth_failures_total",
        "counter",
        "RESP AUTH and HELLO AUTH refused (wrong user or password, or user off).",
        auth.failures,
    );
    p.one(
        "resp_noauth_total",
        "counter",
        "RESP commands refused because the client was not authenticated (-NOAUTH).",
        auth.noauth,
    );
    p.family(
        "resp_acl_denied_total",
        "counter",
        "RESP commands refused by the ACL (-NOPERM), by what was denied.",
    );
    p.sample(
        "resp_acl_denied_total",
        "reason=\"command\"",
        auth.denied_commands,
    );
    p.sample("resp_acl_denied_total", "reason=\"key\"", auth.denied_keys);
    p.family(
        "acl_reloads_total",
        "counter",
        "ACL file reloads, by result (a failed one keeps the users in force).",
    );
    p.sample("acl_reloads_total", "result=\"ok\"", auth.reloads);
    p.sample(
        "acl_reloads_total",
        "result=\"failed\"",
        auth.reload_failures,
    );
    p.one(
        "resp_tls_handshake_failures_total",
        "counter",
        "RESP clients whose TLS handshake failed (--resp-tls).",
        st.tls_handshake_failures,
    );
    p.one(
        "http_tls_handshake_failures_total",
        "counter",
        "HTTP admin clients whose TLS handshake failed (--http-tls).",
        st.http_tls_handshake_failures,
    );
    p.one(
        "http_admin_refusals_total",
        "counter",
        "HTTP admin requests refused for a missing or wrong token (401) or no token set (403).",
        st.admin_refusals,
    );
}
