//! A small DNS tree for recursive mode, served by NSD: the root on 127.0.53.1, `test.` on
//! 127.0.53.2, `leaf.test.` on 127.0.53.3, `cdn.test.` and `evil.test.` on 127.0.53.4. Each
//! server has its own config, pid file, control socket and zone files in a temporary folder.
//!
//! A delegation names a server by address only, so every server of the tree must listen on the
//! port a recursor asks, 53: this needs root, and the tests skip (with a message) without it.
//! One tree at a time: the tests that start one wait for each other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The root server's address, for Cordon's root hints.
pub const ROOT: &str = "127.0.53.1";
/// An address in the same network where nothing listens.
pub const DEAD: &str = "127.0.53.9";
/// The network the recursor must be allowed to ask.
pub const NETWORK: &str = "127.0.53.0/24";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the leaf zone is served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signing {
    Unsigned,
    /// The root, `test.` and `leaf.test.` signed, each parent holding its child's DS.
    Signed,
    /// Signed, then an address of `leaf.test.` changed: its signature no longer matches.
    Tampered,
}

struct Zone {
    name: &'static str,
    server: u8,
    text: String,
}

fn soa(zone: &str) -> String {
    let ns = if zone == "." {
        "ns.root.".to_string()
    } else {
        format!("ns.{zone}")
    };
    let mail = if zone == "." {
        "hostmaster.root.".to_string()
    } else {
        format!("hostmaster.{zone}")
    };
    format!("$TTL 3600\n{zone} IN SOA {ns} {mail} 1 3600 900 604800 60\n")
}

fn zones() -> Vec<Zone> {
    vec![
        Zone {
            name: ".",
            server: 1,
            text: soa(".")
                + ". IN NS ns.root.\nns.root. IN A 127.0.53.1\n\
                   test. IN NS ns.test.\nns.test. IN A 127.0.53.2\n",
        },
        Zone {
            name: "test.",
            server: 2,
            text: soa("test.")
                + "test. IN NS ns.test.\nns.test. IN A 127.0.53.2\n\
                   leaf.test. IN NS ns.leaf.test.\nns.leaf.test. IN A 127.0.53.3\n\
                   cdn.test. IN NS ns.cdn.test.\nns.cdn.test. IN A 127.0.53.4\n\
                   evil.test. IN NS ns.cdn.test.\n",
        },
        Zone {
            name: "leaf.test.",
            server: 3,
            text: soa("leaf.test.")
                + "leaf.test. IN NS ns.leaf.test.\nns.leaf.test. IN A 127.0.53.3\n\
                   www.leaf.test. IN A 192.0.2.10\n\
                   alias.leaf.test. IN CNAME edge.cdn.test.\n\
                   lure.leaf.test. IN CNAME host.evil.test.\n",
        },
        Zone {
            name: "cdn.test.",
            server: 4,
            text: soa("cdn.test.")
                + "cdn.test. IN NS ns.cdn.test.\nns.cdn.test. IN A 127.0.53.4\n\
                   edge.cdn.test. IN A 192.0.2.20\n",
        },
        Zone {
            name: "evil.test.",
            server: 4,
            text: soa("evil.test.")
                + "evil.test. IN NS ns.cdn.test.\nhost.evil.test. IN A 192.0.2.66\n",
        },
    ]
}

/// Why a tree cannot run here, or None when it can.
pub fn cannot_run(signing: Signing) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "recursive-mode tests need root: the tree's NSD servers listen on port 53 of \
             127.0.53.x, the only port a delegation reaches"
                .into(),
        );
    }
    let mut tools = vec!["nsd", "nsd-control"];
    if signing != Signing::Unsigned {
        tools.extend(["ldns-keygen", "ldns-key2ds", "ldns-signzone"]);
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (Debian: nsd, ldnsutils; .ci/run installs them)"
            ));
        }
    }
    None
}

/// A running tree; dropping it stops its servers.
pub struct Hierarchy {
    servers: Vec<Nsd>,
    /// The DNSKEY file to trust (signed trees).
    pub trust_anchor: Option<PathBuf>,
    _dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

struct Nsd {
    addr: Ipv4Addr,
    conf: PathBuf,
    child: Child,
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // SIGTERM: NSD stops its server and xfrd processes too.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

impl Hierarchy {
    /// Starts the tree, or None (after printing why) when it cannot run here.
    pub async fn start(signing: Signing) -> Option<Hierarchy> {
        if let Some(why) = cannot_run(signing) {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let mut zones = zones();
        let trust_anchor = match signing {
            Signing::Unsigned => None,
            _ => Some(sign(dir.path(), &mut zones, signing == Signing::Tampered)),
        };
        let mut servers = Vec::new();
        for server in 1..=4u8 {
            let mine: Vec<&Zone> = zones.iter().filter(|z| z.server == server).collect();
            servers.push(start_nsd(dir.path(), server, &mine).await);
        }
        Some(Hierarchy {
            servers,
            trust_anchor,
            _dir: dir,
            _turn: turn,
        })
    }

    /// Queries every server of the tree has received so far.
    pub fn queries(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| {
                let out = Command::new("nsd-control")
                    .arg("-c")
                    .arg(&s.conf)
                    .arg("stats_noreset")
                    .output()
                    .expect("nsd-control runs");
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines()
                    .find_map(|l| l.strip_prefix("num.queries="))
                    .unwrap_or_else(|| panic!("no num.queries from {}: {text}", s.addr))
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    }
}

/// Signs `leaf.test.`, then `test.` with the leaf's DS, then the root with `test.`'s DS, each
/// with one ECDSA P-256 key; returns the root key's file, the trust anchor.
fn sign(dir: &Path, zones: &mut [Zone], tamper: bool) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let run = |cmd: &mut Command| -> String {
        let out = cmd.current_dir(&keys).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut child_ds = String::new();
    let mut anchor = PathBuf::new();
    for name in ["leaf.test.", "test.", "."] {
        let zone = zones.iter_mut().find(|z| z.name == name).unwrap();
        let base = run(Command::new("ldns-keygen").args(["-a", "ECDSAP256SHA256", "-k", name]));
        let base = base.trim().to_string();
        let key = keys.join(format!("{base}.key"));
        for record in [child_ds.clone(), std::fs::read_to_string(&key).unwrap()] {
            zone.text.push('\n');
            zone.text += &record;
        }
        zone.text.push('\n');
        let unsigned = keys.join(format!("{}zone", zone.name));
        std::fs::write(&unsigned, &zone.text).unwrap();
        run(Command::new("ldns-signzone")
            .arg("-o")
            .arg(name)
            .arg(&unsigned)
            .arg(&base));
        let mut signed = std::fs::read_to_string(format!("{}.signed", unsigned.display())).unwrap();
        if tamper && name == "leaf.test." {
            assert!(signed.contains("192.0.2.10"));
            signed = signed.replace("192.0.2.10", "192.0.2.99");
        }
        // NSD reads the signed text as is: no $TTL or SOA to add.
        zone.text = signed;
        child_ds = run(Command::new("ldns-key2ds").args(["-n", "-2"]).arg(&key));
        anchor = key;
    }
    // the root's DNSKEY record, without ldns' comment
    let text = std::fs::read_to_string(&anchor).unwrap();
    let record = text.split(';').next().unwrap().trim().to_string();
    let path = dir.join("root.key");
    std::fs::write(&path, record + "\n").unwrap();
    path
}

async fn start_nsd(dir: &Path, server: u8, zones: &[&Zone]) -> Nsd {
    let addr = Ipv4Addr::new(127, 0, 53, server);
    let d = dir.join(format!("nsd{server}"));
    std::fs::create_dir_all(&d).unwrap();
    let mut conf = format!(
        "server:\n  ip-address: {addr}@53\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n\
         \x20 database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n\
         \x20 xfrdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  logfile: \"{d}/nsd.log\"\n\
         \x20 zonesdir: \"{d}\"\n  server-count: 1\n  verbosity: 1\n  rrl-ratelimit: 0\n\
         remote-control:\n  control-enable: yes\n  control-interface: \"{d}/ctl\"\n",
        d = d.display()
    );
    for (i, zone) in zones.iter().enumerate() {
        let file = format!("zone{i}");
        std::fs::write(d.join(&file), &zone.text).unwrap();
        conf += &format!("zone:\n  name: \"{}\"\n  zonefile: \"{file}\"\n", zone.name);
    }
    let conf_path = d.join("nsd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let checked = Command::new("nsd-checkconf")
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "nsd-checkconf: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let log = std::fs::File::create(d.join("stdout.log")).unwrap();
    let child = Command::new("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("nsd starts");
    let mut nsd = Nsd {
        addr,
        conf: conf_path,
        child,
    };
    for _ in 0..100 {
        if answers(addr, zones[0].name).await {
            return nsd;
        }
        if let Ok(Some(status)) = nsd.child.try_wait() {
            let log = std::fs::read_to_string(d.join("stdout.log")).unwrap_or_default()
                + &std::fs::read_to_string(d.join("nsd.log")).unwrap_or_default();
            panic!("nsd on {addr} exited ({status}): {log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nsd on {addr}:53 did not answer (is something else on that port?)");
}

/// Whether `addr`:53 answers an SOA query for `zone` within 100 ms.
async fn answers(addr: Ipv4Addr, zone: &str) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
        return false;
    };
    if socket
        .connect(SocketAddr::new(IpAddr::V4(addr), 53))
        .await
        .is_err()
    {
        return false;
    }
    let query = crate::support::query_message(zone, hickory_proto::rr::RecordType::SOA, false);
    if socket.send(&query.to_vec().unwrap()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    matches!(
        tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await,
        Ok(Ok(n)) if n > 12
    )
}
