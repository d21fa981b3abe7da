//! Who asked: a query's client -> the device behind it -> the device group it is in right now.
//!
//! Every signal that names a group is a candidate and the stricter one wins (contract 8), so a
//! device can never talk its way out of the group another signal puts it in.

use std::fmt;
use std::net::IpAddr;

use crate::policy::{DeviceId, GroupIdx, Snapshot};

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
    pub transport: Transport,
    pub token: Option<Token>,
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

/// The outcome of identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub device: Option<DeviceId>,
    pub group: GroupIdx,
    pub source: GroupSource,
}

/// Identifies `client`, optionally with a device the transport already named (a token).
pub fn identify(snapshot: &Snapshot, client: &Client, claimed: Option<DeviceId>) -> Identity {
    let devices = &snapshot.devices;
    let configured = if snapshot.static_devices.is_empty() {
        None
    } else {
        snapshot.static_devices.longest(client.addr).copied()
    };
    let reported = if devices.bindings.is_empty() {
        None
    } else {
        devices.bindings.get(&client.addr).copied()
    };
    let mut best: Option<(GroupIdx, GroupSource)> = None;
    let mut consider = |group: GroupIdx, source| {
        if best.is_none_or(|(b, _)| group < b) {
            best = Some((group, source));
        }
    };
    for device in [reported, configured, claimed].into_iter().flatten() {
        if let Some(&g) = devices.groups.get(&device) {
            consider(g, GroupSource::Device);
        }
    }
    if !snapshot.client_groups.is_empty() {
        for &g in snapshot.client_groups.matches(client.addr) {
            consider(g, GroupSource::ClientNetwork);
        }
    }
    let (group, source) = best.unwrap_or((snapshot.default_group, GroupSource::Default));
    // Name the device that decided, else the most specific one known.
    let device = [reported, configured, claimed]
        .into_iter()
        .flatten()
        .find(|d| devices.groups.get(d) == Some(&group))
        .or(claimed)
        .or(reported)
        .or(configured);
    Identity {
        device,
        group,
        source,
    }
}
