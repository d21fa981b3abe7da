//! The UDP listener: one thread per SO_REUSEPORT socket, blocked in the kernel until a query
//! arrives, answering blocked and cached names without touching the async runtime. Only queries
//! that need upstream become tasks. At low and middling rates this saves the readiness
//! round trips an event loop pays per packet; at high rates the kernel spreads the sockets'
//! queries over the cores.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::handler::{Handler, Step};
use crate::identity::{Client, Transport};

/// The UDP threads of a server, and how to end them: a thread sleeps in `recvfrom` with no
/// timeout (a timeout would arm a kernel timer on every wait), so stopping shuts each socket's
/// receive side, which wakes its thread at once.
#[derive(Default)]
pub struct UdpThreads {
    stop: Arc<AtomicBool>,
    running: Mutex<Vec<(Arc<UdpSocket>, JoinHandle<()>)>>,
}

impl UdpThreads {
    /// Serves `socket` on a thread of its own until [`UdpThreads::stop`].
    pub fn spawn(
        &self,
        socket: UdpSocket,
        handler: Arc<Handler>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<()> {
        socket.set_nonblocking(false)?;
        let socket = Arc::new(socket);
        let (served, stop) = (socket.clone(), self.stop.clone());
        let thread = std::thread::Builder::new()
            .name("cordon-udp".into())
            .spawn(move || serve(served, handler, runtime, stop))?;
        self.lock().push((socket, thread));
        Ok(())
    }

    /// Ends every thread and waits for it, so that the ports are free when this returns.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for (socket, thread) in std::mem::take(&mut *self.lock()) {
            wake(&socket);
            let _ = thread.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Arc<UdpSocket>, JoinHandle<()>)>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropped, the threads end: also when a server fails to start after some were spawned.
impl Drop for UdpThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Shuts the receive side: on Linux this wakes a thread blocked in `recvfrom` on an unconnected
/// UDP socket, which then reads nothing (the call itself reports ENOTCONN, which is expected).
/// An empty datagram to the socket's own address follows, should a kernel not wake it.
fn wake(socket: &UdpSocket) {
    // SAFETY: the descriptor stays open while we hold the socket; shutdown touches no memory.
    unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RD) };
    if let Ok(mut own) = socket.local_addr() {
        if own.ip().is_unspecified() {
            own.set_ip(match own {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = socket.send_to(&[], own);
    }
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
        let Some((n, peer)) = receive(&socket, &mut buf) else {
            // Errors a peer's ICMP can cause, and the wake-up from `stop`: look again.
            continue;
        };
        let client = Client {
            addr: peer.ip(),
            port: peer.port(),
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
                // Weak: a stopped server's socket closes now, not when its last upstream
                // exchange ends; that answer then goes nowhere, as the server has stopped.
                let (socket, handler) = (Arc::downgrade(&socket), handler.clone());
                let miss = async move {
                    let mut out = Vec::new();
                    if handler.answer_later(pending, &mut out).await {
                        if let Some(socket) = socket.upgrade() {
                            send(&socket, &out, peer);
                        }
                    }
                };
                // Sending the upstream query from here spares a worker's wake-up; a panic in
                // it costs this answer, as one in `answer_now` does.
                let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    super::first_poll::start_here(&runtime, miss)
                }));
                if started.is_err() {
                    tracing::error!(
                        "forwarding a query from {peer} panicked; the listener carries on"
                    );
                }
            }
        }
    }
}

/// One datagram and its sender; `None` on an error, and on the wake-up from `stop`: after
/// `shutdown`, `recvfrom` returns no address at all, on which std's `recv_from` panics.
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    let sock = socket2::SockRef::from(socket);
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `recv_from` only writes bytes into
    // the buffer, so the initialised buffer stays initialised.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    let (n, from) = sock.recv_from(uninit).ok()?;
    Some((n, from.as_socket()?))
}

/// A datagram send does not wait on a peer; only a full send buffer could block it, briefly.
fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(out, peer) {
        tracing::debug!("udp send to {peer}: {e}");
    }
}
