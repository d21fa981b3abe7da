//! DNS over HTTPS (RFC 8484): GET `?dns=` and POST `application/dns-message`, on `/dns-query`
//! and `/dns-query/{token}`, over HTTP/2 and HTTP/1.1 with TLS. The token in the path names the
//! device (an MDM profile fills it in per device).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::Handler;
use super::wire;
use crate::conn::http::{serve, HttpListener};
use crate::conn::{Listener, Timeouts, Tracker};
use crate::identity::{Client, Token, Transport};

const DNS_MESSAGE: &str = "application/dns-message";
/// A DNS message is at most 65535 bytes; so is a DoH body.
const MAX_MESSAGE: usize = 65535;

/// Serves DoH on `listener` until the task is dropped, its connections under `tracker`'s caps.
pub async fn serve_doh(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
) {
    let app = Router::new()
        .route("/dns-query", get(doh_get).post(doh_post))
        .route(
            "/dns-query/{token}",
            get(doh_get_token).post(doh_post_token),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "DoH is served on /dns-query and /dns-query/{token}\n",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(handler);
    let listener = HttpListener {
        listener,
        tls: Some(acceptor),
        kind: Listener::Doh,
        tracker,
        timeouts,
        json_errors: None,
    };
    serve(listener, app).await;
}

/// The TLS client's address.
type Peer = SocketAddr;

async fn doh_get(
    State(h): State<Arc<Handler>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(q): Query<DnsParam>,
) -> Response {
    answer_get(&h, peer, None, q).await
}

async fn doh_get_token(
    State(h): State<Arc<Handler>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(token): Path<String>,
    Query(q): Query<DnsParam>,
) -> Response {
    answer_get(&h, peer, Some(token), q).await
}

async fn doh_post(
    State(h): State<Arc<Handler>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer_post(&h, peer, None, &headers, body).await
}

async fn doh_post_token(
    State(h): State<Arc<Handler>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer_post(&h, peer, Some(token), &headers, body).await
}

#[derive(serde::Deserialize)]
struct DnsParam {
    dns: Option<String>,
}

async fn answer_get(handler: &Handler, peer: Peer, token: Option<String>, q: DnsParam) -> Response {
    let Some(encoded) = q.dns else {
        return problem(
            StatusCode::BAD_REQUEST,
            "GET needs the query in ?dns= (base64url, RFC 8484)",
        );
    };
    match decode_get_param(&encoded) {
        Ok(query) if query.len() <= MAX_MESSAGE => answer(handler, peer, token, &query).await,
        Ok(_) => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the query is larger than a DNS message can be",
        ),
        Err(_) => problem(StatusCode::BAD_REQUEST, "?dns= is not base64url"),
    }
}

/// The query bytes in a GET's `?dns=`: base64url without padding (RFC 8484 §4.1), padding
/// tolerated.
pub fn decode_get_param(encoded: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('='))
}

async fn answer_post(
    handler: &Handler,
    peer: Peer,
    token: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(DNS_MESSAGE)
    {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST needs Content-Type: application/dns-message",
        );
    }
    match body {
        Ok(query) if query.is_empty() => problem(StatusCode::BAD_REQUEST, "empty body"),
        Ok(query) => answer(handler, peer, token, &query).await,
        Err(e) => problem(e.status(), &e.body_text()),
    }
}

async fn answer(handler: &Handler, peer: Peer, token: Option<String>, query: &[u8]) -> Response {
    let client = Client {
        addr: peer.ip(),
        port: peer.port(),
        transport: Transport::Doh,
        // A token that cannot name a device (too long, not ASCII) is presented as one that names
        // none, so that it is counted as unknown rather than ignored.
        token: token.map(|t| Token::new(&t).unwrap_or_else(Token::invalid)),
    };
    let mut out = Vec::with_capacity(512);
    if !handler.answer(query, client, false, &mut out).await {
        return problem(StatusCode::BAD_REQUEST, "the body is not a DNS query");
    }
    let max_age = wire::min_ttl(&out).unwrap_or(0);
    let headers = [
        (header::CONTENT_TYPE, DNS_MESSAGE.to_string()),
        (header::CACHE_CONTROL, format!("max-age={max_age}")),
    ];
    (headers, out).into_response()
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}
