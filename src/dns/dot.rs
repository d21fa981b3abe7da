//! DNS over TLS (RFC 7858): the device's token rides in the SNI's first label
//! (`{token}.{dns.server_name}`), then the stream is served like plain TCP, pipelined.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::handler::Handler;
use super::server::{serve_stream, MAX_CONNECTIONS};
use crate::identity::{Client, Token, Transport};
use crate::tls::sni_token;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);

pub async fn serve_dot(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server_name: Arc<str>,
    handler: Arc<Handler>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // At most this many connections (handshaking or open); more wait in the backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("dot accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (acceptor, handler, server_name) =
            (acceptor.clone(), handler.clone(), server_name.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await else {
                return;
            };
            let token = sni_token(tls.get_ref().1.server_name(), &server_name);
            let client = Client {
                addr: peer.ip(),
                transport: Transport::Dot,
                token: token.as_deref().and_then(Token::new),
            };
            serve_stream(tls, client, handler).await;
            drop(permit);
        });
    }
}
