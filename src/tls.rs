//! TLS for the encrypted listeners: the certificate and key from config, reloaded when the files change, without dropping open connections.
//!
//! [`CertStore`] holds the certificate chain and key in force behind an
//! [`ArcSwap`]. Server configs built from it ([`CertStore::server_config`] for
//! DoT and DoH, [`CertStore::quic_server_config`] for DoQ) pick the key up on
//! every handshake through a [`ResolvesServerCert`], so a reload reaches new
//! connections at once while connections already open keep the key they were
//! established with.
//!
//! Everything uses the *ring* crypto provider, passed explicitly to the
//! config builders: nothing here depends on, or installs, a process-wide
//! default provider.
//!
//! PEM is parsed with the `pem` module of `rustls-pki-types` (re-exported as
//! `rustls::pki_types`), which replaces the unmaintained `rustls-pemfile`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus::IntGauge;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};

/// Certificate and key files larger than this are refused: a PEM chain is a
/// few kilobytes, so anything this big is a misconfigured path.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The shortest polling period [`CertStore::watch`] accepts.
const MIN_WATCH_PERIOD: Duration = Duration::from_millis(100);

/// ALPN protocol identifier for DNS over QUIC (RFC 9250).
pub const ALPN_DOQ: &[u8] = b"doq";

/// Why a certificate or key could not be loaded. Every variant names the file
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, unreadable, too large).
    #[error("{}: cannot read: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// The file is not well-formed PEM (e.g. a broken base64 body or a
    /// section that never ends).
    #[error("{}: malformed PEM: {message}", path.display())]
    BadPem { path: PathBuf, message: String },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    /// The leaf certificate could not be parsed.
    #[error("{}: unusable certificate: {message}", path.display())]
    BadCertificate { path: PathBuf, message: String },
    /// The key file holds no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("{}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    /// The private key was found but the crypto provider cannot use it.
    #[error("{}: unusable private key: {message}", path.display())]
    BadKey { path: PathBuf, message: String },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "{}: private key does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// What identifies one version of a file on disk. A change in any field means
/// the file was rewritten or replaced (e.g. a symlink swapped by a renewal
/// tool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

/// The stamp of the file `path` points to (symlinks followed), or `None` when
/// it cannot be examined.
fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        dev: meta.dev(),
        #[cfg(unix)]
        ino: meta.ino(),
    })
}

/// The certificate in force, swapped atomically on reload.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// Stamps of the certificate and key files as last read. The lock also
    /// serialises concurrent reloads.
    seen: Mutex<[Option<Stamp>; 2]>,
    provider: Arc<CryptoProvider>,
    /// `cordon_tls_cert_expiry_timestamp_seconds`, once [`CertStore::export_expiry`] set it.
    expiry: OnceLock<IntGauge>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("chain_len", &self.current.load().cert.len())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads the PEM certificate chain (leaf first) from `cert` and the first
    /// PKCS#8, PKCS#1 or SEC1 private key from `key` (the two may be the same
    /// file), and checks that the key belongs to the leaf certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = [stamp(cert), stamp(key)];
        let certified = read_pair(cert, key, &provider)?;
        tracing::info!(
            cert = %cert.display(),
            key = %key.display(),
            chain_len = certified.cert.len(),
            "loaded TLS certificate"
        );
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(certified),
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            seen: Mutex::new(seen),
            provider,
            expiry: OnceLock::new(),
        }))
    }

    /// Sets `gauge` to the leaf certificate's notAfter (Unix seconds) now, and again on every
    /// reload that puts a new certificate in force. A notAfter that cannot be read sets it to
    /// 0, which an expiry alert reads as expired: better looked at than silently trusted.
    pub fn export_expiry(&self, gauge: IntGauge) {
        let _ = self.expiry.set(gauge);
        self.update_expiry(&self.current.load());
    }

    /// The notAfter of the leaf certificate in force, in Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        self.current.load().cert.first().and_then(|c| not_after(c))
    }

    fn update_expiry(&self, certified: &CertifiedKey) {
        let Some(gauge) = self.expiry.get() else {
            return;
        };
        match certified.cert.first().and_then(|c| not_after(c)) {
            Some(seconds) => gauge.set(seconds),
            None => {
                tracing::warn!(
                    cert = %self.cert_path.display(),
                    "cannot read the certificate's notAfter; its expiry metric is 0"
                );
                gauge.set(0);
            }
        }
    }

    /// The certificate chain and key that new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Re-reads the files if either changed on disk; a bad new pair is logged
    /// and the old one stays. Returns `Ok(true)` when a new certificate went
    /// into force.
    ///
    /// A change is any difference in modification time, size or (on Unix)
    /// inode of either file. A pair that fails to load is logged at `warn`
    /// once and returned as `Err`; it is retried when either file changes
    /// again, so a renewal that writes the certificate and the key in two
    /// steps is picked up once both are in place. Rewriting the files with
    /// the same certificate returns `Ok(false)`.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Stamps are taken before reading, so a write that lands while we
        // read shows up as a change on the next call.
        let now = [stamp(&self.cert_path), stamp(&self.key_path)];
        if now == *seen {
            return Ok(false);
        }
        *seen = now;
        match read_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(certified) => {
                if certified.cert == self.current.load().cert {
                    tracing::debug!(
                        cert = %self.cert_path.display(),
                        "TLS certificate files touched but unchanged"
                    );
                    return Ok(false);
                }
                let chain_len = certified.cert.len();
                self.update_expiry(&certified);
                self.current.store(Arc::new(certified));
                tracing::info!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    chain_len,
                    "reloaded TLS certificate"
                );
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "TLS certificate reload failed; keeping the certificate in force"
                );
                Err(error)
            }
        }
    }

    /// Polls the files every `every` (e.g. 5 s) in a tokio task.
    ///
    /// Must be called inside a tokio runtime. Periods under 100 ms are raised
    /// to 100 ms. Failures are logged by [`CertStore::reload_if_changed`].
    /// The task holds only a weak reference and ends once the store (and
    /// every server config built from it) has been dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let store = Arc::downgrade(self);
        let every = every.max(MIN_WATCH_PERIOD);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { break };
                // Two stat calls per tick; the files are only read when they
                // changed, and they are small.
                let _ = store.reload_if_changed();
            }
        });
    }

    /// A TLS 1.2 and 1.3 server config using this store, with these ALPN
    /// protocols (e.g. `[b"dot"]`, `[b"h2", b"http/1.1"]`).
    ///
    /// The certificate is looked up on each handshake, so reloads reach new
    /// connections while open ones keep theirs.
    ///
    /// With a non-empty `alpn`, a client that offers ALPN but none of these
    /// protocols is refused; a client that offers no ALPN is accepted.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        self.build_config(&[&rustls::version::TLS13, &rustls::version::TLS12], alpn)
    }

    /// A TLS 1.3-only server config with ALPN `doq` for DNS over QUIC, ready
    /// for `quinn::crypto::rustls::QuicServerConfig::try_from`.
    ///
    /// It meets quinn 0.11's requirements: TLS 1.3 enabled, the provider
    /// offers `TLS13_AES_128_GCM_SHA256` (QUIC's initial suite) and
    /// `max_early_data_size` is 0 (0-RTT off, so no replayable queries), as for every config
    /// this store makes (DoT and DoH too).
    pub fn quic_server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        self.build_config(&[&rustls::version::TLS13], &[ALPN_DOQ])
    }

    fn build_config(
        self: &Arc<Self>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // 0-RTT off on every transport: early data could be a replayed query.
        config.max_early_data_size = 0;
        Arc::new(config)
    }
}

/// Hands every handshake the certificate in force at that moment.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// Reads a whole file of at most [`MAX_PEM_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(read_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is larger than 1 MiB",
        )));
    }
    Ok(bytes)
}

fn bad_pem(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::BadPem {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Loads and cross-checks a certificate chain and its private key.
fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_file(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }

    let key_pem = read_file(key_path)?;
    let key = match PrivateKeyDer::pem_slice_iter(&key_pem).next() {
        Some(Ok(key)) => key,
        Some(Err(e)) => return Err(bad_pem(key_path, e)),
        None => {
            return Err(TlsError::NoKey {
                path: key_path.to_path_buf(),
            })
        }
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: key_path.to_path_buf(),
                message: e.to_string(),
            })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot report its public half, so there is
        // nothing to compare (never the case for ring's keys).
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The notAfter of an X.509 certificate (DER), in Unix seconds: the few steps of DER that
/// lead to `tbsCertificate.validity.notAfter` (RFC 5280 §4.1), and nothing more. `None` when
/// the bytes do not have that shape.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = der_tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = der_tlv(cert)? else {
        return None;
    };
    let (mut tag, _, mut rest) = der_tlv(tbs)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version, then the serial number.
        (tag, _, rest) = der_tlv(rest)?;
    }
    if tag != 0x02 {
        return None;
    }
    let (0x30, _, rest) = der_tlv(rest)? else {
        return None; // signature AlgorithmIdentifier
    };
    let (0x30, _, rest) = der_tlv(rest)? else {
        return None; // issuer Name
    };
    let (0x30, validity, _) = der_tlv(rest)? else {
        return None;
    };
    let (_, _, after) = der_tlv(validity)?; // notBefore
    let (tag, time, _) = der_tlv(after)?;
    der_time(tag, time)
}

/// One DER TLV with a one-byte tag at the start of `der`: (tag, contents, what follows).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags never occur on this path
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A UTCTime (tag 0x17, `YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (tag 0x18,
/// `YYYYMMDDHHMMSSZ`), the two forms RFC 5280 §4.1.2.5 allows, as Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = match (tag, text.split_last()) {
        (0x17, Some((b'Z', d))) if d.len() == 12 => d,
        (0x18, Some((b'Z', d))) if d.len() == 14 => d,
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |i: usize, n: usize| {
        digits[i..i + n]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (year, at) = if tag == 0x17 {
        let yy = num(0, 2);
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (num(0, 4), 4)
    };
    let (month, day) = (num(at, 2), num(at + 2, 2));
    let (hour, minute, second) = (num(at + 4, 2), num(at + 6, 2), num(at + 8, 2));
    crate::time::utc_seconds(year, month, day, hour, minute, second)
}

/// The token a client put in its SNI, for listeners: when `sni` (the server
/// name the client sent, if any) is `{label}.{suffix}` with exactly one label
/// before `suffix` (like "dns.example.com"; compared case-insensitively, a
/// trailing dot on either ignored), returns that label lowercased; else `None`.
///
/// The label must be 1–63 characters of ASCII letters, digits, `-` or `_`.
pub fn sni_token(sni: Option<&str>, suffix: &str) -> Option<String> {
    let sni = sni?;
    let sni = sni.strip_suffix('.').unwrap_or(sni);
    let suffix = suffix.strip_suffix('.').unwrap_or(suffix);
    let (label, rest) = sni.split_once('.')?;
    let valid = !suffix.is_empty()
        && rest.eq_ignore_ascii_case(suffix)
        && (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| label.to_ascii_lowercase())
}

/// The TLS client config of every outbound connection (DoT and DoH upstreams, list fetches,
/// the shared store): servers verified against the PEM bundle `ca_file`, or the system's roots
/// when `None`.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = read_file(path)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad_pem(path, e))?;
                roots.add(cert).map_err(|e| TlsError::BadCertificate {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate {
                    path: path.to_path_buf(),
                });
            }
        }
        None => roots = system_roots(),
    }
    Ok(client_config_with(roots))
}

/// The system's trusted roots (those that do not parse are left out).
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// [`client_config`] with these roots.
pub fn client_config_with(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Whether the authority at the start of `rest` (what follows `http://`) is a loopback host:
/// 127.0.0.0/8, `[::1]` or `localhost`, with or without a port. Only there may a secret travel
/// in a plain `http://` request (a local stand-in or a TLS-terminating proxy on the host): the
/// Jamf Pro API's client secret, a Shared Signals issuer's keys.
pub fn loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
            _ => return false,
        },
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
    use std::io::Write;

    const SANS: [&str; 2] = ["dns.example.com", "*.dns.example.com"];

    struct Generated {
        cert_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn generate() -> Generated {
        let sans: Vec<String> = SANS.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(sans).expect("rcgen");
        Generated {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
            der: ck.cert.der().clone(),
        }
    }

    /// Replaces `path` atomically (write to a sibling, then rename), the way
    /// renewal tools do; the new inode makes the change visible even where
    /// mtimes are coarse.
    fn replace(path: &Path, contents: &str) {
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    struct Files {
        _dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
    }

    fn files(g: &Generated) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        replace(&cert, &g.cert_pem);
        replace(&key, &g.key_pem);
        Files {
            _dir: dir,
            cert,
            key,
        }
    }

    fn leaf(store: &CertStore) -> CertificateDer<'static> {
        store.current().cert[0].clone()
    }

    fn client_config(
        trust: &[&CertificateDer<'static>],
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for der in trust {
            roots.add((*der).clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Moves bytes from one connection to the other until neither has any
    /// left to send.
    fn pump(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..16 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets()?;
            buf.clear();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets()?;
            if !client.wants_write() && !server.wants_write() {
                return Ok(());
            }
        }
        panic!("connections kept talking");
    }

    fn connect(
        server: &Arc<ServerConfig>,
        client: &Arc<ClientConfig>,
        sni: &str,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut c = ClientConnection::new(Arc::clone(client), name)?;
        let mut s = ServerConnection::new(Arc::clone(server))?;
        pump(&mut c, &mut s)?;
        assert!(!c.is_handshaking() && !s.is_handshaking());
        Ok((c, s))
    }

    /// Sends `msg` client to server over an established connection.
    fn echo(c: &mut ClientConnection, s: &mut ServerConnection, msg: &[u8]) {
        c.writer().write_all(msg).unwrap();
        pump(c, s).unwrap();
        let mut got = vec![0; msg.len()];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }

    #[test]
    fn load_works() {
        let g = generate();
        let f = files(&g);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        assert_eq!(store.current().cert.len(), 1);
        assert_eq!(leaf(&store), g.der);
        // Nothing changed on disk.
        assert!(!store.reload_if_changed().unwrap());
        assert!(format!("{store:?}").contains("cert.pem"));
    }

    #[test]
    fn cert_and_key_in_one_file() {
        let g = generate();
        let f = files(&g);
        replace(&f.cert, &format!("{}{}", g.cert_pem, g.key_pem));
        let store = CertStore::load(&f.cert, &f.cert).unwrap();
        assert_eq!(leaf(&store), g.der);
    }

    /// The contents of a DER TLV at the start of `der`, and what follows it.
    fn der_tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (der[0], der[1]);
        let (len, start) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            let len = der[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        (tag, &der[start..start + len], &der[start + len..])
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        pem
    }

    #[test]
    fn sec1_key_loads() {
        let sans: Vec<String> = SANS.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(sans).unwrap();
        // PKCS#8 PrivateKeyInfo: SEQUENCE { version, algorithm, OCTET STRING
        // holding the SEC1 ECPrivateKey }.
        let pkcs8 = ck.signing_key.serialize_der();
        let (_, info, _) = der_tlv(&pkcs8);
        let (_, _, rest) = der_tlv(info); // version
        let (_, _, rest) = der_tlv(rest); // algorithm
        let (tag, sec1, _) = der_tlv(rest);
        assert_eq!(tag, 0x04);
        let key_pem = pem_encode("EC PRIVATE KEY", sec1);

        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        replace(&cert, &ck.cert.pem());
        replace(&key, &key_pem);
        let store = CertStore::load(&cert, &key).unwrap();
        assert_eq!(leaf(&store), *ck.cert.der());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = generate();
        let b = generate();
        let f = files(&a);
        replace(&f.key, &b.key_pem);
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("key.pem") && msg.contains("cert.pem"), "{msg}");
    }

    #[test]
    fn garbage_is_refused_naming_the_file() {
        let g = generate();
        let f = files(&g);

        replace(&f.cert, "this is not PEM at all\n");
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*f.cert.to_string_lossy()),
            "{err}"
        );

        replace(
            &f.cert,
            "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
        );
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*f.cert.to_string_lossy()),
            "{err}"
        );

        // Valid base64, but not a certificate.
        replace(
            &f.cert,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::BadCertificate { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*f.cert.to_string_lossy()),
            "{err}"
        );

        replace(&f.cert, &g.cert_pem);
        replace(&f.key, &g.cert_pem);
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&*f.key.to_string_lossy()), "{err}");

        replace(
            &f.key,
            "-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
        );
        let err = CertStore::load(&f.cert, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::BadKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&*f.key.to_string_lossy()), "{err}");

        let missing = f.cert.with_file_name("missing.pem");
        let err = CertStore::load(&missing, &f.key).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn reload_swaps_in_a_new_pair() {
        let a = generate();
        let b = generate();
        let f = files(&a);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        let before = store.current();

        replace(&f.cert, &b.cert_pem);
        replace(&f.key, &b.key_pem);
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(leaf(&store), b.der);
        assert_ne!(leaf(&store), a.der);
        // Whoever held the old key still has it.
        assert_eq!(before.cert[0], a.der);
        // No further change on disk.
        assert!(!store.reload_if_changed().unwrap());

        // Rewriting the same pair is not a new certificate.
        replace(&f.cert, &b.cert_pem);
        assert!(!store.reload_if_changed().unwrap());
        assert_eq!(leaf(&store), b.der);
    }

    #[test]
    fn broken_rewrite_keeps_the_old_pair() {
        let a = generate();
        let b = generate();
        let f = files(&a);
        let store = CertStore::load(&f.cert, &f.key).unwrap();

        // Certificate renewed, key not yet: mismatch, old pair stays.
        replace(&f.cert, &b.cert_pem);
        let err = store.reload_if_changed().unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err:?}");
        assert_eq!(leaf(&store), a.der);
        // Reported once, not on every poll.
        assert!(!store.reload_if_changed().unwrap());

        // The key lands: the pair goes into force.
        replace(&f.key, &b.key_pem);
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(leaf(&store), b.der);

        // Garbage, then a missing file: errors, old pair stays.
        replace(&f.cert, "garbage");
        assert!(matches!(
            store.reload_if_changed(),
            Err(TlsError::NoCertificate { .. })
        ));
        std::fs::remove_file(&f.cert).unwrap();
        assert!(matches!(
            store.reload_if_changed(),
            Err(TlsError::Read { .. })
        ));
        assert!(!store.reload_if_changed().unwrap());
        assert_eq!(leaf(&store), b.der);

        // Restored: back in business.
        replace(&f.cert, &a.cert_pem);
        replace(&f.key, &a.key_pem);
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(leaf(&store), a.der);
    }

    #[test]
    fn handshakes_follow_reloads_and_open_connections_survive() {
        let a = generate();
        let b = generate();
        let f = files(&a);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        let server = store.server_config(&[b"dot"]);
        let client = client_config(
            &[&a.der, &b.der],
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            &[b"dot"],
        );

        let (mut c1, mut s1) = connect(&server, &client, "abc.dns.example.com").unwrap();
        assert_eq!(c1.alpn_protocol(), Some(&b"dot"[..]));
        assert_eq!(s1.server_name(), Some("abc.dns.example.com"));
        assert_eq!(c1.peer_certificates().unwrap()[0], a.der);
        assert_eq!(
            sni_token(s1.server_name(), "dns.example.com").as_deref(),
            Some("abc")
        );

        replace(&f.cert, &b.cert_pem);
        replace(&f.key, &b.key_pem);
        assert!(store.reload_if_changed().unwrap());

        let (c2, _s2) = connect(&server, &client, "xyz.dns.example.com").unwrap();
        assert_eq!(c2.peer_certificates().unwrap()[0], b.der);
        // The connection opened before the reload still works.
        echo(&mut c1, &mut s1, b"still here");
        assert_eq!(c1.peer_certificates().unwrap()[0], a.der);
    }

    #[test]
    fn tls12_and_alpn() {
        let g = generate();
        let f = files(&g);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        let server = store.server_config(&[b"h2", b"http/1.1"]);

        let tls12 = client_config(&[&g.der], &[&rustls::version::TLS12], &[b"http/1.1"]);
        let (c, _s) = connect(&server, &tls12, "dns.example.com").unwrap();
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));

        // No ALPN offered: accepted.
        let none = client_config(&[&g.der], &[&rustls::version::TLS13], &[]);
        let (c, _s) = connect(&server, &none, "dns.example.com").unwrap();
        assert_eq!(c.alpn_protocol(), None);

        // Only foreign protocols offered: refused.
        let other = client_config(&[&g.der], &[&rustls::version::TLS13], &[b"doq"]);
        assert!(connect(&server, &other, "dns.example.com").is_err());
    }

    #[test]
    fn quic_config_is_tls13_only_with_doq() {
        let g = generate();
        let f = files(&g);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        let quic = store.quic_server_config();
        assert_eq!(quic.alpn_protocols, vec![b"doq".to_vec()]);
        assert_eq!(quic.max_early_data_size, 0, "0-RTT is off for DoQ");
        assert!(quic
            .crypto_provider()
            .cipher_suites
            .iter()
            .any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));

        let tls13 = client_config(&[&g.der], &[&rustls::version::TLS13], &[b"doq"]);
        let (c, _s) = connect(&quic, &tls13, "dns.example.com").unwrap();
        assert_eq!(c.alpn_protocol(), Some(ALPN_DOQ));

        let tls12 = client_config(&[&g.der], &[&rustls::version::TLS12], &[b"doq"]);
        assert!(connect(&quic, &tls12, "dns.example.com").is_err());
    }

    #[test]
    fn early_data_is_refused_even_on_a_resumed_session() {
        let g = generate();
        let f = files(&g);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        let server = store.server_config(&[b"dot"]);
        assert_eq!(
            server.max_early_data_size, 0,
            "0-RTT is off for DoT and DoH"
        );
        let mut client = (*client_config(&[&g.der], &[&rustls::version::TLS13], &[b"dot"])).clone();
        client.enable_early_data = true;
        let client = Arc::new(client);
        // a first session hands the client its tickets
        let (mut c, mut s) = connect(&server, &client, "dns.example.com").unwrap();
        echo(&mut c, &mut s, b"first");
        // the second resumes, yet is given no room for early data
        let name = rustls::pki_types::ServerName::try_from("dns.example.com").unwrap();
        let mut c = ClientConnection::new(Arc::clone(&client), name).unwrap();
        assert!(
            c.early_data().is_none(),
            "the ticket allows no early data, so the client may send none"
        );
        let mut s = ServerConnection::new(Arc::clone(&server)).unwrap();
        pump(&mut c, &mut s).unwrap();
        assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        assert!(!c.is_early_data_accepted());
    }

    #[tokio::test]
    async fn watch_picks_up_a_new_pair() {
        let a = generate();
        let b = generate();
        let f = files(&a);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        store.watch(Duration::from_millis(50));
        replace(&f.cert, &b.cert_pem);
        replace(&f.key, &b.key_pem);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while leaf(&store) != b.der {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watch never reloaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A self-signed certificate for the test names, valid until `year-month-day` 00:00 UTC.
    fn generate_until(year: i32, month: u8, day: u8) -> Generated {
        let sans: Vec<String> = SANS.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("rcgen params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().expect("rcgen key");
        let cert = params.self_signed(&key).expect("rcgen");
        Generated {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    #[test]
    fn not_after_of_rcgen_certificates() {
        // 2031-05-17T00:00:00Z is a UTCTime in the certificate; 2051-01-02, past 2049, a
        // GeneralizedTime (RFC 5280 4.1.2.5). The numbers are from Python's calendar.timegm.
        assert_eq!(
            not_after(&generate_until(2031, 5, 17).der),
            Some(1_936_742_400)
        );
        assert_eq!(
            not_after(&generate_until(2051, 1, 2).der),
            Some(2_556_230_400)
        );
        // rcgen's own default (4096-01-01) is read too.
        let g = generate();
        let expected = rcgen::CertificateParams::default()
            .not_after
            .unix_timestamp();
        assert_eq!(not_after(&g.der), Some(expected));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&g.der[..g.der.len() / 2]), None);
    }

    #[test]
    fn der_times() {
        assert_eq!(der_time(0x17, b"310517123456Z"), Some(1_936_787_696));
        assert_eq!(der_time(0x18, b"20310517123456Z"), Some(1_936_787_696));
        assert_eq!(der_time(0x17, b"991231235959Z"), Some(946_684_799));
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        // Local times, fractions, bad digits and bad fields are refused.
        assert_eq!(der_time(0x17, b"3105171234Z"), None);
        assert_eq!(der_time(0x17, b"310517123456+0100"), None);
        assert_eq!(der_time(0x18, b"20310517123456.5Z"), None);
        assert_eq!(der_time(0x17, b"31x517123456Z"), None);
        assert_eq!(der_time(0x17, b"311317123456Z"), None);
        assert_eq!(der_time(0x04, b"310517123456Z"), None);
    }

    #[test]
    fn expiry_gauge_follows_reloads() {
        let a = generate_until(2031, 5, 17);
        let b = generate_until(2051, 1, 2);
        let f = files(&a);
        let store = CertStore::load(&f.cert, &f.key).unwrap();
        assert_eq!(store.not_after(), Some(1_936_742_400));
        let metrics = crate::metrics::Metrics::new();
        let name = "cordon_tls_cert_expiry_timestamp_seconds";
        assert!(!metrics.render().contains(name), "absent until exported");
        let gauge = metrics.tls_cert_expiry.with_label_values::<&str>(&[]);
        store.export_expiry(gauge.clone());
        assert_eq!(gauge.get(), 1_936_742_400);
        assert!(metrics.render().contains(&format!("{name} 1936742400")));

        replace(&f.cert, &b.cert_pem);
        replace(&f.key, &b.key_pem);
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(gauge.get(), 2_556_230_400);

        // A broken renewal keeps the certificate in force, and its expiry.
        replace(&f.cert, &a.cert_pem);
        assert!(store.reload_if_changed().is_err());
        assert_eq!(gauge.get(), 2_556_230_400);
    }

    #[test]
    fn sni_tokens() {
        let suffix = "dns.example.com";
        assert_eq!(
            sni_token(Some("abc.dns.example.com"), suffix).as_deref(),
            Some("abc")
        );
        assert_eq!(sni_token(Some("a.b.dns.example.com"), suffix), None);
        assert_eq!(sni_token(Some("dns.example.com"), suffix), None);
        assert_eq!(
            sni_token(Some("ABC.DNS.Example.COM."), suffix).as_deref(),
            Some("abc")
        );
        assert_eq!(sni_token(None, suffix), None);
        assert_eq!(
            sni_token(Some("abc.DNS.example.com"), "Dns.Example.Com.").as_deref(),
            Some("abc")
        );
        assert_eq!(sni_token(Some("abc.dns.example.org"), suffix), None);
        assert_eq!(sni_token(Some("abcdns.example.com"), suffix), None);
        assert_eq!(sni_token(Some(".dns.example.com"), suffix), None);
        assert_eq!(sni_token(Some("a*b.dns.example.com"), suffix), None);
        assert_eq!(sni_token(Some("abc."), ""), None);
        assert_eq!(
            sni_token(Some("x-1_y.dns.example.com"), suffix).as_deref(),
            Some("x-1_y")
        );
    }
}
