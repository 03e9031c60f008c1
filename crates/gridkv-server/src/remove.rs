//! `gridkv remove ID`: an operator removes one run of a member for good
//! (a node lost with its disk, a datacenter gone), signed with an operator
//! certificate (`gridkv cert operator`) so that every node can verify it,
//! and its HTTP side, `POST /remove` (guarded by the admin token).
//!
//! The command reads the target's generation from `GET /cluster` on the
//! node it talks to (unless `--generation` is given), signs the removal,
//! and posts it; the node verifies it, applies it and gossips it. With
//! `--print` it prints the signed removal (hex) instead, for
//! `curl --data-binary` (an HTTPS admin, or a node out of reach).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::shared::Shared;

/// The largest `POST /remove` body: a removal is one claim with one
/// certificate.
pub const MAX_BODY: usize = 16 * 1024;

/// `gridkv remove` arguments.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The node id to remove.
    pub id: String,
    /// The HTTP admin of any live node (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Speak HTTPS to an admin started with `--http-tls`, trusting the CAs
    /// in this PEM file (its certificate must name the host of `--http`).
    #[arg(long, env = "GRIDKV_ADMIN_CACERT")]
    pub cacert: Option<PathBuf>,
    /// The operator certificate (`gridkv cert operator`).
    #[arg(long, env = "GRIDKV_OPERATOR_CERT")]
    pub operator_cert: PathBuf,
    /// The operator's key.
    #[arg(long, env = "GRIDKV_OPERATOR_KEY")]
    pub operator_key: PathBuf,
    /// The admin token of that node (`--admin-token`).
    #[arg(long, env = "GRIDKV_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The cluster name (must match the nodes').
    #[arg(long, default_value = "gridkv", env = "GRIDKV_CLUSTER")]
    pub cluster: String,
    /// The run to remove; by default the one the node's `/cluster` lists.
    #[arg(long)]
    pub generation: Option<u64>,
    /// Print the signed removal (hex) instead of posting it.
    #[arg(long)]
    pub print: bool,
}

/// `POST /remove`: the body is a signed removal
/// ([`gridkv::Removal::encode`], raw bytes or hex).
pub async fn endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let bad = |status: StatusCode, why: String| (status, axum::Json(json!({ "error": why })));
    if body.len() > 2 * MAX_BODY {
        return bad(StatusCode::PAYLOAD_TOO_LARGE, "removal too large".into()).into_response();
    }
    let raw = match from_hex(body.trim_ascii()) {
        Some(raw) => raw,
        None => body.to_vec(),
    };
    let removal = match gridkv::Removal::decode(&raw) {
        Ok(r) => r,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (target, generation, operator) = (removal.target, removal.generation, removal.operator);
    match shared.node.remove_member(removal).await {
        Ok(()) => {
            tracing::warn!(%target, generation = generation.get(), %operator, "operator removed a member");
            axum::Json(json!({
                "removed": target.to_string(),
                "generation": generation.get(),
                "operator": operator.to_string(),
            }))
            .into_response()
        }
        Err(e @ gridkv::RemovalError::Unknown { .. }) => {
            bad(StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => bad(StatusCode::FORBIDDEN, e.to_string()).into_response(),
    }
}

fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `gridkv remove`.
///
/// # Errors
///
/// A message: unreadable operator files, no such member, a refusal from
/// the node.
pub async fn run(args: RemoveArgs) -> Result<(), String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let operator =
        gridkv::OperatorKey::from_pem(&read(&args.operator_cert)?, &read(&args.operator_key)?)
            .map_err(|e| format!("operator certificate: {e}"))?;
    let target = gridkv::NodeId::new(&args.id).map_err(|e| format!("id `{}`: {e}", args.id))?;
    let generation = match args.generation {
        Some(g) => g,
        None => {
            let (status, body) = http(&args, "GET", "/cluster", "").await?;
            if status != 200 {
                return Err(format!("GET /cluster on {}: {status} {body}", args.http));
            }
            let view: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("/cluster: {e}"))?;
            view["members"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["id"] == args.id.as_str()))
                .and_then(|m| m["generation"].as_u64())
                .ok_or_else(|| format!("{} lists no member {}", args.http, args.id))?
        }
    };
    let removal = gridkv::Removal::sign(
        &args.cluster,
        target,
        gridkv::Generation::new(generation),
        &operator,
    );
    let hex = to_hex(&removal.encode());
    if args.print {
        println!("{hex}");
        return Ok(());
    }
    let (status, body) = http(&args, "POST", "/remove", &hex).await?;
    if status != 200 {
        return Err(format!("POST /remove on {}: {status} {body}", args.http));
    }
    println!(
        "removed {} (generation {generation}) as operator {}",
        args.id,
        operator.name()
    );
    Ok(())
}

/// One HTTP/1.1 request, over TLS with `--cacert` (the admin answers
/// small JSON bodies).
async fn http(
    args: &RemoveArgs,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", args.http);
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(&args.http),
    )
    .await
    .map_err(|_| format!("{}: connect timed out", args.http))?
    .map_err(fail)?;
    let Some(ca) = &args.cacert else {
        return exchange(args, tcp, method, path, body).await;
    };
    let config = crate::tls::client_config(ca, &[b"http/1.1"]).map_err(|e| e.to_string())?;
    let host = args
        .http
        .rsplit_once(':')
        .map_or(args.http.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{}: {e}", args.http))?;
    let tls = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("{}: TLS handshake timed out", args.http))?
    .map_err(|e| format!("{}: TLS: {e}", args.http))?;
    exchange(args, tls, method, path, body).await
}

/// Sends one request on `stream` and reads the whole answer.
async fn exchange<S>(
    args: &RemoveArgs,
    mut stream: S,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let fail = |e: std::io::Error| format!("{}: {e}", args.http);
    let auth = args
        .admin_token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        args.http,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(fail)?;
    stream.flush().await.map_err(fail)?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        (&mut stream).take(1 << 22).read_to_end(&mut response),
    )
    .await
    .map_err(|_| format!("{}: no answer within 30 s", args.http))?;
    match read {
        // A TLS server may close without close_notify once it answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        other => {
            other.map_err(fail)?;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: not an HTTP answer", args.http))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(to_hex(&bytes).as_bytes()).unwrap(), bytes);
        assert!(from_hex(b"abc").is_none());
        assert!(from_hex(b"zz").is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
