//! UDP exchanges with one upstream server over a few long-lived sockets instead of a socket a
//! query: making and freeing a socket for every cache miss cost more CPU than the forwarding
//! itself, and the kernel's deferred frees (RCU) came in bursts that held answers back.
//!
//! What RFC 5452 asks of a forwarder is kept: every query has a random id, unique among those in
//! flight on its socket; each socket is bound to a random ephemeral port and replaced after a
//! random number of uses or [`MAX_AGE`], so the source ports keep moving over the pool; and an
//! answer is taken only if its id and question match a query in flight on the socket it came to
//! (the socket is connected, so only the server's address and port reach it). Anything else
//! (late, spoofed) is ignored and counted.
//!
//! One receive task a socket hands each answer to its exchange through a oneshot channel. The
//! pending map of a socket is behind a mutex held for a map operation and an answer's check: the
//! sender and that socket's receive task are the only ones to take it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus::IntCounter;
use rustc_hash::FxBuildHasher;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::answer::OUR_UDP_SIZE;
use super::wire::{self, AnswerInfo, HEADER_LEN};

/// Sockets a server: the source ports in use at any moment.
pub const SOCKETS: usize = 8;
/// A socket is replaced after a random number of queries in this range...
const USES: std::ops::RangeInclusive<u32> = 256..=1024;
/// ... or once it is this old, whichever comes first.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// How many random ids are tried before a socket is called full.
const ID_TRIES: usize = 64;

/// The sockets to one server.
pub struct UdpPool {
    server: SocketAddr,
    slots: [ArcSwapOption<Sock>; SOCKETS],
    next: AtomicUsize,
    /// Datagrams that matched no query in flight (late, spoofed, malformed).
    unmatched: IntCounter,
}

type Waiters = HashMap<u16, Waiter, FxBuildHasher>;

/// An answer as it came, and what it says.
pub type Answer = (Vec<u8>, AnswerInfo);

/// A query in flight: its question, to check the answer against, and where the answer goes.
struct Waiter {
    question: Box<[u8]>,
    /// Which registration this is, so that a cancelled exchange removes its own entry only.
    serial: u32,
    tx: oneshot::Sender<Answer>,
}

/// One connected socket, its queries in flight and its receive task (ended when the last
/// holder drops it: the pool after replacing it, or the last exchange on it).
struct Sock {
    socket: Arc<UdpSocket>,
    pending: Arc<Mutex<Waiters>>,
    uses: AtomicU32,
    /// Numbers registrations, so that a cancelled exchange removes its own entry only.
    serials: AtomicU32,
    retire_after: u32,
    born: Instant,
    receiver: AbortHandle,
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl UdpPool {
    pub fn new(server: SocketAddr, unmatched: IntCounter) -> Self {
        UdpPool {
            server,
            slots: Default::default(),
            next: AtomicUsize::new(0),
            unmatched,
        }
    }

    /// Sends `query` (its id rewritten to one free on the socket) and waits for the datagram
    /// that answers it. Cancelling the future (the caller's deadline) forgets the query.
    pub async fn exchange(&self, query: &mut [u8], question: &[u8]) -> std::io::Result<Answer> {
        let sock = self.socket()?;
        let (id, serial, rx) = sock.register(question)?;
        let mut entry = Entry {
            sock: &sock,
            id,
            serial,
            done: false,
        };
        query[..2].copy_from_slice(&id.to_be_bytes());
        sock.socket.send(query).await?;
        let answer = rx.await;
        entry.done = true;
        answer.map_err(|_| std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    /// The next slot's socket, replaced first when it has served its uses or its time.
    fn socket(&self) -> std::io::Result<Arc<Sock>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % SOCKETS];
        if let Some(sock) = slot.load_full() {
            let uses = sock.uses.fetch_add(1, Ordering::Relaxed);
            if uses < sock.retire_after && sock.born.elapsed() < MAX_AGE {
                return Ok(sock);
            }
        }
        let sock = Arc::new(Sock::open(self.server, self.unmatched.clone())?);
        slot.store(Some(sock.clone()));
        Ok(sock)
    }
}

impl Sock {
    /// A socket on a random port of the kernel's ephemeral range, connected to `server`, and
    /// its receive task.
    fn open(server: SocketAddr, unmatched: IntCounter) -> std::io::Result<Sock> {
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let std_socket = std::net::UdpSocket::bind(bind)?;
        std_socket.connect(server)?;
        std_socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let pending = Arc::new(Mutex::new(Waiters::default()));
        let receiver = tokio::spawn(receive(socket.clone(), pending.clone(), unmatched));
        Ok(Sock {
            socket,
            pending,
            uses: AtomicU32::new(1),
            serials: AtomicU32::new(0),
            retire_after: rand::random_range(USES),
            born: Instant::now(),
            receiver: receiver.abort_handle(),
        })
    }

    /// Registers a query for `question` under a random id no other query in flight here has.
    fn register(&self, question: &[u8]) -> std::io::Result<(u16, u32, oneshot::Receiver<Answer>)> {
        let (tx, rx) = oneshot::channel();
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let mut pending = lock(&self.pending);
        for _ in 0..ID_TRIES {
            let id = rand::random::<u16>();
            if let std::collections::hash_map::Entry::Vacant(v) = pending.entry(id) {
                v.insert(Waiter {
                    question: question.into(),
                    serial,
                    tx,
                });
                return Ok((id, serial, rx));
            }
        }
        Err(std::io::Error::other("no free query id on the socket"))
    }
}

/// A registered query: removed from the pending map if the exchange ends without its answer.
struct Entry<'a> {
    sock: &'a Sock,
    id: u16,
    serial: u32,
    done: bool,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut pending = lock(&self.sock.pending);
        if pending
            .get(&self.id)
            .is_some_and(|w| w.serial == self.serial)
        {
            pending.remove(&self.id);
        }
    }
}

/// The mutex's map even if a thread panicked holding it: the map is valid between operations.
fn lock(pending: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// A socket's receive loop: each datagram to the query it answers, or counted and dropped.
async fn receive(socket: Arc<UdpSocket>, pending: Arc<Mutex<Waiters>>, unmatched: IntCounter) {
    // We offer OUR_UDP_SIZE, so a larger datagram is not an answer to us.
    let mut buf = [0u8; OUR_UDP_SIZE as usize + 1];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                if !deliver(&pending, &buf[..n]) {
                    unmatched.inc();
                }
            }
            // The server's port is closed (ICMP, on a connected socket): every query in flight
            // here is lost, so their exchanges fail now rather than at the deadline.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => lock(&pending).clear(),
            Err(e) => {
                tracing::debug!("upstream UDP socket: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Hands `msg` to the query in flight it answers (same id, our question, or a truncated header
/// with our id); false if there is none.
fn deliver(pending: &Mutex<Waiters>, msg: &[u8]) -> bool {
    if msg.len() < HEADER_LEN {
        return false;
    }
    let id = wire::read_u16(msg, 0);
    let waiter = {
        let mut pending = lock(pending);
        let Some(waiter) = pending.get(&id) else {
            return false;
        };
        match check(msg, id, &waiter.question) {
            Some(info) => pending.remove(&id).map(|w| (w.tx, info)),
            None => None,
        }
    };
    let Some((tx, info)) = waiter else {
        return false;
    };
    let _ = tx.send((msg.to_vec(), info));
    true
}

/// What an answer to (`id`, `question`) says, or None if `msg` is not one.
fn check(msg: &[u8], id: u16, question: &[u8]) -> Option<AnswerInfo> {
    // A truncated answer may carry no question at all (RFC 2181 §9 lets a server drop every
    // section): our id, QR and TC are enough to know TCP must follow.
    if wire::truncated_without_question(msg, id) {
        return Some(AnswerInfo {
            truncated: true,
            ..AnswerInfo::default()
        });
    }
    wire::inspect_answer(msg, id, question).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.test. A IN` in wire form.
    const QUESTION: &[u8] = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01";

    fn answer(id: u16, question: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(question);
        m
    }

    fn waiting(pending: &Mutex<Waiters>, id: u16, serial: u32) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let question = QUESTION.into();
        let waiter = Waiter {
            question,
            serial,
            tx,
        };
        lock(pending).insert(id, waiter);
        rx
    }

    #[test]
    fn only_the_answer_with_our_id_and_question_is_delivered() {
        let pending = Mutex::new(Waiters::default());
        let mut rx = waiting(&pending, 7, 0);
        assert!(!deliver(&pending, &answer(8, QUESTION)), "another id");
        let other = b"\x03www\x07example\x03org\x00\x00\x01\x00\x01";
        assert!(!deliver(&pending, &answer(7, other)), "another question");
        assert!(!deliver(&pending, &[0, 7, 0x81]), "too short");
        assert!(lock(&pending).contains_key(&7), "still waiting");
        assert!(rx.try_recv().is_err());
        assert!(deliver(&pending, &answer(7, QUESTION)));
        assert_eq!(rx.try_recv().unwrap().0, answer(7, QUESTION));
        assert!(lock(&pending).is_empty());
        assert!(
            !deliver(&pending, &answer(7, QUESTION)),
            "late: nobody waits"
        );
    }

    #[test]
    fn a_truncated_header_alone_with_our_id_is_delivered_as_truncated() {
        let pending = Mutex::new(Waiters::default());
        let mut rx = waiting(&pending, 9, 0);
        let header = [0, 9, 0x83, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(deliver(&pending, &header));
        assert!(rx.try_recv().unwrap().1.truncated);
    }

    #[tokio::test]
    async fn ids_are_unique_on_a_socket_and_a_cancelled_query_removes_only_its_own_entry() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let unmatched = IntCounter::new("unmatched", "test").unwrap();
        let sock = Sock::open(server.local_addr().unwrap(), unmatched).unwrap();
        let mut held = Vec::new();
        for _ in 0..1000 {
            held.push(sock.register(QUESTION).unwrap());
        }
        let ids: std::collections::HashSet<u16> = held.iter().map(|h| h.0).collect();
        assert_eq!(ids.len(), 1000, "no id twice among queries in flight");
        let (id, serial) = (held[0].0, held[0].1);
        // Another registration now holds this id (as after an answer): the old entry's drop
        // must leave it.
        lock(&sock.pending).get_mut(&id).unwrap().serial = serial + 1_000_000;
        drop(Entry {
            sock: &sock,
            id,
            serial,
            done: false,
        });
        assert!(lock(&sock.pending).contains_key(&id));
        let (id, serial) = (held[1].0, held[1].1);
        drop(Entry {
            sock: &sock,
            id,
            serial,
            done: false,
        });
        assert!(
            !lock(&sock.pending).contains_key(&id),
            "cancelled: forgotten"
        );
    }

    #[tokio::test]
    async fn the_pool_answers_over_reused_sockets_on_several_ports() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut ports = std::collections::HashSet::new();
            for _ in 0..64 {
                let (n, peer) = server.recv_from(&mut buf).await.unwrap();
                ports.insert(peer.port());
                buf[2] |= 0x80;
                server.send_to(&buf[..n], peer).await.unwrap();
            }
            ports
        });
        let pool = UdpPool::new(addr, IntCounter::new("unmatched", "test").unwrap());
        for _ in 0..64 {
            let mut query = answer(0, QUESTION);
            query[2] = 0x01;
            let answer = pool.exchange(&mut query, QUESTION).await.unwrap();
            assert_eq!(answer.0[..2], query[..2]);
        }
        let ports = echo.await.unwrap();
        assert_eq!(ports.len(), SOCKETS, "each slot's socket reused: {ports:?}");
    }
}
