//! Serving HTTP on raw connections under a [`Tracker`]: the TLS handshake (DoH) within its
//! timeout, HTTP/1 request heads within the header timeout, the idle and write timeouts, and
//! hyper's own answers to malformed requests rewritten as JSON errors (the API). The API is an
//! axum router ([`serve`]); DoH is a hyper service of its own ([`serve_with`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::IntCounterVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Closed, Conn, ConnState, Listener, Timeouts, Tracker};

/// An HTTP listener and what it is held to.
pub struct HttpListener {
    pub listener: TcpListener,
    /// TLS first (DoH), or plain HTTP (the API).
    pub tls: Option<TlsAcceptor>,
    pub kind: Listener,
    pub tracker: Arc<Tracker>,
    pub timeouts: Timeouts,
    /// Rewrite hyper's own answers to malformed requests (400, 414, 431, empty bodies) as
    /// `{"error": "..."}`, and count them here by status (`cordon_http_responses_total`).
    pub json_errors: Option<IntCounterVec>,
}

/// A service hyper can drive on one connection, on any of the runtime's threads.
pub trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = hyper::Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = hyper::Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// An answer's body, as hyper sends it.
pub trait AnswerBody:
    hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + 'static
{
}

impl<B> AnswerBody for B where
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static
{
}

/// Serves `router` on every connection of `l` until the task is dropped. Each request carries
/// `ConnectInfo<SocketAddr>`, the client's address.
pub async fn serve(l: HttpListener, router: Router) {
    serve_with(l, move |peer, state| RouterService {
        inner: TowerToHyperService::new(router.clone()),
        peer,
        state,
    })
    .await;
}

/// Serves on every connection of `l`, until the task is dropped, the service `make` gives for
/// the client's address and the connection's state (to mark it busy while an answer is made).
pub async fn serve_with<S, B, F>(l: HttpListener, make: F)
where
    F: Fn(SocketAddr, Arc<ConnState>) -> S,
    S: ConnService<B>,
    B: AnswerBody,
{
    loop {
        let (tcp, peer) = match l.listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("{} accept: {e}", l.kind.as_str());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn = l.tracker.admit(l.kind, peer.ip());
        let service = make(peer, conn.state.clone());
        let (tls, t) = (l.tls.clone(), l.timeouts);
        let json = l.json_errors.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let io = conn.track(tcp);
            match tls {
                Some(acceptor) => {
                    let Some(Ok(tls)) = conn.handshake(t.handshake, acceptor.accept(io)).await
                    else {
                        return;
                    };
                    connection(tls, service, &conn, t, json).await;
                }
                None => connection(io, service, &conn, t, json).await,
            }
        });
    }
}

async fn connection<I, S, B>(
    io: I,
    service: S,
    conn: &Conn,
    t: Timeouts,
    json: Option<IntCounterVec>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnService<B>,
    B: AnswerBody,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    let io = JsonErrors {
        io,
        active: json.is_some(),
        counted: json,
        pending: None,
    };
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                    conn.count(Closed::Header);
                }
            }
        }
        _ = conn.watch(t) => {}
    }
}

/// The router, with the client's address added to each request and the connection marked busy
/// until the answer is ready.
#[derive(Clone)]
struct RouterService {
    inner: TowerToHyperService<Router>,
    peer: SocketAddr,
    state: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for RouterService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let busy = self.state.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    }
}

/// hyper answers a request it cannot parse by itself, with an empty body; this puts the API's
/// JSON error in its place. Every answer of the API's own has a body, so only hyper's match.
struct JsonErrors<I> {
    io: I,
    active: bool,
    counted: Option<IntCounterVec>,
    /// The replacement being written, how much of it is written, and the length of hyper's
    /// answer to report once it is.
    pending: Option<(Vec<u8>, usize, usize)>,
}

/// The JSON answer in place of `written`, if `written` is hyper's answer to a malformed request.
fn json_in_place_of(written: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    let head = std::str::from_utf8(written).ok()?;
    let rest = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let (status, message) = match rest.get(..3)? {
        "400" => (
            "400 Bad Request",
            "malformed request: the request line or a header is not valid HTTP",
        ),
        "414" => ("414 URI Too Long", "the request target is too long"),
        "431" => (
            "431 Request Header Fields Too Large",
            "the request headers are too large",
        ),
        _ => return None,
    };
    let lower = head.to_ascii_lowercase();
    let no_body = lower.contains("content-length: 0\r\n") || !lower.contains("content-length:");
    if !head.ends_with("\r\n\r\n") || lower.contains("content-type:") || !no_body {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((&status[..3], answer.into_bytes()))
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonErrors<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for JsonErrors<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.active && this.pending.is_none() {
            if let Some((code, json)) = json_in_place_of(buf) {
                if let Some(counted) = &this.counted {
                    counted.with_label_values(&[code]).inc();
                }
                this.pending = Some((json, 0, buf.len()));
            }
        }
        let Some((json, at, reported)) = &mut this.pending else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        while *at < json.len() {
            match ready!(Pin::new(&mut this.io).poll_write(cx, &json[*at..])) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => *at += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let reported = *reported;
        this.pending = None;
        Poll::Ready(Ok(reported))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.active {
            // One buffer at a time, so that hyper's answer is seen whole.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        !self.active && self.io.is_write_vectored()
    }
}
