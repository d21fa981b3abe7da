//! The query log sent to a dnstap collector over a Unix socket or TCP, by a thread of its own:
//! connect and handshake (Frame Streams), then drain the tap into CLIENT_QUERY and
//! CLIENT_RESPONSE frames. A collector that is down is tried again with a backoff (1/10 s
//! doubling to 3 s) while records wait in the tap, which drops and counts what does not fit; a
//! slow one blocks only this thread, for at most the write timeout; one that closes the
//! connection is noticed before the next batch and connected to again.

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use socket2::SockRef;

use super::dnstap::Encoder;
use super::framestream;
use super::report::{Failure, Report};
use super::settings::{Collector, DnstapSettings};
use crate::dns::record::{QueryRecord, Tap};

/// How long the sender sleeps when the tap is empty or the collector is away.
const IDLE: Duration = Duration::from_millis(100);
/// Records taken from the tap at a time (two frames each).
const BATCH: usize = 512;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(3);
/// Connecting, and each read of the handshake and of FINISH.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// A write that makes no progress for this long fails, and the connection is made anew.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the collector.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn connect(collector: &Collector) -> std::io::Result<Stream> {
        let stream = match collector {
            Collector::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            Collector::Tcp(addr) => {
                Stream::Tcp(TcpStream::connect_timeout(addr, HANDSHAKE_TIMEOUT)?)
            }
        };
        let socket = stream.socket();
        socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(stream)
    }

    fn socket(&self) -> SockRef<'_> {
        match self {
            Stream::Unix(s) => SockRef::from(s),
            Stream::Tcp(s) => SockRef::from(s),
        }
    }

    /// Whether the collector has closed the connection (or sent something it should not: a
    /// reader says nothing between ACCEPT and FINISH), seen without blocking.
    fn closed_by_peer(&self) -> bool {
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match self
            .socket()
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

pub struct Sender {
    settings: DnstapSettings,
    encoder: Encoder,
    report: Report,
    /// `cordon_dnstap_connected`.
    connected: IntGauge,
    stream: Option<Stream>,
    ever_connected: bool,
    retry_at: Instant,
    backoff: Duration,
    frames: Vec<u8>,
}

impl Sender {
    pub fn new(
        settings: DnstapSettings,
        encoder: Encoder,
        report: Report,
        connected: IntGauge,
    ) -> Sender {
        connected.set(0);
        Sender {
            settings,
            encoder,
            report,
            connected,
            stream: None,
            ever_connected: false,
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
            frames: Vec::new(),
        }
    }

    /// Sends what the tap holds until `stop` is set; then sends what is left (if connected),
    /// ends the stream with STOP and FINISH, and returns.
    pub fn run(mut self, tap: Arc<Tap>, stop: Arc<AtomicBool>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stopping = stop.load(Ordering::Acquire);
            if self.stream.is_none() {
                if stopping {
                    return;
                }
                if Instant::now() >= self.retry_at {
                    self.connect();
                }
                if self.stream.is_none() {
                    std::thread::sleep(IDLE);
                    continue;
                }
            }
            if self.stream.as_ref().is_some_and(Stream::closed_by_peer) {
                self.lost(Failure::Closed, "the collector closed the connection");
                continue;
            }
            batch.clear();
            if tap.take(BATCH, &mut batch) > 0 {
                self.send(&batch);
            } else if stopping {
                self.finish();
                return;
            } else {
                std::thread::sleep(IDLE);
            }
        }
    }

    fn connect(&mut self) {
        let collector = &self.settings.collector;
        let result = Stream::connect(collector).and_then(|mut stream| {
            framestream::handshake(&mut stream).map_err(std::io::Error::other)?;
            Ok(stream)
        });
        match result {
            Ok(stream) => {
                self.stream = Some(stream);
                self.backoff = FIRST_RETRY;
                self.connected.set(1);
                if self.ever_connected {
                    let again = format_args!("connected to the dnstap collector {collector} again");
                    self.report.recovered(again);
                } else {
                    tracing::info!("query log: connected to the dnstap collector {collector}");
                    self.ever_connected = true;
                }
            }
            Err(error) => {
                let wait = self.backoff;
                self.retry_at = Instant::now() + wait;
                self.backoff = (self.backoff * 2).min(LAST_RETRY);
                self.report.failed(
                    Failure::Connect,
                    format_args!(
                        "cannot connect to the dnstap collector {collector}: {error}; \
                         trying again (records wait in the queue)"
                    ),
                );
            }
        }
    }

    fn send(&mut self, batch: &[QueryRecord]) {
        self.frames.clear();
        for record in batch {
            self.encoder.frames(record, &mut self.frames);
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        match stream.write_all(&self.frames).and_then(|()| stream.flush()) {
            Ok(()) => self.report.written.inc_by(batch.len() as u64),
            Err(error) => {
                self.report.lost.inc_by(batch.len() as u64);
                let failure = match error.kind() {
                    std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted => Failure::Closed,
                    _ => Failure::Write,
                };
                let what = format!(
                    "cannot send to the dnstap collector: {error}; {} records lost",
                    batch.len()
                );
                self.lost(failure, what);
            }
        }
    }

    /// Drops the connection after a failure; the next try comes at once, then backs off.
    fn lost(&mut self, failure: Failure, what: impl std::fmt::Display) {
        self.stream = None;
        self.connected.set(0);
        let collector = &self.settings.collector;
        self.report.failed(
            failure,
            format_args!("{what} ({collector}); connecting again"),
        );
        self.retry_at = Instant::now();
    }

    fn finish(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            if let Err(e) = framestream::finish(&mut stream) {
                tracing::debug!("query log: the dnstap collector did not finish: {e}");
            }
        }
        self.connected.set(0);
    }
}

#[cfg(test)]
mod tests {
    use crate::dns::record::Wire;
    use std::io::BufReader;
    use std::os::unix::net::UnixListener;

    use prost::Message as _;

    use super::*;
    use crate::metrics::Metrics;
    use crate::querylog::client::ClientShown;
    use crate::querylog::dnstap::{Dnstap, MessageType};
    use crate::querylog::framestream::{control_frame, read_control, ACCEPT, DNSTAP, FINISH};
    use crate::querylog::json::tests::record;

    /// Accepts one connection, answers the handshake and reads `frames` data frames.
    fn read_frames(listener: &UnixListener, frames: usize) -> (UnixStream, Vec<Dnstap>) {
        let (stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream.try_clone().unwrap();
        read_control(&mut r).unwrap();
        w.write_all(&control_frame(ACCEPT, Some(DNSTAP))).unwrap();
        read_control(&mut r).unwrap();
        let mut out = Vec::new();
        for _ in 0..frames {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).unwrap();
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            r.read_exact(&mut frame).unwrap();
            out.push(Dnstap::decode(&frame[..]).unwrap());
        }
        (stream, out)
    }

    fn sender(path: &std::path::Path, metrics: &Metrics) -> Sender {
        let settings = DnstapSettings {
            collector: Collector::Unix(path.to_path_buf()),
            identity: "node-a".into(),
            version: "cordon test".into(),
        };
        let encoder = Encoder::new(
            b"node-a".to_vec(),
            b"cordon test".to_vec(),
            ClientShown::Address,
        );
        let connected = metrics.dnstap_connected.with_label_values::<&str>(&[]);
        Sender::new(settings, encoder, Report::new(metrics, "dnstap"), connected)
    }

    #[test]
    fn records_go_out_and_a_closed_collector_is_connected_to_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnstap.sock");
        let metrics = Metrics::new();
        let tap = Tap::new(16, metrics.query_log_dropped.with_label_values(&["full"]));
        let stop = Arc::new(AtomicBool::new(false));
        // the collector is down at first
        let thread = {
            let (tap, stop, sender) = (tap.clone(), stop.clone(), sender(&path, &metrics));
            std::thread::spawn(move || sender.run(tap, stop))
        };
        std::thread::sleep(Duration::from_millis(300));
        let connect = metrics.query_log_errors.with_label_values(&["connect"]);
        assert!(
            connect.get() >= 1,
            "the collector is down: connect failures are counted"
        );
        assert_eq!(
            metrics
                .dnstap_connected
                .with_label_values::<&str>(&[])
                .get(),
            0
        );
        tap.offer(record());
        let listener = UnixListener::bind(&path).unwrap();
        let (first, frames) = read_frames(&listener, 2);
        let types: Vec<i32> = frames
            .iter()
            .map(|d| d.message.as_ref().unwrap().r#type)
            .collect();
        assert_eq!(
            types,
            [
                MessageType::ClientQuery as i32,
                MessageType::ClientResponse as i32
            ]
        );
        assert_eq!(
            metrics
                .dnstap_connected
                .with_label_values::<&str>(&[])
                .get(),
            1
        );
        // the collector goes away; the sender sees it and connects again
        drop(first);
        let (mut second, frames) = {
            std::thread::sleep(Duration::from_millis(250));
            tap.offer(record());
            read_frames(&listener, 2)
        };
        assert_eq!(frames.len(), 2);
        let closed = metrics
            .query_log_errors
            .with_label_values(&["closed"])
            .get();
        assert_eq!(closed, 1, "the close was seen before the next batch");
        assert_eq!(
            metrics
                .query_log_dropped
                .with_label_values(&["failed"])
                .get(),
            0
        );
        // stopping ends the stream with STOP, answered by FINISH
        stop.store(true, Ordering::Release);
        let mut r = BufReader::new(second.try_clone().unwrap());
        let stop_frame = read_control(&mut r).unwrap();
        assert_eq!(stop_frame.kind, framestream::STOP);
        second.write_all(&control_frame(FINISH, None)).unwrap();
        thread.join().unwrap();
        assert_eq!(
            metrics
                .dnstap_connected
                .with_label_values::<&str>(&[])
                .get(),
            0
        );
        assert_eq!(
            metrics
                .query_log_written
                .with_label_values(&["dnstap"])
                .get(),
            2
        );
    }

    #[test]
    fn a_collector_that_stops_reading_costs_a_batch_never_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnstap.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let metrics = Metrics::new();
        let tap = Tap::new(4096, metrics.query_log_dropped.with_label_values(&["full"]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tap, stop, sender) = (tap.clone(), stop.clone(), sender(&path, &metrics));
            std::thread::spawn(move || sender.run(tap, stop))
        };
        // a collector that answers the handshake, then never reads again
        let (stuck, _) = read_frames(&listener, 0);
        let mut big = record();
        let name = big.wire.name().to_vec();
        big.wire = Wire::new(&name, Some((&[0u8; 100], &[0u8; 4000])));
        let offered = Instant::now();
        for _ in 0..4000 {
            tap.offer(big.clone());
        }
        assert!(
            offered.elapsed() < Duration::from_secs(1),
            "offering never waits"
        );
        let write = metrics.query_log_errors.with_label_values(&["write"]);
        let until = Instant::now() + Duration::from_secs(10);
        while write.get() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(write.get(), 1, "the stuck write timed out");
        let lost = metrics.query_log_dropped.with_label_values(&["failed"]);
        assert!(lost.get() > 0, "its batch is lost and counted");
        // the sender connects again, and a collector that reads gets the rest
        let (second, frames) = read_frames(&listener, 2);
        assert_eq!(frames.len(), 2);
        // stopping while a write waits on a collector that went away ends at once
        stop.store(true, Ordering::Release);
        drop((stuck, second, listener));
        thread.join().unwrap();
    }
}
