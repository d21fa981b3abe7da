//! The UDP listener: one thread per SO_REUSEPORT socket, blocked in the kernel until a query
//! arrives, answering blocked and cached names without touching the async runtime. Only queries
//! that need upstream become tasks. At low and middling rates this saves the readiness
//! round trips an event loop pays per packet; at high rates the kernel spreads the sockets'
//! queries over the cores.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::handler::{Handler, Step};
use crate::identity::{Client, Transport};

/// How often a waiting thread looks up to see whether the server is stopping.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Serves `socket` on a thread of its own until `stop` is set.
pub fn spawn(
    socket: UdpSocket,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(STOP_POLL))?;
    let socket = Arc::new(socket);
    std::thread::Builder::new()
        .name("cordon-udp".into())
        .spawn(move || serve(socket, handler, runtime, stop))?;
    Ok(())
}

fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            // Timeouts (to look at `stop`) and errors a peer's ICMP can cause: carry on.
            Err(_) => continue,
        };
        let client = Client {
            addr: peer.ip(),
            transport: Transport::Udp,
            token: None,
        };
        // A bug must cost one answer, not the socket: a dead thread would silently drop every
        // query the kernel hashes to this socket.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.answer_now(&buf[..n], client, true, &mut out)
        }));
        let Ok(step) = step else {
            tracing::error!("answering a query from {peer} panicked; the listener carries on");
            continue;
        };
        match step {
            Step::Reply => send(&socket, &out, peer),
            Step::Drop => {}
            Step::Later(pending) => {
                let (socket, handler) = (socket.clone(), handler.clone());
                runtime.spawn(async move {
                    let mut out = Vec::new();
                    if handler.answer_later(pending, &mut out).await {
                        send(&socket, &out, peer);
                    }
                });
            }
        }
    }
}

/// A datagram send does not wait on a peer; only a full send buffer could block it, briefly.
fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(out, peer) {
        tracing::debug!("udp send to {peer}: {e}");
    }
}
