//! DNS over HTTPS (RFC 8484): GET `?dns=` and POST `application/dns-message`, on `/dns-query`
//! and `/dns-query/{token}`, over HTTP/2 and HTTP/1.1 with TLS. The token in the path names the
//! device (an MDM profile fills it in per device).
//!
//! A hyper service of its own, not a router: a DoH request is one of four shapes, and every
//! layer a router adds (path matching, extensions, extractors, a boxed future) is paid on each
//! query. A cached or blocked query is answered inside `call`, with no allocation but the
//! answer's, for a GET and for a POST whose body came with its headers; only a body still on
//! its way or an upstream exchange makes a future to wait on.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::{Handler, Step};
use super::wire;
use crate::conn::http::{serve_with, HttpListener};
use crate::conn::{ConnState, Listener, Timeouts, Tracker};
use crate::identity::{Client, Token, Transport};

const DNS_MESSAGE: &str = "application/dns-message";
/// A DNS message is at most 65535 bytes; so is a DoH body.
const MAX_MESSAGE: usize = 65535;
/// The DoH path; a token may follow it after a slash.
const PATH: &str = "/dns-query";

type Answer = Response<Full<Bytes>>;

/// Serves DoH on `listener` until the task is dropped, its connections under `tracker`'s caps.
pub async fn serve_doh(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
) {
    let listener = HttpListener {
        listener,
        tls: Some(acceptor),
        kind: Listener::Doh,
        tracker,
        timeouts,
        json_errors: None,
    };
    serve_with(listener, move |peer, state| Doh {
        handler: handler.clone(),
        peer,
        state,
    })
    .await;
}

/// One connection's DoH service.
#[derive(Clone)]
struct Doh {
    handler: Arc<Handler>,
    peer: SocketAddr,
    /// Marked busy while an answer waits for upstream, so the idle timeout spares it.
    state: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Doh {
    type Response = Answer;
    type Error = Infallible;
    type Future = Reply;

    fn call(&self, request: Request<Incoming>) -> Reply {
        let Some(token) = token_in(request.uri().path()) else {
            return Reply::now(problem(
                StatusCode::NOT_FOUND,
                "DoH is served on /dns-query and /dns-query/{token}",
            ));
        };
        let client = self.client(token);
        match *request.method() {
            Method::GET => self.get(client, request.uri().query()),
            Method::POST => {
                let (parts, body) = request.into_parts();
                self.post(client, &parts.headers, body)
            }
            _ => Reply::now(problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "DoH takes GET and POST",
            )),
        }
    }
}

impl Doh {
    fn client(&self, token: Option<Cow<'_, str>>) -> Client {
        Client {
            addr: self.peer.ip(),
            port: self.peer.port(),
            transport: Transport::Doh,
            // A token that cannot name a device (too long, not ASCII) is presented as one that
            // names none, so that it is counted as unknown rather than ignored.
            token: token.map(|t| Token::new(&t).unwrap_or_else(Token::invalid)),
        }
    }

    fn get(&self, client: Client, query: Option<&str>) -> Reply {
        let Some(encoded) = query.and_then(dns_param) else {
            return Reply::now(problem(
                StatusCode::BAD_REQUEST,
                "GET needs the query in ?dns= (base64url, RFC 8484)",
            ));
        };
        // A query fits here; a larger one is decoded into a vector of its own.
        let mut small = [0u8; 512];
        let encoded = encoded.trim_end_matches('=');
        let decoded = if encoded.len() / 4 * 3 + 2 <= small.len() {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode_slice(encoded, &mut small)
                .map(|n| Cow::Borrowed(&small[..n]))
                .map_err(|_| ())
        } else {
            decode_get_param(encoded).map(Cow::Owned).map_err(|_| ())
        };
        match decoded {
            Ok(query) if query.len() <= MAX_MESSAGE => self.answer(client, &query),
            Ok(_) => Reply::now(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the query is larger than a DNS message can be",
            )),
            Err(_) => Reply::now(problem(StatusCode::BAD_REQUEST, "?dns= is not base64url")),
        }
    }

    fn post<B>(&self, client: Client, headers: &HeaderMap, mut body: B) -> Reply
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case(DNS_MESSAGE) {
            return Reply::now(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST needs Content-Type: application/dns-message",
            ));
        }
        // Most clients send a query's one DATA frame with the headers: then it is here already.
        let first = match Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
            Poll::Ready(Some(Err(_))) => {
                return Reply::now(problem(
                    StatusCode::BAD_REQUEST,
                    "the body did not arrive whole",
                ));
            }
            Poll::Ready(None) => return Reply::now(problem(StatusCode::BAD_REQUEST, "empty body")),
            Poll::Pending => None,
        };
        if let Some(query) = first.as_ref().filter(|_| body.is_end_stream()) {
            return self.answer_body(client, query);
        }
        let this = self.clone();
        Reply::later(async move {
            let rest = Limited::new(body, MAX_MESSAGE).collect().await;
            match rest.map(|b| b.to_bytes()) {
                Ok(rest) => {
                    let query = match first {
                        Some(first) => [first, rest].concat().into(),
                        None => rest,
                    };
                    this.answer_body(client, &query).answered().await
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => too_large(),
                Err(_) => problem(StatusCode::BAD_REQUEST, "the body did not arrive whole"),
            }
        })
    }

    /// The answer to a POST's whole body.
    fn answer_body(&self, client: Client, query: &[u8]) -> Reply {
        match query.len() {
            0 => Reply::now(problem(StatusCode::BAD_REQUEST, "empty body")),
            n if n > MAX_MESSAGE => Reply::now(too_large()),
            _ => self.answer(client, query),
        }
    }

    /// The answer to `query`, at once when it is blocked or cached.
    fn answer(&self, client: Client, query: &[u8]) -> Reply {
        let mut out = Vec::with_capacity(512);
        match self.handler.answer_now(query, client, false, &mut out) {
            Step::Reply => Reply::now(dns_message(out)),
            Step::Drop => Reply::now(not_a_query()),
            Step::Later(pending) => {
                let (handler, busy) = (self.handler.clone(), self.state.begin());
                Reply::later(async move {
                    let answered = handler.answer_later(pending, &mut out).await;
                    drop(busy);
                    if answered {
                        dns_message(out)
                    } else {
                        not_a_query()
                    }
                })
            }
        }
    }
}

/// A request's answer: ready in `call`, or a future to wait on.
enum Reply {
    Now(Option<Answer>),
    Later(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

impl Reply {
    fn now(answer: Answer) -> Reply {
        Reply::Now(Some(answer))
    }

    fn later(answer: impl Future<Output = Answer> + Send + 'static) -> Reply {
        Reply::Later(Box::pin(answer))
    }

    /// The answer, from within another future (a POST's, whose body had to arrive first).
    async fn answered(self) -> Answer {
        match self {
            Reply::Now(answer) => answer.expect("answered once"),
            Reply::Later(answer) => answer.await,
        }
    }
}

impl Future for Reply {
    type Output = Result<Answer, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Now(answer) => Poll::Ready(Ok(answer.take().expect("polled once"))),
            Reply::Later(answer) => answer.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The device token a DoH path carries: `None` for a path that is not DoH's, `Some(None)` for
/// `/dns-query` itself, `Some(Some(token))` for `/dns-query/{token}` (percent-decoded).
pub fn token_in(path: &str) -> Option<Option<Cow<'_, str>>> {
    let rest = path.strip_prefix(PATH)?;
    if rest.is_empty() {
        return Some(None);
    }
    let token = rest
        .strip_prefix('/')
        .filter(|t| !t.is_empty() && !t.contains('/'))?;
    percent_decoded(token).map(Some)
}

/// `text` with its `%XX` escapes decoded; `None` when they do not make UTF-8.
fn percent_decoded(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The `dns` parameter of a query string, percent-decoded when it needs to be.
pub fn dns_param(query: &str) -> Option<Cow<'_, str>> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))?;
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "dns")
        .map(|(_, value)| Cow::Owned(value.into_owned()))
}

/// The query bytes in a GET's `?dns=`: base64url without padding (RFC 8484 §4.1), padding
/// tolerated.
pub fn decode_get_param(encoded: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('='))
}

/// `max-age=N` for the common lifetimes, made once: an answer's header is then a reference
/// count, not an allocation.
fn max_age(seconds: u32) -> HeaderValue {
    const KEPT: usize = 3601;
    static VALUES: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let values = VALUES.get_or_init(|| {
        (0..KEPT)
            .map(|s| HeaderValue::from_str(&format!("max-age={s}")).expect("ASCII"))
            .collect()
    });
    match values.get(seconds as usize) {
        Some(value) => value.clone(),
        None => HeaderValue::from_str(&format!("max-age={seconds}")).expect("ASCII"),
    }
}

fn dns_message(out: Vec<u8>) -> Answer {
    let age = max_age(wire::min_ttl(&out).unwrap_or(0));
    let mut answer = Response::new(Full::new(Bytes::from(out)));
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    headers.insert(header::CACHE_CONTROL, age);
    answer
}

fn too_large() -> Answer {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body is larger than a DNS message can be",
    )
}

fn not_a_query() -> Answer {
    problem(StatusCode::BAD_REQUEST, "the body is not a DNS query")
}

fn problem(status: StatusCode, message: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *answer.status_mut() = status;
    let text = HeaderValue::from_static("text/plain; charset=utf-8");
    answer.headers_mut().insert(header::CONTENT_TYPE, text);
    answer
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::conn::Tracker;
    use crate::dns::handler::isolating_handler;
    use crate::metrics::Metrics;

    /// A body that comes in pieces: the first at once, each other one after a `Pending`.
    struct Pieces {
        left: VecDeque<Bytes>,
        waited: bool,
    }

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            let first = self.left.len() == 3;
            if !first && !self.waited {
                self.waited = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.waited = false;
            Poll::Ready(
                self.left
                    .pop_front()
                    .map(|b| Ok(hyper::body::Frame::data(b))),
            )
        }

        fn is_end_stream(&self) -> bool {
            self.left.is_empty()
        }
    }

    /// `example.com A` from the isolated device, posted in `pieces` (of three).
    async fn posted(pieces: [&[u8]; 3]) -> Answer {
        let metrics = Metrics::new();
        let conn = Tracker::new(10, 10, &metrics).admit(Listener::Doh, [127, 0, 0, 45].into());
        let doh = Doh {
            handler: Arc::new(isolating_handler()),
            peer: "127.0.0.45:4443".parse().unwrap(),
            state: conn.state.clone(),
        };
        let client = doh.client(None);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
        let body = Pieces {
            left: pieces.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
            waited: false,
        };
        doh.post(client, &headers, body).answered().await
    }

    #[tokio::test]
    async fn a_post_body_read_in_pieces_is_answered_whole() {
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        for split in [[0, 0], [5, 20], [12, 12], [29, 29]] {
            let pieces = [
                &query[..split[0]],
                &query[split[0]..split[1]],
                &query[split[1]..],
            ];
            let answer = posted(pieces).await;
            assert_eq!(answer.status(), StatusCode::OK, "{split:?}");
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..2], b"\x12\x34", "{split:?}: the query's id");
            assert_eq!(
                body[3] & 0x0f,
                3,
                "{split:?}: NXDOMAIN for the isolated device"
            );
        }
    }

    #[test]
    fn paths_and_parameters_read_as_a_router_would() {
        assert_eq!(token_in("/dns-query"), Some(None));
        assert_eq!(token_in("/dns-query/C02ABC"), Some(Some("C02ABC".into())));
        assert_eq!(token_in("/dns-query/a%20b"), Some(Some("a b".into())));
        assert_eq!(token_in("/dns-query/"), None);
        assert_eq!(token_in("/dns-query/a/b"), None);
        assert_eq!(token_in("/dns-queryx"), None);
        assert_eq!(token_in("/other"), None);
        assert_eq!(token_in("/dns-query/%ff"), None, "not UTF-8");
        assert_eq!(dns_param("dns=AAAB"), Some("AAAB".into()));
        assert_eq!(dns_param("ct=x&dns=AAAB"), Some("AAAB".into()));
        assert_eq!(dns_param("dns=AAAB%3D%3D"), Some("AAAB==".into()));
        assert_eq!(dns_param("other=1"), None);
        assert_eq!(max_age(60), "max-age=60");
        assert_eq!(max_age(86_400), "max-age=86400");
    }
}
