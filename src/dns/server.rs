//! Plain DNS listeners: UDP (one SO_REUSEPORT socket per worker, so the kernel spreads queries
//! over cores) and TCP (RFC 7766: several queries per connection, idle timeout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::handler::{Handler, Step};
use crate::identity::{Client, Transport};

/// How long a TCP connection may sit idle between queries (RFC 7766 §6.2.3 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Open TCP connections at most; more wait in the kernel's backlog.
const TCP_MAX_CONNECTIONS: usize = 4096;

/// Binds UDP and TCP on `addr` and serves them on `tasks`. Returns the bound address (the port
/// is the real one when `addr` asked for port 0).
pub fn listen(
    addr: SocketAddr,
    udp_sockets: usize,
    handler: Arc<Handler>,
    tasks: &mut JoinSet<()>,
) -> std::io::Result<SocketAddr> {
    let first = udp_socket(addr)?;
    let bound = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
    let mut sockets = vec![first];
    for _ in 1..udp_sockets.max(1) {
        sockets.push(udp_socket(bound)?);
    }
    for socket in sockets {
        let socket = Arc::new(UdpSocket::from_std(socket.into())?);
        tasks.spawn(serve_udp(socket, handler.clone()));
    }
    let tcp = tcp_listener(bound)?;
    tasks.spawn(serve_tcp(tcp, handler));
    Ok(bound)
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

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let client = Client {
            addr: peer.ip(),
            transport: Transport::Udp,
        };
        match handler.answer_now(&buf[..n], client, true, &mut out) {
            Step::Reply => send(&socket, &out, peer).await,
            Step::Drop => {}
            Step::Later(pending) => {
                let (socket, handler) = (socket.clone(), handler.clone());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    if handler.answer_later(pending, &mut out).await {
                        send(&socket, &out, peer).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    // Most sends complete at once; only a full send buffer needs to wait.
    let result = match socket.try_send_to(out, peer) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.send_to(out, peer).await,
        other => other,
    };
    if let Err(e) = result {
        tracing::debug!("udp send to {peer}: {e}");
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(TCP_MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    serve_tcp_connection(stream, peer, handler).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::debug!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one connection: length-prefixed queries, answered in order.
async fn serve_tcp_connection(mut stream: TcpStream, peer: SocketAddr, handler: Arc<Handler>) {
    let _ = stream.set_nodelay(true);
    let client = Client {
        addr: peer.ip(),
        transport: Transport::Tcp,
    };
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            _ => return,
        };
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        if !handler.answer(&buf, client, false, &mut out).await {
            // A packet we would not answer over UDP ends the conversation over TCP.
            return;
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
