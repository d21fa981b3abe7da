//! A real Knot DNS primary for the RPZ feed tests: `knotd` (3.2) in the foreground on a free
//! loopback port, with its config, zone file, journal, timer DB and control socket in a temp
//! dir. Killed when dropped.
//!
//! ```ignore
//! let key = Tsig::random("cordon-xfr");
//! let mut knot = KnotOptions::new("rpz.test")
//!     .records("evil.example CNAME .\n")
//!     .tsig(key.clone())
//!     .start()
//!     .await;
//! knot.notify_to(cordon.dns);               // from now on, each change is notified there
//! let serial = knot.set_zone("bad.example CNAME .\n").await;   // an IXFR in the journal
//! ```
//!
//! The zone. The harness writes the apex itself: `$ORIGIN <zone>.`, `$TTL 300`, an SOA
//! (`localhost. hostmaster.localhost.`, the serial it manages, the timers of
//! [`KnotOptions::soa`]) and `@ NS localhost.`; the caller's records follow, relative to the
//! zone (`evil.example CNAME .` is `evil.example.<zone>.`). Nothing else is at a non-apex owner,
//! so every other owner is an RPZ trigger of the caller's.
//!
//! IXFR. The zone is loaded with `zonefile-load: difference` and `journal-content: changes`:
//! [`Knot::set_zone`] writes the new file with the serial plus one and runs
//! `knotc -b zone-reload`; Knot computes the difference from the zone it serves and stores it in
//! its journal, from which it answers IXFR. Observed with kdig against this very config:
//! - `IXFR=<old serial>` (over TCP) gets the incremental shape: new SOA, old SOA, the removed
//!   records, new SOA, the added records, new SOA. The journal keeps the last 20 changes (Knot's
//!   `journal-max-depth`); from a serial it does not hold (e.g. 0), the answer is AXFR-shaped
//!   (SOA, every record, SOA). From the current serial or a later one: the current SOA alone.
//! - IXFR over UDP is answered with the current SOA alone (the RFC 1995 hint to use TCP).
//! - A changed zone file whose serial was not raised is still loaded: Knot raises the serial by
//!   one itself (its log says `serial 2 -> 2`, it serves 3). The harness always raises it.
//! - On restart, a file older than the journal would not load (`failed to apply journal
//!   changes`): the harness never restarts Knot.
//!
//! Transfers (rcodes in the header, as `dig` shows them; all over TCP):
//! - with a key ([`KnotOptions::tsig`]): the ACL allows AXFR/IXFR from 127.0.0.0/8 signed with
//!   that key only. Unsigned: NOTAUTH, no TSIG record. Right key name, wrong secret: NOTAUTH
//!   with an unsigned TSIG record whose error is BADSIG (16). Unknown key name: NOTAUTH, TSIG
//!   error BADKEY (17). A known key that no ACL allows (e.g. with transfers refused): NOTAUTH,
//!   BADKEY.
//! - without a key: AXFR/IXFR allowed from 127.0.0.1 unsigned; from 127.0.0.2: NOTAUTH.
//! - refused ([`KnotOptions::refuse_transfers`]: no transfer ACL at all): NOTAUTH (not REFUSED).
//! - a zone Knot does not serve: AXFR gets NOTAUTH, an SOA query gets REFUSED.
//!
//! NOTIFY. Knot sends a NOTIFY (opcode 4, AA, the new SOA in the answer section) to every
//! remote of [`KnotOptions::notify`] / [`Knot::notify_to`] each time the zone changes (at
//! start, after each [`Knot::set_zone`]) and on [`Knot::notify`]; not on a config reload.
//! Knot 3.2 sends NOTIFY over TCP only (a SYN to the remote's port, no UDP at all), and a NOTIFY
//! that fails (nobody listening: "connection reset") is not retried: a test that starts Knot
//! before Cordon listens calls [`Knot::notify`] (or [`Knot::notify_to`], then `notify`). The
//! NOTIFY is unsigned unless [`KnotOptions::sign_notify`] (then signed with the transfer key, and
//! Knot wants the response signed too: else it logs "failed to verify TSIG", to no other effect).
//! It leaves tens of ms after a reload of a small zone (~0.9 s after Knot serves the new serial
//! of a 1M-record zone; ~1 s after a dynamic update, which this harness does not use).

#![allow(dead_code)] // each test uses part of it

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{free_port, query_message};

/// A TSIG key (hmac-sha256) shared by Knot and the secondary.
#[derive(Clone, Debug)]
pub struct Tsig {
    /// The key's name, a domain name (`cordon-xfr`).
    pub name: String,
    /// The secret, base64.
    pub secret: String,
}

impl Tsig {
    pub fn new(name: &str, secret: &str) -> Tsig {
        Tsig {
            name: name.into(),
            secret: secret.into(),
        }
    }

    /// A key with a fresh random 256-bit secret.
    pub fn random(name: &str) -> Tsig {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        Tsig::new(
            name,
            &base64::engine::general_purpose::STANDARD.encode(bytes),
        )
    }

    /// The key as kdig's and dig's `-y` take it.
    pub fn kdig(&self) -> String {
        format!("hmac-sha256:{}:{}", self.name, self.secret)
    }
}

/// What a [`Knot`] serves and to whom. `KnotOptions::new(zone)`, then the setters, then
/// [`KnotOptions::start`].
#[derive(Clone, Debug)]
pub struct KnotOptions {
    zone: String,
    records: String,
    tsig: Option<Tsig>,
    refuse_transfers: bool,
    notify: Vec<SocketAddr>,
    sign_notify: bool,
    /// SOA refresh, retry, expire, minimum (seconds).
    soa: [u32; 4],
    serial: u32,
}

impl KnotOptions {
    /// Zone `zone` (no trailing dot needed), no records below the apex, serial 1, SOA timers
    /// 3600 600 86400 60, transfers to 127.0.0.1 unsigned, no NOTIFY target.
    pub fn new(zone: &str) -> KnotOptions {
        KnotOptions {
            zone: zone.trim_end_matches('.').to_string(),
            records: String::new(),
            tsig: None,
            refuse_transfers: false,
            notify: Vec::new(),
            sign_notify: false,
            soa: [3600, 600, 86400, 60],
            serial: 1,
        }
    }

    /// The zone's records below the apex, in zone file syntax, relative to the zone.
    pub fn records(mut self, records: &str) -> Self {
        self.records = records.to_string();
        self
    }

    /// Transfers only with this key (from 127.0.0.0/8).
    pub fn tsig(mut self, key: Tsig) -> Self {
        self.tsig = Some(key);
        self
    }

    /// No transfer allowed to anyone (answered NOTAUTH).
    pub fn refuse_transfers(mut self) -> Self {
        self.refuse_transfers = true;
        self
    }

    /// One more NOTIFY target (over TCP, see the module docs).
    pub fn notify(mut self, addr: SocketAddr) -> Self {
        self.notify.push(addr);
        self
    }

    /// NOTIFY signed with the [`KnotOptions::tsig`] key (unsigned otherwise).
    pub fn sign_notify(mut self) -> Self {
        self.sign_notify = true;
        self
    }

    /// The SOA's refresh, retry, expire and minimum (seconds).
    pub fn soa(mut self, refresh: u32, retry: u32, expire: u32, minimum: u32) -> Self {
        self.soa = [refresh, retry, expire, minimum];
        self
    }

    /// The first serial (1 by default).
    pub fn serial(mut self, serial: u32) -> Self {
        self.serial = serial;
        self
    }

    /// Starts Knot and waits until it serves the zone.
    pub async fn start(self) -> Knot {
        Knot::start(self).await
    }
}

/// A running `knotd`: see the module docs for what it does and answers.
pub struct Knot {
    dir: tempfile::TempDir,
    /// UDP and TCP, 127.0.0.1.
    pub addr: SocketAddr,
    child: Child,
    options: KnotOptions,
    /// The serial Knot serves (the harness raises it on each [`Knot::set_zone`]).
    serial: AtomicU32,
}

impl Knot {
    /// Knot serving `zone` with `records` (see [`KnotOptions`] for the rest).
    pub async fn serve(zone: &str, records: &str) -> Knot {
        KnotOptions::new(zone).records(records).start().await
    }

    async fn start(options: KnotOptions) -> Knot {
        let mut dir = tempfile::tempdir().unwrap();
        // A port free for TCP may be taken for UDP (or taken for TCP again before knotd binds
        // it): knotd then exits with "address already in use", and another port is tried.
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            std::fs::write(
                dir.path().join("zone"),
                zone_text(&options, options.serial, &options.records),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("knot.conf"),
                config(dir.path(), addr, &options),
            )
            .unwrap();
            // Each try starts afresh: no journal or timers of a knotd that did not start.
            for db in ["journal", "timer", "kasp", "catalog"] {
                let _ = std::fs::remove_dir_all(dir.path().join(db));
            }
            let log = std::fs::File::create(dir.path().join("knotd.log")).unwrap();
            let child = Command::new("knotd")
                .arg("-c")
                .arg(dir.path().join("knot.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("knotd runs (apt-get install knot)");
            let mut knot = Knot {
                dir,
                addr,
                child,
                serial: AtomicU32::new(options.serial),
                options: options.clone(),
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if knot.child.try_wait().unwrap().is_some() {
                    break;
                }
                if knot.serving().await == Some(options.serial) {
                    return knot;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let log = knot.log();
            if !log.contains("address already in use") {
                panic!("knotd did not serve {}: {log}", options.zone);
            }
            // Dropping `knot` would remove the dir: take it back, the process is gone.
            let _ = knot.child.kill();
            let _ = knot.child.wait();
            dir = std::mem::replace(&mut knot.dir, tempfile::tempdir().unwrap());
        }
        panic!("no free port for knotd");
    }

    pub fn zone(&self) -> &str {
        &self.options.zone
    }

    /// The config file (for `knotc -c`).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    /// The zone file Knot reads.
    pub fn zone_file(&self) -> PathBuf {
        self.dir.path().join("zone")
    }

    /// What knotd logged (info level: loads, transfers out, NOTIFYs sent).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// The serial of the last zone the harness loaded.
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::SeqCst)
    }

    /// The transfer key, if any.
    pub fn tsig(&self) -> Option<&Tsig> {
        self.options.tsig.as_ref()
    }

    /// Runs `knotc -c <conf> args...`; panics when it fails.
    pub fn knotc(&self, args: &[&str]) -> String {
        let out = Command::new("knotc")
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .expect("knotc runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "knotc {args:?}: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        text
    }

    /// Replaces the records below the apex, raises the serial by one and reloads the zone: Knot
    /// stores the difference in its journal (an IXFR from the previous serial) and NOTIFYs its
    /// targets. Returns the new serial, once Knot serves it.
    pub async fn set_zone(&self, records: &str) -> u32 {
        let serial = self.serial().wrapping_add(1);
        std::fs::write(self.zone_file(), zone_text(&self.options, serial, records)).unwrap();
        self.knotc(&["-b", "zone-reload", self.options.zone.as_str()]);
        self.serial.store(serial, Ordering::SeqCst);
        for _ in 0..250 {
            if self.serving().await == Some(serial) {
                return serial;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("knotd does not serve serial {serial}: {}", self.log());
    }

    /// Sends a NOTIFY to every target now (`knotc zone-notify`), the zone unchanged.
    pub fn notify(&self) {
        self.knotc(&["zone-notify", self.options.zone.as_str()]);
    }

    /// Makes `addr` the one NOTIFY target (rewrites the config, `knotc reload`). A reload sends
    /// no NOTIFY: the next change does, or [`Knot::notify`].
    pub fn notify_to(&mut self, addr: SocketAddr) {
        self.options.notify = vec![addr];
        std::fs::write(
            self.conf(),
            config(self.dir.path(), self.addr, &self.options),
        )
        .unwrap();
        self.knotc(&["reload"]);
    }

    /// The serial Knot answers for the zone's SOA (over TCP), if it answers.
    pub async fn serving(&self) -> Option<u32> {
        if std::net::TcpStream::connect(self.addr).is_err() {
            return None;
        }
        let query = query_message(&format!("{}.", self.options.zone), RecordType::SOA, false);
        let packet = query.to_vec().ok()?;
        let ask = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&packet);
            stream.write_all(&framed).await.ok()?;
            let len = stream.read_u16().await.ok()? as usize;
            let mut buf = vec![0; len];
            stream.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        let raw = tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .ok()??;
        let answer = Message::from_vec(&raw).ok()?;
        if answer.metadata.response_code != ResponseCode::NoError {
            return None;
        }
        answer.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The zone file: the harness's apex, then `records`.
fn zone_text(options: &KnotOptions, serial: u32, records: &str) -> String {
    let [refresh, retry, expire, minimum] = options.soa;
    format!(
        "$ORIGIN {zone}.\n$TTL 300\n\
         @ SOA localhost. hostmaster.localhost. {serial} {refresh} {retry} {expire} {minimum}\n\
         @ NS localhost.\n{records}\n",
        zone = options.zone,
    )
}

/// knot.conf: everything under `dir`, one zone, the transfer ACL and NOTIFY targets.
fn config(dir: &std::path::Path, addr: SocketAddr, options: &KnotOptions) -> String {
    let dir = dir.display();
    let mut c = format!(
        "server:\n    rundir: \"{dir}\"\n    listen: {ip}@{port}\n\
         \x20   udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{dir}\"\n    journal-db: \"{dir}/journal\"\n\
         \x20   timer-db: \"{dir}/timer\"\n    kasp-db: \"{dir}/kasp\"\n\
         control:\n    listen: \"{dir}/knot.sock\"\n",
        ip = addr.ip(),
        port = addr.port(),
    );
    if let Some(key) = &options.tsig {
        c += &format!(
            "key:\n  - id: {}\n    algorithm: hmac-sha256\n    secret: {}\n",
            key.name, key.secret
        );
    }
    let mut notify = Vec::new();
    if !options.notify.is_empty() {
        c += "remote:\n";
        for (i, target) in options.notify.iter().enumerate() {
            c += &format!(
                "  - id: notify{i}\n    address: {}@{}\n",
                target.ip(),
                target.port()
            );
            if let (true, Some(key)) = (options.sign_notify, &options.tsig) {
                c += &format!("    key: {}\n", key.name);
            }
            notify.push(format!("notify{i}"));
        }
    }
    if !options.refuse_transfers {
        c += "acl:\n  - id: transfer\n    action: transfer\n";
        match &options.tsig {
            Some(key) => c += &format!("    address: 127.0.0.0/8\n    key: {}\n", key.name),
            None => c += "    address: 127.0.0.1\n",
        }
    }
    c += &format!(
        "template:\n  - id: default\n    storage: \"{dir}\"\n    zonefile-sync: -1\n\
         \x20   zonefile-load: difference\n    journal-content: changes\n\
         zone:\n  - domain: {zone}.\n    file: \"{dir}/zone\"\n",
        zone = options.zone,
    );
    if !options.refuse_transfers {
        c += "    acl: transfer\n";
    }
    if !notify.is_empty() {
        c += &format!("    notify: [{}]\n", notify.join(", "));
    }
    c
}
