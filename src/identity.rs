//! Who asked: a query's client -> the device behind it -> the device group it is in right now.
//!
//! Every signal that names a group is a candidate and the stricter one wins (contract 8), so a
//! device can never talk its way out of the group another signal puts it in.

use std::fmt;
use std::net::IpAddr;

use crate::policy::cidr::PrefixTable;
use crate::policy::{DeviceId, GroupIdx, Snapshot};
use crate::token::{TokenClaim, TokenKey};

/// The transport a query came over; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Dot,
    Doh,
    Doq,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Dot,
        Transport::Doh,
        Transport::Doq,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Dot => "dot",
            Transport::Doh => "doh",
            Transport::Doq => "doq",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The socket peer of one query, and the token its transport carried (DoH path, DoT/DoQ SNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    /// The peer's port: for those who log queries (dnstap's `query_port`), never for deciding.
    pub port: u16,
    pub transport: Transport,
    pub token: Option<Token>,
}

impl Client {
    /// The same client with its address normalised: an IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`,
    /// as a dual-stack socket reports an IPv4 client) is that IPv4 address, as every binding,
    /// static binding and network is kept. Copies only; no allocation.
    #[inline]
    pub fn canonical(self) -> Client {
        Client {
            addr: self.addr.to_canonical(),
            ..self
        }
    }
}

/// A token as a transport presented it: at most 64 ASCII bytes, held inline so that a client
/// stays `Copy` and cheap to move into an upstream task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token {
    bytes: [u8; 64],
    len: u8,
}

impl Token {
    /// `None` for an empty, over-long or non-ASCII token: no device is named by such a thing.
    pub fn new(text: &str) -> Option<Token> {
        if text.is_empty() || text.len() > 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Token {
            bytes,
            len: text.len() as u8,
        })
    }

    /// A token that names no device: what an unusable presented token becomes.
    pub fn invalid() -> Token {
        Token {
            bytes: [0; 64],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are credentials: show only their length.
        write!(f, "Token({} bytes)", self.len)
    }
}

/// What placed the query in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// The device's placement or memberships.
    Device,
    /// A group's `clients` network holds the source address.
    ClientNetwork,
    /// Nothing did: the default group.
    Default,
}

impl GroupSource {
    /// Why the group applies, in words (`cordon explain`, the console).
    pub fn describe(self) -> &'static str {
        match self {
            GroupSource::Device => "the device's placement",
            GroupSource::ClientNetwork => "a client network of the group",
            GroupSource::Default => "nothing else matched: default group",
        }
    }
}

/// The outcome of identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub device: Option<DeviceId>,
    pub group: GroupIdx,
    pub source: GroupSource,
    pub token: TokenOutcome,
}

/// What became of the token a query presented, for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// No token was presented.
    Absent,
    /// It named a known device.
    Valid,
    /// A well-formed token, or a plain alias, that names no known device.
    Unknown,
    /// A signed token whose signature does not verify.
    Forged,
    /// Config does not believe tokens on this transport.
    Ignored,
}

impl TokenOutcome {
    pub const ALL: [TokenOutcome; 5] = [
        TokenOutcome::Absent,
        TokenOutcome::Valid,
        TokenOutcome::Unknown,
        TokenOutcome::Forged,
        TokenOutcome::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutcome::Absent => "absent",
            TokenOutcome::Valid => "valid",
            TokenOutcome::Unknown => "unknown",
            TokenOutcome::Forged => "forged",
            TokenOutcome::Ignored => "ignored",
        }
    }
}

/// Which identity signals config believes (`identity.accept` and friends).
#[derive(Debug, Default)]
pub struct IdentityRules {
    pub source_address: bool,
    pub doh_path: bool,
    pub sni: bool,
    pub client_subnet: bool,
    pub device_option: bool,
    /// Plain aliases (serial, UDID) count as tokens, not only signed ones.
    pub plain_tokens: bool,
    /// Verifies signed tokens; `None` when no `auth.token_secret` is set.
    pub key: Option<TokenKey>,
    /// Forwarders whose EDNS identity options are believed.
    pub trusted: PrefixTable<()>,
    /// The EDNS option code of plain-text device ids.
    pub text_option: Option<u16>,
}

impl IdentityRules {
    /// Source addresses only: what plain DNS without config believes.
    pub fn source_only() -> IdentityRules {
        IdentityRules {
            source_address: true,
            ..IdentityRules::default()
        }
    }

    /// Whether EDNS identity options from `addr` are believed.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        (self.client_subnet || self.device_option)
            && !self.trusted.is_empty()
            && self.trusted.longest(addr).is_some()
    }
}

/// What a trusted forwarder said about the client behind it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// EDNS Client Subnet: stands in for the source address. Normalised: an IPv4-mapped
    /// address is the IPv4 address it maps.
    pub subnet: Option<IpAddr>,
    /// The subnet's address as the forwarder sent it, for the echo (RFC 7871 §7.2.1).
    pub sent_subnet: Option<IpAddr>,
    /// The subnet's source prefix length.
    pub subnet_prefix: u8,
    /// A device-id option, as an alias value.
    pub device: Option<String>,
}

/// Identifies `client` from every signal config believes: the token its transport carried, what
/// a trusted forwarder said, and its (or the forwarded) source address.
pub fn identify(
    snapshot: &Snapshot,
    client: &Client,
    rules: &IdentityRules,
    forwarded: &Forwarded,
) -> Identity {
    let (by_token, token) = token_device(snapshot, client, rules);
    let by_forwarder = forwarded
        .device
        .as_deref()
        .and_then(|a| snapshot.devices.by_alias(a));
    let addr = forwarded.subnet.unwrap_or(client.addr);
    let mut identity = resolve(
        snapshot,
        addr,
        rules.source_address,
        [by_token, by_forwarder],
    );
    identity.token = token;
    identity
}

/// The device a presented token names.
fn token_device(
    snapshot: &Snapshot,
    client: &Client,
    rules: &IdentityRules,
) -> (Option<DeviceId>, TokenOutcome) {
    let Some(token) = client.token else {
        return (None, TokenOutcome::Absent);
    };
    let believed = match client.transport {
        Transport::Doh => rules.doh_path,
        Transport::Dot | Transport::Doq => rules.sni,
        Transport::Udp | Transport::Tcp => false,
    };
    if !believed {
        return (None, TokenOutcome::Ignored);
    }
    let text = token.as_str();
    let devices = &snapshot.devices;
    let found = match &rules.key {
        // A token that looks signed is only ever taken as signed: a forgery must not get a
        // second chance as a plain alias.
        Some(key) if TokenKey::looks_signed(text) => match key.verify(text) {
            Ok(TokenClaim::Alias(alias)) => devices.by_alias(&alias),
            Ok(TokenClaim::Hashed(digest)) => devices.digests.get(&digest),
            Err(_) => return (None, TokenOutcome::Forged),
        },
        _ if rules.plain_tokens => devices.by_alias(text),
        _ => None,
    };
    match found {
        Some(d) => (Some(d), TokenOutcome::Valid),
        None => (None, TokenOutcome::Unknown),
    }
}

/// The group for a query from `addr` by devices already named (token, forwarder): the stricter
/// of every candidate (contract 8).
pub fn resolve(
    snapshot: &Snapshot,
    addr: IpAddr,
    by_address: bool,
    named: [Option<DeviceId>; 2],
) -> Identity {
    // Whoever called, the address is looked up in its IPv4 form when it maps one.
    let addr = addr.to_canonical();
    let devices = &snapshot.devices;
    let configured = if !by_address || snapshot.static_devices.is_empty() {
        None
    } else {
        snapshot.static_devices.longest(addr).copied()
    };
    let reported = if !by_address || devices.bindings.is_empty() {
        None
    } else {
        devices.bound(&addr)
    };
    let candidates = [named[0], named[1], reported, configured];
    let mut best: Option<(GroupIdx, GroupSource)> = None;
    let mut consider = |group: GroupIdx, source| {
        if best.is_none_or(|(b, _)| group < b) {
            best = Some((group, source));
        }
    };
    for device in candidates.into_iter().flatten() {
        if let Some(&g) = devices.groups.get(&device) {
            consider(g, GroupSource::Device);
        }
    }
    if !snapshot.client_groups.is_empty() {
        for &g in snapshot.client_groups.matches(addr) {
            consider(g, GroupSource::ClientNetwork);
        }
    }
    let (group, source) = best.unwrap_or((snapshot.default_group, GroupSource::Default));
    // Name the device that decided, else the first one known.
    let device = candidates
        .into_iter()
        .flatten()
        .find(|d| devices.groups.get(d) == Some(&group))
        .or(candidates.into_iter().flatten().next());
    Identity {
        device,
        group,
        source,
        token: TokenOutcome::Absent,
    }
}
