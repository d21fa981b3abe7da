//! DNS over TLS (RFC 7858): the device's token rides in the SNI's first label
//! (`{token}.{dns.server_name}`), then the stream is served like plain TCP, pipelined, under the
//! same connection tracker as TCP, DoH and DoQ.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::Handler;
use super::server::serve_stream;
use crate::conn::{Listener, Timeouts, Tracker};
use crate::identity::{Client, Token, Transport};
use crate::tls::sni_token;

pub async fn serve_dot(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server_name: Arc<str>,
    handler: Arc<Handler>,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("dot accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Handshaking connections count: past a cap, the idlest connection is shed.
        let conn = tracker.admit(Listener::Dot, peer.ip());
        let (acceptor, handler, server_name) =
            (acceptor.clone(), handler.clone(), server_name.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tcp = conn.track(tcp);
            let Some(Ok(tls)) = conn
                .handshake(timeouts.handshake, acceptor.accept(tcp))
                .await
            else {
                return;
            };
            let token = sni_token(tls.get_ref().1.server_name(), &server_name);
            let client = Client {
                addr: peer.ip(),
                port: peer.port(),
                transport: Transport::Dot,
                token: token.as_deref().and_then(Token::new),
            };
            serve_stream(tls, client, handler, &conn, timeouts).await;
        });
    }
}
