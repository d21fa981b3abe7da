//! The server config file (INTERFACE.md): every key optional, unknown keys refused, relative
//! paths taken from the config file's own directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dns::upstream::{ServerAddr, ServerAddrError};
use crate::identity::IdentityRules;
use crate::jamf::api::{JamfConfig, JamfConfigError};
use crate::policy::cidr::{parse_net, PrefixTable};
use crate::policy::StaticBinding;
use crate::token::{TokenError, TokenKey};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dns: DnsConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub identity: IdentityConfig,
    pub policies: PoliciesConfig,
    pub jamf: JamfConfig,
    pub devices: DevicesConfig,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Empty: the nameservers of /etc/resolv.conf.
    pub servers: Vec<String>,
    pub timeout_ms: u64,
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub serve_stale: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Empty string: no HTTP listener.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub redis_url: String,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            dns: DnsConfig::default(),
            upstream: UpstreamConfig::default(),
            cache: CacheConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            identity: IdentityConfig::default(),
            policies: PoliciesConfig::default(),
            jamf: JamfConfig::default(),
            devices: DevicesConfig::default(),
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
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            timeout_ms: 2000,
            mode: "forward".into(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 200_000,
            min_ttl: 0,
            max_ttl: 86_400,
            serve_stale: true,
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
            redis_url: String::new(),
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
    #[error("{key}: {message}")]
    Network { key: &'static str, message: String },
    #[error(transparent)]
    Upstream(#[from] ServerAddrError),
    #[error("no upstream.servers configured and none found in /etc/resolv.conf")]
    NoUpstreams,
    #[error("upstream.mode \"{0}\": only \"forward\" is supported yet")]
    Mode(String),
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
    #[error("http.listen \"{0}\" is not IP:PORT")]
    HttpListen(String),
    #[error(transparent)]
    Jamf(#[from] JamfConfigError),
}

/// `parse_net` for the setting `key`.
fn network(key: &'static str, text: &str) -> Result<ipnet::IpNet, Invalid> {
    parse_net(text).map_err(|e| Invalid::Network {
        key,
        message: e.to_string(),
    })
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
        self.upstream_servers()?;
        self.static_bindings()?;
        self.check_identity()?;
        self.jamf.validate()?;
        self.identity_rules()?;
        if self.upstream.mode != "forward" {
            return Err(Invalid::Mode(self.upstream.mode.clone()));
        }
        if self.upstream.timeout_ms == 0 {
            return Err(Invalid::Zero("upstream.timeout_ms"));
        }
        if self.encrypted() && self.dns.server_name.trim_matches('.').is_empty() {
            return Err(Invalid::ServerName);
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(Invalid::HttpListen(self.http.listen.clone()));
        }
        Ok(())
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

    /// The upstream servers, or the system's when none are configured.
    pub fn upstream_servers(&self) -> Result<Vec<ServerAddr>, Invalid> {
        if self.upstream.servers.is_empty() {
            return system_resolvers();
        }
        let parse = |s: &String| ServerAddr::parse(s).map_err(Invalid::from);
        self.upstream.servers.iter().map(parse).collect()
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
