//! The server config file (INTERFACE.md): every key optional, unknown keys refused, relative
//! paths taken from the config file's own directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::conn::Limits;
use crate::control::store::postgres::BadUrl;
use crate::control::store::{PgSettings, StoreTarget};
use crate::control::{Clock, WriterConfig};
use crate::dns::cache::CacheLimits;
use crate::dns::recursive::{self, RecursiveError, RecursiveSettings};
use crate::dns::upstream::{ServerAddr, ServerAddrError};
use crate::identity::IdentityRules;
use crate::jamf::api::{JamfConfig, JamfConfigError};
use crate::policy::cidr::{parse_net, NotANetwork, PrefixTable};
use crate::policy::StaticBinding;
use crate::token::{TokenError, TokenKey};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dns: DnsConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheLimits,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub identity: IdentityConfig,
    pub policies: PoliciesConfig,
    pub jamf: JamfConfig,
    /// Shared Signals transmitters whose Security Event Tokens `/webhooks/ssf` accepts.
    pub ssf: crate::ssf::SsfConfig,
    pub devices: DevicesConfig,
    /// Connection caps and timeouts, upstream exchanges in flight.
    pub limits: Limits,
    /// Lists named by URL in categories.toml: how they are fetched and where their copies live.
    pub lists: ListsConfig,
    /// `[tripwire]`: whether names a policy calls tripwires isolate the device that asks.
    pub tripwire: TripwireConfig,
    /// `[[feed]]`: RPZ zones transferred from their primaries.
    #[serde(rename = "feed")]
    pub feeds: Vec<crate::feeds::FeedConfig>,
    /// `[[events.sink]]`: where events go to the SOC.
    pub events: crate::events::EventsConfig,
    /// `[trail]`: the DNS trail of isolated, probation and watched devices.
    pub trail: crate::trail::TrailConfig,
    /// `[query_log]`: answered queries to a JSON-lines file or a dnstap collector; off by default.
    pub query_log: crate::querylog::QueryLogConfig,
    /// Where relative paths start: the config file's directory, or the working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    pub https_listen: Vec<SocketAddr>,
    pub quic_listen: Vec<SocketAddr>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub server_name: String,
    /// UDP sockets per listen address (0: one per CPU).
    pub udp_sockets: usize,
    // Not an open resolver (dns/guard.rs): who may ask, how large a UDP answer may be, and
    // response rate limiting per client prefix.
    /// CIDRs allowed to query; everyone else gets REFUSED.
    pub allow: Vec<String>,
    /// The largest UDP answer, whatever the client's EDNS size says.
    pub max_udp_size: u16,
    /// UDP answers per second per client /24 (IPv4) or /56 (IPv6); 0: no limit.
    pub rrl_responses_per_second: u32,
    /// Every Nth answer over the rate goes out truncated (TC=1); 0: all are dropped.
    pub rrl_slip: u32,
    /// CIDRs the rate limit spares.
    pub rrl_exempt: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Empty: the nameservers of /etc/resolv.conf.
    pub servers: Vec<String>,
    /// The deadline of one forwarded exchange (all servers), or of one whole recursion.
    pub timeout_ms: u64,
    /// "forward" (to `servers`) or "recursive" (from the root servers).
    pub mode: String,
    /// PEM CA bundle that DoT and DoH servers' certificates are verified against; the system's
    /// roots when empty.
    pub ca_file: PathBuf,
    /// Recursive mode: the root servers' addresses; empty: IANA's root hints.
    pub root_hints: Vec<String>,
    /// Recursive mode: a root hints file (named.root: its A and AAAA records) instead.
    pub root_hints_file: PathBuf,
    /// Recursive mode: validate DNSSEC (bogus answers get SERVFAIL).
    pub dnssec: bool,
    /// Recursive mode with `dnssec`: a file of DNSKEY records to trust instead of IANA's root
    /// keys.
    pub trust_anchor: PathBuf,
    /// Recursive mode: networks the recursor may query although it never queries loopback,
    /// private and reserved addresses otherwise.
    pub allow_servers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Empty string: no HTTP listener.
    pub listen: String,
}

/// The environment variable that holds the database URL (a secret, kept out of files).
pub const STORE_URL_ENV: &str = "CORDON_STORE_URL";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The embedded SQLite file (one node), used when no database URL is set.
    pub path: PathBuf,
    /// `postgres://…`: several nodes share one state. `CORDON_STORE_URL` in the environment
    /// takes precedence, then the file `url_file`, then this.
    pub url: String,
    pub url_file: PathBuf,
    /// CA bundle (PEM) for TLS to the database (`sslmode=require`); the system's by default.
    pub ca_file: PathBuf,
    /// How long one call to the database may take before the write answers 503.
    pub timeout_ms: u64,
    /// This node's name among the others (the `nodes` table); host name and process id when
    /// empty.
    pub node: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub webhook_tokens: Vec<String>,
    pub token_secret: String,
    pub admin: Vec<AdminToken>,
}

/// An API token and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub token: String,
    pub role: Role,
    /// Who holds the token, for the audit log; `token#N` (its place in the list) when unset.
    #[serde(default)]
    pub name: Option<String>,
}

/// API roles, each able to do all the roles below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub accept: Vec<String>,
    pub trusted_forwarders: Vec<String>,
    #[serde(rename = "static")]
    pub static_bindings: Vec<StaticEntry>,
    /// Networks shared by design (NAT, site forwarders): addresses there are never bound to a
    /// device, whatever the MDM reports.
    pub shared_networks: Vec<String>,
    /// A binding not refreshed by the MDM within this many seconds lapses.
    pub binding_lifetime_s: u64,
    /// Believe plain device aliases (serial, UDID) as tokens, not only signed ones.
    pub plain_tokens: bool,
    /// An EDNS option code on which trusted forwarders send a device id as UTF-8 text.
    pub device_id_text_option: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Aliases of devices whose manual isolation needs a second admin's approval.
    pub critical: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    pub cidr: String,
    pub device: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    pub dir: PathBuf,
}

/// `[tripwire]`: the global switch of tripwires (policies name them) and their cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripwireConfig {
    /// Off by default: a tripwire isolates devices by itself.
    pub enabled: bool,
    /// Seconds after a trip during which the same device sets off none.
    pub cooldown_s: u64,
}

impl Default for TripwireConfig {
    fn default() -> Self {
        TripwireConfig {
            enabled: false,
            cooldown_s: 300,
        }
    }
}

impl TripwireConfig {
    /// The settings the query path needs, when tripwires are on.
    pub fn settings(&self) -> Option<crate::dns::tripwire::TripSettings> {
        self.enabled.then_some(crate::dns::tripwire::TripSettings {
            cooldown_s: self.cooldown_s,
        })
    }
}

/// `[lists]`: the fetching of lists categories.toml names by URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListsConfig {
    /// The last good copy of each list, with its validators.
    pub cache_dir: PathBuf,
    /// CA bundle (PEM) for the list servers; the system's roots when empty.
    pub ca_file: PathBuf,
    /// How often a list is fetched, unless categories.toml gives it its own `refresh_s`.
    pub refresh_s: u64,
    /// The wait after a failed fetch, doubled with each failure up to the refresh interval.
    pub retry_s: u64,
    /// The whole of one fetch.
    pub timeout_ms: u64,
    /// The largest list accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for ListsConfig {
    fn default() -> Self {
        ListsConfig {
            cache_dir: "lists-cache".into(),
            ca_file: PathBuf::new(),
            refresh_s: 3600,
            retry_s: 30,
            timeout_ms: 30_000,
            max_bytes: 64 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dns: DnsConfig::default(),
            upstream: UpstreamConfig::default(),
            cache: CacheLimits::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            identity: IdentityConfig::default(),
            policies: PoliciesConfig::default(),
            jamf: JamfConfig::default(),
            ssf: crate::ssf::SsfConfig::default(),
            devices: DevicesConfig::default(),
            limits: Limits::default(),
            lists: ListsConfig::default(),
            tripwire: TripwireConfig::default(),
            trail: crate::trail::TrailConfig::default(),
            feeds: Vec::new(),
            events: crate::events::EventsConfig::default(),
            query_log: crate::querylog::QueryLogConfig::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec!["127.0.0.1:5353".parse().expect("literal")],
            tls_listen: Vec::new(),
            https_listen: Vec::new(),
            quic_listen: Vec::new(),
            tls_cert: "cert.pem".into(),
            tls_key: "key.pem".into(),
            server_name: "dns.example.com".into(),
            udp_sockets: 0,
            allow: crate::dns::guard::DEFAULT_ALLOW
                .iter()
                .map(|n| n.to_string())
                .collect(),
            max_udp_size: crate::dns::guard::DEFAULT_MAX_UDP_SIZE,
            rrl_responses_per_second: 1000,
            rrl_slip: 2,
            rrl_exempt: crate::dns::guard::DEFAULT_RRL_EXEMPT
                .iter()
                .map(|n| n.to_string())
                .collect(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            timeout_ms: 2000,
            mode: "forward".into(),
            ca_file: PathBuf::new(),
            root_hints: Vec::new(),
            root_hints_file: PathBuf::new(),
            dnssec: false,
            trust_anchor: PathBuf::new(),
            allow_servers: Vec::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9153".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "cordon.db".into(),
            url: String::new(),
            url_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            timeout_ms: 5000,
            node: String::new(),
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            accept: vec!["doh-path".into(), "sni".into(), "source-address".into()],
            trusted_forwarders: Vec::new(),
            static_bindings: Vec::new(),
            shared_networks: Vec::new(),
            binding_lifetime_s: 86_400,
            plain_tokens: true,
            device_id_text_option: None,
        }
    }
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig {
            dir: "policies".into(),
        }
    }
}

/// Identity kinds `identity.accept` knows.
const IDENTITY_KINDS: [&str; 5] = [
    "doh-path",
    "sni",
    "source-address",
    "edns-client-subnet",
    "edns-device-id",
];

/// A setting that cannot be used, and which.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("{0}")]
    Trail(String),
    #[error("{key}: {error}")]
    Network {
        key: &'static str,
        error: NotANetwork,
    },
    #[error(transparent)]
    Upstream(#[from] ServerAddrError),
    #[error("no upstream.servers configured and none found in /etc/resolv.conf")]
    NoUpstreams,
    #[error("upstream.mode \"{0}\": expected \"forward\" or \"recursive\"")]
    Mode(String),
    #[error(transparent)]
    Recursive(#[from] RecursiveError),
    #[error("{0} must be above 0")]
    Zero(&'static str),
    #[error("identity.accept: unknown kind \"{0}\" (known: {known})", known = IDENTITY_KINDS.join(", "))]
    IdentityKind(String),
    #[error("auth.token_secret: {0}")]
    TokenSecret(#[from] TokenError),
    #[error("identity.device_id_text_option {0} is taken by a standard option")]
    TakenOption(u16),
    #[error("dns.server_name must name the DoT/DoQ host (tokens ride in its first label)")]
    ServerName,
    #[error("dns.max_udp_size {0}: must be 512 to 4096")]
    MaxUdpSize(u16),
    #[error("http.listen \"{0}\" is not IP:PORT")]
    HttpListen(String),
    #[error(transparent)]
    Jamf(#[from] JamfConfigError),
    #[error(transparent)]
    Ssf(#[from] crate::ssf::SsfConfigError),
    #[error(transparent)]
    QueryLog(#[from] crate::querylog::QueryLogConfigError),
    #[error("store: {0}")]
    StoreUrl(#[from] BadUrl),
    #[error("store.url_file {path}: {error}")]
    StoreUrlFile {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// `parse_net` for the setting `key`.
fn network(key: &'static str, text: &str) -> Result<ipnet::IpNet, Invalid> {
    parse_net(text).map_err(|error| Invalid::Network { key, error })
}

/// A config that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {invalid}")]
    Invalid { path: PathBuf, invalid: Invalid },
}

impl Config {
    /// Reads a config file; `None` gives the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            let config = Config::default();
            config.validate(Path::new("(embedded default)"))?;
            return Ok(config);
        };
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            }),
            message: e.message().trim().to_string(),
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if config.base_dir.as_os_str().is_empty() {
            config.base_dir = PathBuf::from(".");
        }
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check().map_err(|invalid| ConfigError::Invalid {
            path: path.to_path_buf(),
            invalid,
        })
    }

    fn check(&self) -> Result<(), Invalid> {
        match self.upstream.mode.as_str() {
            "forward" => {
                self.upstream_servers()?;
                self.forward_only()?;
            }
            "recursive" => {
                self.recursive()?;
            }
            other => return Err(Invalid::Mode(other.to_string())),
        }
        self.static_bindings()?;
        self.check_identity()?;
        self.jamf.validate()?;
        self.ssf.validate()?;
        self.identity_rules()?;
        self.guard()?;
        if self.upstream.timeout_ms == 0 {
            return Err(Invalid::Zero("upstream.timeout_ms"));
        }
        if self.store.timeout_ms == 0 {
            return Err(Invalid::Zero("store.timeout_ms"));
        }
        self.store_target()?;
        if let Some(key) = self.limits.zero_key() {
            return Err(Invalid::Zero(key));
        }
        self.check_lists()?;
        self.trail.check().map_err(Invalid::Trail)?;
        self.query_log.check()?;
        if self.encrypted() && self.dns.server_name.trim_matches('.').is_empty() {
            return Err(Invalid::ServerName);
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(Invalid::HttpListen(self.http.listen.clone()));
        }
        Ok(())
    }

    fn check_lists(&self) -> Result<(), Invalid> {
        let l = &self.lists;
        for (value, key) in [
            (l.refresh_s, "lists.refresh_s"),
            (l.retry_s, "lists.retry_s"),
            (l.timeout_ms, "lists.timeout_ms"),
            (l.max_bytes, "lists.max_bytes"),
        ] {
            if value == 0 {
                return Err(Invalid::Zero(key));
            }
        }
        Ok(())
    }

    /// Where the copies of lists named by URL are kept.
    pub fn lists_cache(&self) -> crate::policy::load::ListCache {
        crate::policy::load::ListCache::new(self.resolve(&self.lists.cache_dir))
    }

    /// `[lists]`, its paths resolved.
    pub fn lists(&self) -> crate::lists::Settings {
        let l = &self.lists;
        crate::lists::Settings {
            cache_dir: self.resolve(&l.cache_dir),
            ca_file: (!l.ca_file.as_os_str().is_empty()).then(|| self.resolve(&l.ca_file)),
            refresh: Duration::from_secs(l.refresh_s),
            retry: Duration::from_secs(l.retry_s),
            timeout: Duration::from_millis(l.timeout_ms),
            max_bytes: l.max_bytes,
        }
    }

    /// Identity kinds and trusted networks must be ones Cordon knows, so that a typo is not
    /// silently a weaker setup.
    fn check_identity(&self) -> Result<(), Invalid> {
        let accept = &self.identity.accept;
        if let Some(bad) = accept
            .iter()
            .find(|k| !IDENTITY_KINDS.contains(&k.as_str()))
        {
            return Err(Invalid::IdentityKind(bad.clone()));
        }
        self.shared_networks()?;
        if self.identity.binding_lifetime_s == 0 {
            return Err(Invalid::Zero("identity.binding_lifetime_s"));
        }
        Ok(())
    }

    /// The identity signals to believe, as `identity.*` and `auth.token_secret` say.
    pub fn identity_rules(&self) -> Result<IdentityRules, Invalid> {
        let accepts = |kind: &str| self.identity.accept.iter().any(|k| k == kind);
        let mut trusted = PrefixTable::new();
        for net in &self.identity.trusted_forwarders {
            let net = network("identity.trusted_forwarders", net)?;
            trusted.insert_with(net, (), |_, _| {});
        }
        let key = match self.auth.token_secret.trim() {
            "" => None,
            secret => Some(TokenKey::new(secret)?),
        };
        if let Some(code) = self.identity.device_id_text_option {
            if [8, 26946, 20292].contains(&code) {
                return Err(Invalid::TakenOption(code));
            }
        }
        Ok(IdentityRules {
            source_address: accepts("source-address"),
            doh_path: accepts("doh-path"),
            sni: accepts("sni"),
            client_subnet: accepts("edns-client-subnet"),
            device_option: accepts("edns-device-id"),
            plain_tokens: self.identity.plain_tokens,
            key,
            trusted,
            text_option: self.identity.device_id_text_option,
        })
    }

    pub fn shared_networks(&self) -> Result<Vec<ipnet::IpNet>, Invalid> {
        self.identity
            .shared_networks
            .iter()
            .map(|n| network("identity.shared_networks", n))
            .collect()
    }

    /// Whether any DoT, DoH or DoQ listener is configured (and so TLS is needed).
    pub fn encrypted(&self) -> bool {
        !(self.dns.tls_listen.is_empty()
            && self.dns.https_listen.is_empty()
            && self.dns.quic_listen.is_empty())
    }

    pub fn store_path(&self) -> PathBuf {
        self.resolve(&self.store.path)
    }

    /// Where the state lives: the database URL from the environment, `store.url_file` or
    /// `store.url`, else the embedded file.
    pub fn store_target(&self) -> Result<StoreTarget, Invalid> {
        let store = &self.store;
        let url = match std::env::var(STORE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if !store.url_file.as_os_str().is_empty() => {
                let path = self.resolve(&store.url_file);
                std::fs::read_to_string(&path)
                    .map_err(|error| Invalid::StoreUrlFile { path, error })?
            }
            _ => store.url.clone(),
        };
        let url = url.trim();
        if url.is_empty() {
            return Ok(StoreTarget::Sqlite(self.store_path()));
        }
        let ca_file = (!store.ca_file.as_os_str().is_empty()).then(|| self.resolve(&store.ca_file));
        let timeout = Duration::from_millis(store.timeout_ms);
        let settings = PgSettings::new(url, ca_file, timeout)?;
        Ok(StoreTarget::Postgres(Box::new(settings)))
    }

    /// This node's name among the others.
    pub fn node_name(&self) -> String {
        if !self.store.node.is_empty() {
            return self.store.node.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
        // truncates, and we stop at the first NUL or the end.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let host = if ok {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "cordon".into()
        };
        format!("{host}/{}", std::process::id())
    }

    /// A path from the config, made absolute against the config's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.resolve(&self.policies.dir)
    }

    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http.listen.parse().ok()
    }

    /// `[dns]`'s answers to abuse: who may ask, the UDP size cap, the rate limit.
    pub fn guard(&self) -> Result<crate::dns::guard::GuardSettings, Invalid> {
        let allow = self
            .dns
            .allow
            .iter()
            .map(|n| network("dns.allow", n))
            .collect::<Result<_, _>>()?;
        let rrl_exempt = self
            .dns
            .rrl_exempt
            .iter()
            .map(|n| network("dns.rrl_exempt", n))
            .collect::<Result<_, _>>()?;
        if !(512..=4096).contains(&self.dns.max_udp_size) {
            return Err(Invalid::MaxUdpSize(self.dns.max_udp_size));
        }
        Ok(crate::dns::guard::GuardSettings {
            allow,
            max_udp_size: self.dns.max_udp_size,
            rrl_rate: self.dns.rrl_responses_per_second,
            rrl_slip: self.dns.rrl_slip,
            rrl_exempt,
        })
    }

    /// The upstream servers, or the system's when none are configured.
    pub fn upstream_servers(&self) -> Result<Vec<ServerAddr>, Invalid> {
        if self.upstream.servers.is_empty() {
            return system_resolvers();
        }
        let parse = |s: &String| ServerAddr::parse(s).map_err(Invalid::from);
        self.upstream.servers.iter().map(parse).collect()
    }

    /// `upstream.ca_file`, resolved, when set.
    pub fn upstream_ca_file(&self) -> Option<PathBuf> {
        let path = &self.upstream.ca_file;
        (!path.as_os_str().is_empty()).then(|| self.resolve(path))
    }

    /// Refuses the recursive-mode keys in forward mode, where they would do nothing.
    fn forward_only(&self) -> Result<(), Invalid> {
        let u = &self.upstream;
        let set = [
            ("root_hints", !u.root_hints.is_empty()),
            ("root_hints_file", !u.root_hints_file.as_os_str().is_empty()),
            ("dnssec", u.dnssec),
            ("trust_anchor", !u.trust_anchor.as_os_str().is_empty()),
            ("allow_servers", !u.allow_servers.is_empty()),
        ];
        match set.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(RecursiveError::RecursiveOnly(key).into()),
            None => Ok(()),
        }
    }

    /// Recursive mode's settings: the root hints (the config's, its file's, or IANA's), DNSSEC,
    /// the networks it may query. Reads the hints file and checks the trust anchor.
    pub fn recursive(&self) -> Result<RecursiveSettings, Invalid> {
        let u = &self.upstream;
        if !u.servers.is_empty() {
            return Err(RecursiveError::Servers.into());
        }
        let file = !u.root_hints_file.as_os_str().is_empty();
        let roots = match (u.root_hints.is_empty(), file) {
            (false, true) => return Err(RecursiveError::BothHints.into()),
            (false, false) => u
                .root_hints
                .iter()
                .map(|h| {
                    h.trim()
                        .parse()
                        .map_err(|_| RecursiveError::RootHint(h.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            (true, true) => recursive::read_root_hints(&self.resolve(&u.root_hints_file))?,
            (true, false) => recursive::IANA_ROOT_HINTS.to_vec(),
        };
        let trust_anchor = if u.trust_anchor.as_os_str().is_empty() {
            None
        } else if !u.dnssec {
            return Err(RecursiveError::TrustAnchorWithoutDnssec.into());
        } else {
            let path = self.resolve(&u.trust_anchor);
            recursive::read_trust_anchor(&path)?;
            Some(path)
        };
        let allow_servers = u
            .allow_servers
            .iter()
            .map(|n| network("upstream.allow_servers", n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecursiveSettings {
            roots,
            dnssec: u.dnssec,
            trust_anchor,
            allow_servers,
            timeout: Duration::from_millis(u.timeout_ms),
        })
    }

    /// What the control plane's writer needs: the policies, the devices config names, the
    /// networks never bound, and how long a binding lives.
    pub fn writer(&self, clock: Arc<dyn Clock>) -> Result<WriterConfig, Invalid> {
        Ok(WriterConfig {
            policies_dir: self.policies_dir(),
            lists_cache: Some(self.lists_cache()),
            statics: self.static_bindings()?,
            shared_networks: self.shared_networks()?,
            binding_lifetime: Duration::from_secs(self.identity.binding_lifetime_s),
            critical: self.devices.critical.clone(),
            clock,
        })
    }

    pub fn static_bindings(&self) -> Result<Vec<StaticBinding>, Invalid> {
        self.identity
            .static_bindings
            .iter()
            .map(|s| {
                Ok(StaticBinding {
                    net: network("identity.static", &s.cidr)?,
                    device: s.device.clone(),
                })
            })
            .collect()
    }
}

/// The `nameserver` lines of /etc/resolv.conf.
fn system_resolvers() -> Result<Vec<ServerAddr>, Invalid> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<ServerAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| ServerAddr::parse(rest.trim().split('%').next()?).ok())
        .collect();
    if servers.is_empty() {
        return Err(Invalid::NoUpstreams);
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream, so that no test depends on this machine's /etc/resolv.conf.
    const UPSTREAM: &str = "[upstream]\nservers = [\"192.0.2.53\"]\n";

    /// Writes `text` as `cordon.toml` in a fresh directory and loads it.
    fn load(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cordon.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = Config::load(Some(&path));
        (dir, loaded)
    }

    /// The line and message of a parse error.
    fn parse_error(text: &str) -> (usize, String) {
        match load(text).1 {
            Err(ConfigError::Parse { line, message, .. }) => (line, message),
            other => panic!("{text}: expected a parse error, got {other:?}"),
        }
    }

    /// The message of a validation error.
    fn invalid(text: &str) -> String {
        let (dir, loaded) = load(text);
        match loaded {
            Err(ConfigError::Invalid { path, invalid }) => {
                assert_eq!(path, dir.path().join("cordon.toml"));
                invalid.to_string()
            }
            other => panic!("{text}: expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_key_left_out_takes_its_default() {
        let (dir, loaded) = load(UPSTREAM);
        let c = loaded.unwrap();
        assert_eq!(c.dns.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert!(c.dns.tls_listen.is_empty());
        assert!(c.dns.https_listen.is_empty());
        assert!(c.dns.quic_listen.is_empty());
        assert_eq!(c.dns.tls_cert, PathBuf::from("cert.pem"));
        assert_eq!(c.dns.tls_key, PathBuf::from("key.pem"));
        assert_eq!(c.dns.server_name, "dns.example.com");
        assert_eq!(c.dns.udp_sockets, 0);
        assert_eq!(c.upstream.servers, vec!["192.0.2.53"]);
        assert_eq!(c.upstream.timeout_ms, 2000);
        assert_eq!(c.upstream.mode, "forward");
        assert_eq!(c.cache.max_entries, 200_000);
        assert_eq!(c.cache.min_ttl, 0);
        assert_eq!(c.cache.max_ttl, 86_400);
        assert!(c.cache.serve_stale);
        assert_eq!(c.http.listen, "127.0.0.1:9153");
        assert_eq!(c.http_listen(), Some("127.0.0.1:9153".parse().unwrap()));
        assert_eq!(c.store.path, PathBuf::from("cordon.db"));
        assert_eq!(c.store.url, "");
        assert!(c.auth.webhook_tokens.is_empty());
        assert_eq!(c.auth.token_secret, "");
        assert!(c.auth.admin.is_empty());
        assert_eq!(c.identity.accept, ["doh-path", "sni", "source-address"]);
        assert!(c.identity.trusted_forwarders.is_empty());
        assert!(c.identity.static_bindings.is_empty());
        assert!(c.identity.shared_networks.is_empty());
        assert_eq!(c.identity.binding_lifetime_s, 86_400);
        assert!(c.identity.plain_tokens);
        assert_eq!(c.identity.device_id_text_option, None);
        assert_eq!(c.jamf.url, "");
        assert_eq!(c.jamf.client_id, "");
        assert_eq!(c.jamf.client_secret, "");
        assert_eq!(c.jamf.reconcile_interval_s, 900);
        assert_eq!(c.jamf.timeout_ms, 10_000);
        assert!(c.devices.critical.is_empty());
        assert_eq!(c.policies.dir, PathBuf::from("policies"));
        assert!(!c.encrypted());
        assert_eq!(c.base_dir, dir.path());
        // the accepted identity signals by default: tokens and the source address, no EDNS
        let rules = c.identity_rules().unwrap();
        assert!(rules.doh_path && rules.sni && rules.source_address && rules.plain_tokens);
        assert!(!rules.client_subnet && !rules.device_option);
        assert!(rules.key.is_none());

        // the embedded default is the same, relative to the working directory
        let embedded = Config::default();
        assert_eq!(embedded.base_dir, PathBuf::from("."));
        assert_eq!(embedded.store_path(), PathBuf::from("./cordon.db"));
        assert_eq!(embedded.policies_dir(), PathBuf::from("./policies"));
        assert!(embedded.upstream.servers.is_empty());
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc").join("cordon");
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join("cordon.toml");
        std::fs::write(
            &path,
            format!(
                "{UPSTREAM}[store]\npath = \"state/cordon.db\"\n[policies]\ndir = \"../policies\"\n\
                 [dns]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/ssl/cordon.key\"\n"
            ),
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.base_dir, sub);
        assert_eq!(c.store_path(), sub.join("state/cordon.db"));
        assert_eq!(c.policies_dir(), sub.join("../policies"));
        assert_eq!(c.resolve(&c.dns.tls_cert), sub.join("tls/cert.pem"));
        assert_eq!(
            c.resolve(&c.dns.tls_key),
            PathBuf::from("/etc/ssl/cordon.key"),
            "absolute paths stay as they are"
        );
        // paths left out are relative too
        let (dir, loaded) = load(UPSTREAM);
        let c = loaded.unwrap();
        assert_eq!(c.store_path(), dir.path().join("cordon.db"));
        assert_eq!(c.policies_dir(), dir.path().join("policies"));
        assert_eq!(c.resolve(&c.dns.tls_cert), dir.path().join("cert.pem"));
    }

    #[test]
    fn the_lists_section_has_defaults_and_relative_paths() {
        let (dir, loaded) = load(UPSTREAM);
        let c = loaded.unwrap();
        assert_eq!(c.lists, ListsConfig::default());
        let s = c.lists();
        assert_eq!(s.cache_dir, dir.path().join("lists-cache"));
        assert_eq!(s.ca_file, None);
        assert_eq!(s.refresh, Duration::from_secs(3600));
        assert_eq!(s.retry, Duration::from_secs(30));
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.lists_cache().dir(), dir.path().join("lists-cache"));

        let text = format!(
            "{UPSTREAM}[lists]\ncache_dir = \"/var/cache/cordon\"\nca_file = \"ca.pem\"\n\
             refresh_s = 900\nretry_s = 5\ntimeout_ms = 2000\nmax_bytes = 1048576\n"
        );
        let (dir, loaded) = load(&text);
        let s = loaded.unwrap().lists();
        assert_eq!(s.cache_dir, PathBuf::from("/var/cache/cordon"));
        assert_eq!(s.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(s.refresh, Duration::from_secs(900));
        assert_eq!(s.retry, Duration::from_secs(5));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.max_bytes, 1 << 20);

        for key in ["refresh_s", "retry_s", "timeout_ms", "max_bytes"] {
            let message = invalid(&format!("{UPSTREAM}[lists]\n{key} = 0\n"));
            assert_eq!(message, format!("lists.{key} must be above 0"));
        }
        let (line, message) = parse_error("[lists]\nrefresh = 3\n");
        assert_eq!(line, 2);
        assert!(message.contains("unknown field `refresh`"), "{message}");
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        match Config::load(Some(&path)) {
            Err(e @ ConfigError::Read { .. }) => {
                assert!(e
                    .to_string()
                    .starts_with(&format!("{}: cannot read:", path.display())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let (line, message) = parse_error("[dns]\nlisten = [\"127.0.0.1:53\"]\nbogus = 1\n");
        assert_eq!(line, 3);
        assert!(
            message.starts_with("unknown field `bogus`, expected one of `listen`"),
            "{message}"
        );
        let (line, message) = parse_error("# a comment\n\n[nope]\nx = 1\n");
        assert_eq!(line, 3);
        assert!(message.contains("unknown field `nope`"), "{message}");
        let (line, message) = parse_error(&format!(
            "{UPSTREAM}[[auth.admin]]\ntoken = \"t\"\nrole = \"admin\"\nrank = 1\n"
        ));
        assert_eq!(line, 6);
        assert!(message.contains("unknown field `rank`"), "{message}");
        let (line, message) = parse_error(
            "[identity]\nstatic = [{cidr = \"10.0.0.0/8\", device = \"x\", why = 1}]\n",
        );
        assert_eq!(line, 2);
        assert!(message.contains("unknown field `why`"), "{message}");
        // and the whole error says file:line
        let (dir, loaded) = load("[cache]\nmax_entries = 5\nserve_stale = true\nmaxttl = 3\n");
        let shown = loaded.unwrap_err().to_string();
        let expected = format!(
            "{}:4: unknown field `maxttl`",
            dir.path().join("cordon.toml").display()
        );
        assert!(shown.starts_with(&expected), "{shown}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_with_its_line() {
        for (text, line, wanted) in [
            (
                "[upstream]\ntimeout_ms = \"fast\"\n",
                2,
                "invalid type: string \"fast\", expected u64",
            ),
            (
                "[dns]\n\nlisten = \"127.0.0.1:53\"\n",
                3,
                "invalid type: string",
            ),
            (
                "[dns]\nlisten = [\"localhost:53\"]\n",
                2,
                "invalid socket address",
            ),
            (
                "[cache]\nserve_stale = \"yes\"\n",
                2,
                "invalid type: string \"yes\", expected a boolean",
            ),
            ("[cache]\nmin_ttl = -1\n", 2, "invalid value: integer `-1`"),
            (
                "[auth]\nwebhook_tokens = \"one\"\n",
                2,
                "invalid type: string \"one\", expected a sequence",
            ),
            (
                "[[auth.admin]]\ntoken = \"t\"\nrole = \"root\"\n",
                3,
                "unknown variant `root`",
            ),
            (
                "[[auth.admin]]\nrole = \"admin\"\n",
                1,
                "missing field `token`",
            ),
            (
                "[identity]\ndevice_id_text_option = 70000\n",
                2,
                "invalid value: integer `70000`",
            ),
            ("dns = 5\n", 1, "invalid type: integer `5`"),
            ("[http]\nlisten = = 1\n", 2, ""),
        ] {
            let (got_line, message) = parse_error(text);
            assert_eq!(got_line, line, "{text}: {message}");
            assert!(message.contains(wanted), "{text}: {message}");
        }
    }

    #[test]
    fn recursive_mode_needs_no_servers_and_reads_its_root_hints() {
        let (_dir, c) = load("[upstream]\nmode = \"recursive\"\n");
        let r = c.unwrap().recursive().unwrap();
        assert_eq!(r.roots, recursive::IANA_ROOT_HINTS.to_vec());
        assert!(!r.dnssec && r.trust_anchor.is_none() && r.allow_servers.is_empty());
        assert_eq!(r.timeout, Duration::from_millis(2000));

        let (_dir, c) = load(
            "[upstream]\nmode = \"recursive\"\nroot_hints = [\"127.0.53.1\", \"::1\"]\n\
             allow_servers = [\"127.0.53.0/24\"]\ntimeout_ms = 5000\n",
        );
        let r = c.unwrap().recursive().unwrap();
        let ips: Vec<std::net::IpAddr> =
            vec!["127.0.53.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(r.roots, ips);
        assert_eq!(
            r.allow_servers,
            vec!["127.0.53.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
        assert_eq!(r.timeout, Duration::from_millis(5000));

        // a relative hints file is read from the config file's folder
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("named.root"),
            ".  3600000  NS  A.ROOT.\nA.ROOT.  3600000  A  127.0.53.1\n",
        )
        .unwrap();
        let path = dir.path().join("cordon.toml");
        std::fs::write(
            &path,
            "[upstream]\nmode = \"recursive\"\nroot_hints_file = \"named.root\"\n",
        )
        .unwrap();
        let r = Config::load(Some(&path)).unwrap().recursive().unwrap();
        assert_eq!(
            r.roots,
            vec!["127.0.53.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn each_validation_error_is_refused_with_what_is_wrong() {
        let encrypted = "[dns]\ntls_listen = [\"127.0.0.1:853\"]\n";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{UPSTREAM}[limits]\nmax_connections = 0\n"),
                "limits.max_connections must be above 0",
            ),
            (
                format!("{UPSTREAM}[limits]\nupstream_max_in_flight = 0\n"),
                "limits.upstream_max_in_flight must be above 0",
            ),
            (
                "[upstream]\nservers = [\"tls://dns.quad9.net:853\"]\n".into(),
                "\"tls://dns.quad9.net:853\": expected an IP address (names are not resolved, to avoid a loop) and the certificate's name after #, as in tls://9.9.9.9:853#dns.quad9.net",
            ),
            (
                "[upstream]\nservers = [\"https://dns.example/dns-query\"]\n".into(),
                "as in https://9.9.9.9/dns-query#dns.quad9.net",
            ),
            (
                "[upstream]\nservers = [\"tls://192.0.2.53#bad name\"]\n".into(),
                "\"tls://192.0.2.53#bad name\": \"bad name\" is not a valid TLS server name",
            ),
            (
                "[upstream]\nservers = [\"tls://192.0.2.53#\"]\n".into(),
                "\"\" is not a valid TLS server name",
            ),
            (
                "[upstream]\nservers = [\"udp://192.0.2.53#dns.example\"]\n".into(),
                "\"udp://192.0.2.53#dns.example\": only tls:// and https:// servers take a name after #",
            ),
            (
                "[upstream]\nservers = [\"https://192.0.2.53/dns-query?dns=x#dns.example\"]\n".into(),
                "a DoH path starts with / and has no query string",
            ),
            (
                "[upstream]\nservers = [\"quic://192.0.2.53\"]\n".into(),
                "unknown scheme quic:// (use udp://, tcp://, tls:// or https://)",
            ),
            (
                "[upstream]\nservers = [\"192.0.2.53\", \"dns.example\"]\n".into(),
                "\"dns.example\": expected IP:PORT (names are not resolved, to avoid a loop)",
            ),
            (
                format!("{UPSTREAM}[[identity.static]]\ncidr = \"10.0.0.300/32\"\ndevice = \"x\"\n"),
                "identity.static: \"10.0.0.300/32\" is not an address or a CIDR network",
            ),
            (
                format!("{UPSTREAM}[identity]\naccept = [\"doh-path\", \"carrier-pigeon\"]\n"),
                "identity.accept: unknown kind \"carrier-pigeon\" (known: doh-path, sni, source-address, edns-client-subnet, edns-device-id)",
            ),
            (
                format!("{UPSTREAM}[identity]\ntrusted_forwarders = [\"10.0.0.0/33\"]\n"),
                "identity.trusted_forwarders: \"10.0.0.0/33\" is not an address or a CIDR network",
            ),
            (
                format!("{UPSTREAM}[identity]\nshared_networks = [\"nat-pool\"]\n"),
                "identity.shared_networks: \"nat-pool\" is not an address or a CIDR network",
            ),
            (
                format!("{UPSTREAM}[identity]\nbinding_lifetime_s = 0\n"),
                "identity.binding_lifetime_s must be above 0",
            ),
            (
                format!("{UPSTREAM}[identity]\ndevice_id_text_option = 8\n"),
                "identity.device_id_text_option 8 is taken by a standard option",
            ),
            (
                format!("{UPSTREAM}[identity]\ndevice_id_text_option = 26946\n"),
                "identity.device_id_text_option 26946 is taken by a standard option",
            ),
            (
                format!("{UPSTREAM}[identity]\ndevice_id_text_option = 20292\n"),
                "identity.device_id_text_option 20292 is taken by a standard option",
            ),
            (
                format!("{UPSTREAM}[auth]\ntoken_secret = \"too-short\"\n"),
                "auth.token_secret: the token secret is 9 bytes long; it must be at least 16",
            ),
            (
                format!("{UPSTREAM}[jamf]\nurl = \"ftp://jamf.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n"),
                "jamf.url \"ftp://jamf.example\" must start with https://",
            ),
            (
                format!("{UPSTREAM}[jamf]\nurl = \"https://x.jamfcloud.com\"\nclient_id = \"a\"\n"),
                "jamf.client_id and jamf.client_secret are needed with jamf.url",
            ),
            (
                format!("{UPSTREAM}[jamf]\nurl = \"https://x.jamfcloud.com\"\nclient_secret = \"b\"\n"),
                "jamf.client_id and jamf.client_secret are needed with jamf.url",
            ),
            (
                format!("{UPSTREAM}[jamf]\nurl = \"https://x.jamfcloud.com\"\nclient_id = \"a\"\nclient_secret = \"b\"\ntimeout_ms = 0\n"),
                "jamf.timeout_ms must be above 0",
            ),
            (
                "[upstream]\nservers = [\"192.0.2.53\"]\nmode = \"iterative\"\n".into(),
                "upstream.mode \"iterative\": expected \"forward\" or \"recursive\"",
            ),
            (
                "[upstream]\nservers = [\"192.0.2.53\"]\nmode = \"recursive\"\n".into(),
                "upstream.servers: recursive mode asks the root servers",
            ),
            (
                "[upstream]\nmode = \"recursive\"\nroot_hints = [\"a.root-servers.net\"]\n".into(),
                "upstream.root_hints: \"a.root-servers.net\" is not an IP address",
            ),
            (
                "[upstream]\nmode = \"recursive\"\nroot_hints = [\"192.0.2.1\"]\nroot_hints_file = \"named.root\"\n".into(),
                "give one of them, not both",
            ),
            (
                "[upstream]\nmode = \"recursive\"\nroot_hints_file = \"/nonexistent/named.root\"\n".into(),
                "upstream.root_hints_file /nonexistent/named.root: ",
            ),
            (
                "[upstream]\nmode = \"recursive\"\ntrust_anchor = \"root.key\"\n".into(),
                "upstream.trust_anchor needs upstream.dnssec = true",
            ),
            (
                "[upstream]\nmode = \"recursive\"\ndnssec = true\ntrust_anchor = \"/nonexistent/root.key\"\n".into(),
                "upstream.trust_anchor /nonexistent/root.key: ",
            ),
            (
                "[upstream]\nmode = \"recursive\"\nallow_servers = [\"127.0.0.0/33\"]\n".into(),
                "upstream.allow_servers: \"127.0.0.0/33\" is not an address or a CIDR network",
            ),
            (
                format!("{UPSTREAM}dnssec = true\n"),
                "upstream.dnssec applies to recursive mode only (upstream.mode = \"recursive\")",
            ),
            (
                format!("{UPSTREAM}root_hints = [\"192.0.2.1\"]\n"),
                "upstream.root_hints applies to recursive mode only",
            ),
            (
                "[upstream]\nservers = [\"192.0.2.53\"]\ntimeout_ms = 0\n".into(),
                "upstream.timeout_ms must be above 0",
            ),
            (
                format!("{UPSTREAM}{encrypted}server_name = \".\"\n"),
                "dns.server_name must name the DoT/DoQ host (tokens ride in its first label)",
            ),
            (
                format!("{UPSTREAM}[dns]\nquic_listen = [\"127.0.0.1:853\"]\nserver_name = \"\"\n"),
                "dns.server_name must name the DoT/DoQ host",
            ),
            (
                format!("{UPSTREAM}[http]\nlisten = \"localhost:9153\"\n"),
                "http.listen \"localhost:9153\" is not IP:PORT",
            ),
        ];
        for (text, wanted) in cases {
            let message = invalid(&text);
            assert!(message.contains(wanted), "{text}: {message}");
        }
    }

    #[test]
    fn what_the_checks_allow_loads() {
        for text in [
            // no HTTP listener, and no server name without an encrypted listener
            format!("{UPSTREAM}[http]\nlisten = \"\"\n[dns]\nserver_name = \"\"\n"),
            // plain http:// for the Jamf Pro API (a local stand-in), and a free EDNS option code
            format!("{UPSTREAM}[jamf]\nurl = \"http://127.0.0.1:8080\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[identity]\ndevice_id_text_option = 65001\n"),
            // a 16-byte token secret, every identity kind, addresses and networks
            format!("{UPSTREAM}[auth]\ntoken_secret = \"0123456789abcdef\"\n[identity]\naccept = [\"doh-path\", \"sni\", \"source-address\", \"edns-client-subnet\", \"edns-device-id\"]\ntrusted_forwarders = [\"10.0.0.1\", \"2001:db8::/32\"]\nshared_networks = [\"100.64.0.0/10\"]\n"),
            "[upstream]\nservers = [\"udp://192.0.2.53:5300\", \"tcp://[2001:db8::53]:53\", \"192.0.2.54\"]\n".to_string(),
            "[upstream]\nservers = [\"tls://192.0.2.53#dns.example\", \"https://[2001:db8::53]/q#dns.example\"]\nca_file = \"ca.pem\"\n".to_string(),
        ] {
            let (_, loaded) = load(&text);
            assert!(loaded.is_ok(), "{text}: {loaded:?}");
        }
        let (_, loaded) =
            load("[http]\nlisten = \"\"\n[upstream]\nservers = [\"tcp://192.0.2.53:5300\"]\n");
        let c = loaded.unwrap();
        assert_eq!(c.http_listen(), None, "an empty http.listen turns HTTP off");
        assert_eq!(
            c.upstream_servers().unwrap(),
            vec![ServerAddr {
                addr: "192.0.2.53:5300".parse().unwrap(),
                protocol: crate::dns::upstream::Protocol::Tcp,
                tls_name: String::new(),
                path: String::new(),
            }]
        );
    }
}
