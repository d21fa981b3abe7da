//! Plain DNS listeners: UDP (one SO_REUSEPORT socket per core, see udp.rs) and TCP (RFC 7766:
//! several queries per connection, answered as they are ready). TCP and DoT connections are held
//! to the shared tracker's caps and to the idle and write timeouts (`[limits]`, conn.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::handler::{Handler, Step};
use super::udp::UdpThreads;
use crate::conn::{Conn, Listener, Timeouts, Tracker};
use crate::identity::{Client, Transport};

/// Queries of one connection answered at the same time; more wait to be read.
const MAX_PIPELINED: usize = 64;
/// Bytes of answers gathered into one write, at most (past it, the rest go in the next).
const MAX_BATCH: usize = 16 * 1024;

/// Binds UDP and TCP on `addr`: UDP on threads of its own (in `udp_threads`), TCP on `tasks`.
/// Returns the bound address (the real port when `addr` asked for port 0).
pub fn listen(
    addr: SocketAddr,
    udp_sockets: usize,
    handler: Arc<Handler>,
    tasks: &mut JoinSet<()>,
    udp_threads: &UdpThreads,
    streams: (Arc<Tracker>, Timeouts),
) -> std::io::Result<SocketAddr> {
    let (first, tcp, bound) = bind_pair(addr)?;
    let mut sockets = vec![first];
    for _ in 1..udp_sockets.max(1) {
        sockets.push(udp_socket(bound)?);
    }
    let runtime = tokio::runtime::Handle::current();
    for socket in sockets {
        udp_threads.spawn(socket.into(), handler.clone(), runtime.clone())?;
    }
    tasks.spawn(serve_tcp(tcp, handler, streams.0, streams.1));
    Ok(bound)
}

/// The first UDP socket and the TCP listener, on one port. When config asks for port 0, the
/// port the kernel picks for UDP may be in use for TCP: then pick again.
fn bind_pair(addr: SocketAddr) -> std::io::Result<(Socket, TcpListener, SocketAddr)> {
    let attempts = if addr.port() == 0 { 32 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp_socket(addr)?;
        let bound = udp
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
        match tcp_listener(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port")))
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Room for bursts: a full receive buffer silently drops queries.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    tracker: Arc<Tracker>,
    timeouts: Timeouts,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Past a cap, the idlest connection is shed: a new one is never refused.
                let conn = tracker.admit(Listener::Tcp, peer.ip());
                let handler = handler.clone();
                let _ = stream.set_nodelay(true);
                let client = Client {
                    addr: peer.ip(),
                    port: peer.port(),
                    transport: Transport::Tcp,
                    token: None,
                };
                tokio::spawn(async move {
                    let stream = conn.track(stream);
                    serve_stream(stream, client, handler, &conn, timeouts).await;
                });
            }
            Err(e) => {
                tracing::debug!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one stream connection (TCP or DoT): length-prefixed queries, answered concurrently
/// and written back as each is ready (RFC 7766 §6.2.1.1 allows replies out of order). A
/// blocked or cached query is answered by the reading task itself; only a query that needs
/// upstream becomes a task. The writer sends every answer waiting at once in one write. It
/// ends when the peer is done, or when `conn` is shed, idle or stuck writing (see
/// [`Conn::watch`]).
pub async fn serve_stream<S>(
    stream: S,
    client: Client,
    handler: Arc<Handler>,
    conn: &Conn,
    timeouts: Timeouts,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(MAX_PIPELINED);
    // Aborted when the connection ends, so that a writer blocked on a client that does not
    // read lets go of the socket.
    let mut written = AbortOnDrop(tokio::spawn(write_answers(writer, rx)));
    let served = async {
        let in_flight = Arc::new(Semaphore::new(MAX_PIPELINED));
        while let Some(query) = read_frame(&mut reader).await {
            let busy = conn.state.begin();
            let mut answer = Vec::with_capacity(512);
            match handler.answer_now(&query, client, false, &mut answer) {
                Step::Reply => {
                    if tx.send(answer).await.is_err() {
                        break;
                    }
                }
                Step::Drop => {}
                Step::Later(pending) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break;
                    };
                    let (handler, tx) = (handler.clone(), tx.clone());
                    tokio::spawn(async move {
                        if handler.answer_later(pending, &mut answer).await {
                            let _ = tx.send(answer).await;
                        }
                        drop((permit, busy));
                    });
                }
            }
        }
        drop(tx);
    };
    tokio::select! {
        _ = served => {
            // The peer is done asking: the answers still due go out, within the same limits.
            tokio::select! {
                _ = written.wait() => {}
                _ = conn.watch(timeouts) => {}
            }
        }
        _ = conn.watch(timeouts) => {}
    }
}

/// Writes the answers as they come, each after its two-byte length; those already waiting go
/// out together, in one write.
async fn write_answers<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut next = Some(first);
        while let Some(answer) = next {
            batch.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            batch.extend_from_slice(&answer);
            next = (batch.len() < MAX_BATCH)
                .then(|| rx.try_recv().ok())
                .flatten();
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    async fn wait(&mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One length-prefixed message, or None when the peer is done or broken. Idle connections are
/// ended by the connection's watch, not here.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Vec<u8>> {
    let len = reader.read_u16().await.ok()? as usize;
    let mut buf = vec![0; len];
    reader.read_exact(&mut buf).await.ok()?;
    Some(buf)
}
