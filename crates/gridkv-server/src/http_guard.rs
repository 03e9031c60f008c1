//! Who may use the HTTP admin (`--admin-token`).
//!
//! | endpoint | loopback listener | other listener |
//! |---|---|---|
//! | `GET /health`, `/live`, `/` | open | open |
//! | `GET /cluster`, `/metrics`, `/placement` (they reveal the members, their addresses and the load) | open | token |
//! | anything else: every method but `GET`/`HEAD`, or any other path | token if one is set, else open | token |
//!
//! "token": the request must carry `Authorization: Bearer TOKEN`, compared
//! in constant time; a missing or wrong one gets `401`. On a listener that
//! is not loopback with no `--admin-token` set, such requests get `403`:
//! there is no token anyone could send. Both come with a JSON body
//! `{"error": ...}` that says why, and are counted
//! (`gridkv_http_admin_refusals_total`).
//!
//! `/metrics` is guarded like `/cluster` rather than left open: its labels
//! name every peer's address, which is what `/cluster` protects.
//! Prometheus sends a bearer token with `authorization: { credentials_file:
//! ... }` in its scrape config.
//!
//! # Examples
//!
//! ```
//! use axum::http::{Method, StatusCode};
//! use gridkv_server::http_guard::{Access, access, decide};
//! use gridkv_server::shared::AdminToken;
//!
//! assert_eq!(access(&Method::GET, "/health"), Access::Open);
//! assert_eq!(access(&Method::GET, "/cluster"), Access::Reveals);
//! assert_eq!(access(&Method::POST, "/cluster"), Access::Changes);
//! let token = AdminToken::new("t");
//! assert!(decide(Access::Reveals, true, None, None).is_ok());
//! let refused = decide(Access::Reveals, false, Some(&token), Some("Bearer x")).unwrap_err();
//! assert_eq!(refused.0, StatusCode::UNAUTHORIZED);
//! assert!(decide(Access::Changes, false, Some(&token), Some("Bearer t")).is_ok());
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::shared::{AdminToken, Shared};

/// What a request may do, for [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Liveness and readiness: always answered.
    Open,
    /// Reads what an outsider should not see.
    Reveals,
    /// Anything else: may change state.
    Changes,
}

/// How `method path` is guarded.
pub fn access(method: &Method, path: &str) -> Access {
    if method != Method::GET && method != Method::HEAD {
        return Access::Changes;
    }
    match path {
        "/health" | "/live" | "/" => Access::Open,
        "/cluster" | "/metrics" | "/placement" => Access::Reveals,
        _ => Access::Changes,
    }
}

/// Whether a request of `access` is let through, on a listener that is
/// loopback or not, with the configured `token` and the request's
/// `Authorization` header; else the status and the reason.
///
/// # Errors
///
/// `401` for a missing or wrong token; `403` where no token is set and
/// one is needed.
pub fn decide(
    access: Access,
    loopback: bool,
    token: Option<&AdminToken>,
    authorization: Option<&str>,
) -> Result<(), (StatusCode, &'static str)> {
    let needs_token = match access {
        Access::Open => false,
        Access::Reveals => !loopback,
        Access::Changes => token.is_some() || !loopback,
    };
    if !needs_token {
        return Ok(());
    }
    let Some(token) = token else {
        return Err((
            StatusCode::FORBIDDEN,
            "this endpoint needs --admin-token when the HTTP admin is not bound to loopback, \
             and none is set",
        ));
    };
    let offered = authorization.and_then(|h| {
        let (scheme, value) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    });
    match offered {
        Some(value) if token.matches(value) => Ok(()),
        Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong admin token")),
        None => Err((
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the admin token: Authorization: Bearer <token>",
        )),
    }
}

/// The middleware: refuses what [`decide`] refuses.
pub async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let kind = access(request.method(), request.uri().path());
    // A router used without `serve_http` (no address known) is treated
    // as not loopback: the safe side.
    let loopback = shared.http_addr.get().is_some_and(|a| a.ip().is_loopback());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match decide(kind, loopback, shared.admin_token.as_ref(), authorization) {
        Ok(()) => next.run(request).await,
        Err((status, why)) => {
            shared.stats.admin_refusals.fetch_add(1, Relaxed);
            let body = axum::Json(json!({ "error": why }));
            if status == StatusCode::UNAUTHORIZED {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            } else {
                (status, body).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_of_the_module_docs() {
        let t = AdminToken::new("s3cret");
        let ok = Some("Bearer s3cret");
        let code = |r: Result<(), (StatusCode, &str)>| r.map_or_else(|e| e.0.as_u16(), |()| 200);
        for (access, loopback, token, header, want) in [
            (Access::Open, false, None, None, 200),
            (Access::Open, false, Some(&t), None, 200),
            (Access::Reveals, true, None, None, 200),
            (Access::Reveals, true, Some(&t), None, 200),
            (Access::Reveals, false, None, ok, 403),
            (Access::Reveals, false, Some(&t), None, 401),
            (Access::Reveals, false, Some(&t), Some("Bearer nope"), 401),
            (Access::Reveals, false, Some(&t), ok, 200),
            (Access::Changes, true, None, None, 200),
            (Access::Changes, true, Some(&t), None, 401),
            (Access::Changes, true, Some(&t), ok, 200),
            (Access::Changes, false, None, ok, 403),
            (
                Access::Changes,
                false,
                Some(&t),
                Some("bearer  s3cret "),
                200,
            ),
            (Access::Changes, false, Some(&t), Some("Basic s3cret"), 401),
            (Access::Changes, false, Some(&t), Some("s3cret"), 401),
        ] {
            assert_eq!(
                code(decide(access, loopback, token, header)),
                want,
                "{access:?} loopback={loopback} token={} header={header:?}",
                token.is_some()
            );
        }
    }

    #[test]
    fn what_each_request_is() {
        assert_eq!(access(&Method::HEAD, "/live"), Access::Open);
        assert_eq!(access(&Method::GET, "/metrics"), Access::Reveals);
        assert_eq!(access(&Method::GET, "/dashboard"), Access::Changes);
        assert_eq!(access(&Method::DELETE, "/health"), Access::Changes);
        assert_eq!(access(&Method::PUT, "/members/n2"), Access::Changes);
    }
}
