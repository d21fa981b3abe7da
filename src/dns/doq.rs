//! DNS over QUIC (RFC 9250): one query per bidirectional stream, its message id 0; the device's
//! token rides in the SNI's first label, as with DoT. Connections are held to the same tracker
//! as TCP, DoT and DoH: the caps, the handshake and idle timeouts.

use std::sync::Arc;

use super::handler::Handler;
use crate::conn::{Listener, Timeouts, Tracker};
use crate::identity::{Client, Token, Transport};
use crate::tls::sni_token;

/// RFC 9250 §8.4: DOQ_NO_ERROR, DOQ_PROTOCOL_ERROR.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x2;

pub async fn serve_doq(
    endpoint: quinn::Endpoint,
    server_name: Arc<str>,
    handler: Arc<Handler>,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (handler, server_name) = (handler.clone(), server_name.clone());
        // Past a cap, the idlest connection is shed: a new one is never refused.
        let conn = tracker.admit(Listener::Doq, incoming.remote_address().ip());
        tokio::spawn(async move {
            let Some(Ok(connection)) = conn
                .handshake(
                    timeouts.handshake,
                    std::future::IntoFuture::into_future(incoming),
                )
                .await
            else {
                return;
            };
            let sni = connection
                .handshake_data()
                .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|h| h.server_name);
            let client = Client {
                addr: connection.remote_address().ip(),
                port: connection.remote_address().port(),
                transport: Transport::Doq,
                token: sni_token(sni.as_deref(), &server_name)
                    .as_deref()
                    .and_then(Token::new),
            };
            let streams = async {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    let busy = conn.state.begin();
                    let (handler, connection) = (handler.clone(), connection.clone());
                    tokio::spawn(async move {
                        // A stream that never ends holds the connection busy no longer than
                        // the idle timeout.
                        let answered = answer_stream(send, recv, client, &handler);
                        if let Ok(false) = tokio::time::timeout(timeouts.idle, answered).await {
                            connection.close(PROTOCOL_ERROR.into(), b"protocol error");
                        }
                        drop(busy);
                    });
                }
            };
            tokio::select! {
                _ = streams => {}
                _ = conn.watch(timeouts) => {
                    connection.close(NO_ERROR.into(), b"");
                }
            }
        });
    }
}

/// Answers the one query of a stream. False on a protocol error (RFC 9250 §4.2: the message id
/// must be 0, and the stream holds exactly one length-prefixed message).
async fn answer_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    client: Client,
    handler: &Handler,
) -> bool {
    let Ok(framed) = recv.read_to_end(65537).await else {
        return false;
    };
    let Some((len, query)) = framed.split_first_chunk::<2>() else {
        return false;
    };
    if u16::from_be_bytes(*len) as usize != query.len() || query.get(..2) != Some(&[0, 0]) {
        return false;
    }
    let mut out = Vec::with_capacity(512);
    if !handler.answer(query, client, false, &mut out).await {
        return false;
    }
    let mut reply = Vec::with_capacity(out.len() + 2);
    reply.extend_from_slice(&(out.len() as u16).to_be_bytes());
    reply.extend_from_slice(&out);
    send.write_all(&reply).await.is_ok() && send.finish().is_ok()
}
