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

/// The socket peer of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub transport: Transport,
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
