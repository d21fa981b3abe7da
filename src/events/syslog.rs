//! The syslog sink: each event one RFC 5424 message with the event's fields as structured data,
//! over UDP (one datagram, RFC 5426) or TCP (octet-counting framing, RFC 6587 3.4.1, on one
//! connection kept open and made anew after a failure).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::event::Event;

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// `udp://IP:PORT` or `tcp://IP:PORT`.
    pub fn parse(address: &str) -> Option<(Transport, SocketAddr)> {
        let (scheme, rest) = address.split_once("://")?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return None,
        };
        Some((transport, rest.parse().ok()?))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// A syslog facility (RFC 5424 6.2.1), by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

/// Facilities by the names syslog daemons use.
const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Facility {
    pub fn parse(name: &str) -> Option<Facility> {
        let name = name.to_ascii_lowercase();
        FACILITIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, code)| Facility(*code))
    }
}

impl Default for Facility {
    /// `auth`: security and authorisation messages.
    fn default() -> Self {
        Facility(4)
    }
}

/// The structured data element's id: the name `cordon` under the private enterprise number
/// RFC 5612 sets aside for documentation, since Cordon has no number of its own.
pub const SD_ID: &str = "cordon@32473";

/// Values longer than this are cut: a UDP message stays within what every collector takes.
const MAX_VALUE: usize = 512;

/// Severity: warning for what contains a device, notice for the rest.
fn severity(event: &Event) -> u8 {
    match event.kind {
        "isolation_placed" | "device_isolated" | "tripwire_fired" => 4,
        _ => 5,
    }
}

/// The RFC 5424 message for `event`, from `hostname` (without framing).
pub fn message(event: &Event, facility: Facility, hostname: &str) -> String {
    let pri = u16::from(facility.0) * 8 + u16::from(severity(event));
    let host = header_field(hostname, 255);
    let mut params = vec![
        ("id", event.id.to_string()),
        ("type", event.kind.to_string()),
        ("actor", event.actor.clone()),
        ("reason", event.reason.clone()),
        ("detail", event.detail.clone()),
    ];
    if let Some(d) = &event.device {
        params.push(("device", d.id.clone()));
        if let Some(label) = &d.label {
            params.push(("label", label.clone()));
        }
        if !d.aliases.is_empty() {
            params.push(("aliases", d.aliases.join(" ")));
        }
    }
    let data: String = params
        .iter()
        .map(|(name, value)| format!(" {name}=\"{}\"", param_value(value)))
        .collect();
    // The MSG part is UTF-8, so it starts with the BOM (RFC 5424 6.4).
    format!(
        "<{pri}>1 {} {host} cordon {} {} [{SD_ID}{data}] \u{feff}{}",
        event.time,
        std::process::id(),
        event.kind,
        event.summary()
    )
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".into()
    } else {
        field
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 6.3.3), cut to size.
fn param_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().take(MAX_VALUE) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A syslog sink's connection: a UDP socket, or a TCP stream while it works.
pub struct Syslog {
    transport: Transport,
    addr: SocketAddr,
    facility: Facility,
    hostname: String,
    timeout: Duration,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
}

impl Syslog {
    pub fn new(
        transport: Transport,
        addr: SocketAddr,
        facility: Facility,
        hostname: String,
        timeout: Duration,
    ) -> Syslog {
        Syslog {
            transport,
            addr,
            facility,
            hostname,
            timeout,
            udp: None,
            tcp: None,
        }
    }

    /// Sends `event`; an error means it may not have arrived.
    pub async fn send(&mut self, event: &Event) -> Result<(), String> {
        let text = message(event, self.facility, &self.hostname);
        let sent = tokio::time::timeout(self.timeout, self.send_text(&text)).await;
        let result = match sent {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no progress within {:?}", self.timeout)),
        };
        if result.is_err() {
            // Whatever the socket's state, start afresh next time.
            (self.udp, self.tcp) = (None, None);
        }
        result
    }

    async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        match self.transport {
            Transport::Udp => {
                if self.udp.is_none() {
                    let local: SocketAddr = match self.addr {
                        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                    };
                    let socket = UdpSocket::bind(local).await?;
                    // Connected: a collector's ICMP "port unreachable" comes back as an error.
                    socket.connect(self.addr).await?;
                    self.udp = Some(socket);
                }
                let socket = self.udp.as_ref().expect("made above");
                socket.send(text.as_bytes()).await.map(|_| ())
            }
            Transport::Tcp => {
                if self.tcp.is_none() {
                    let stream = TcpStream::connect(self.addr).await?;
                    stream.set_nodelay(true)?;
                    self.tcp = Some(stream);
                }
                let stream = self.tcp.as_mut().expect("made above");
                let framed = format!("{} {text}", text.len());
                stream.write_all(framed.as_bytes()).await?;
                stream.flush().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::tests::row;
    use super::*;

    #[test]
    fn events_become_rfc_5424_messages_with_structured_data() {
        let mut r = row(42, "isolated");
        r.event.reason = "said \"no\" [x] \\ y".into();
        let event = Event::of(&r).unwrap();
        let text = message(&event, Facility::parse("local0").unwrap(), "dns 1");
        let pid = std::process::id();
        assert!(
            text.starts_with(&format!(
                "<132>1 2025-11-30T01:02:03Z dns1 cordon {pid} isolation_placed [cordon@32473 id=\"42\" type=\"isolation_placed\" actor=\"alice\" reason=\"said \\\"no\\\" [x\\] \\\\ y\""
            )),
            "{text}"
        );
        assert!(text.contains(" device=\"device#7\" label=\"FIN-MBP\" aliases=\"serial:C02ZK1ABMD6T udid:ABC\"] \u{feff}isolation placed on device#7"), "{text}");
        let released = Event::of(&row(43, "released")).unwrap();
        assert!(message(&released, Facility::default(), "")
            .starts_with("<37>1 2025-11-30T01:02:03Z - cordon "));
    }

    #[test]
    fn events_syslog_addresses_name_their_transport() {
        let (t, addr) = Transport::parse("tcp://127.0.0.1:6514").unwrap();
        assert_eq!((t, addr.port()), (Transport::Tcp, 6514));
        assert_eq!(
            Transport::parse("udp://[::1]:514").unwrap().0,
            Transport::Udp
        );
        for bad in ["127.0.0.1:514", "tls://127.0.0.1:6514", "udp://host:514"] {
            assert!(Transport::parse(bad).is_none(), "{bad}");
        }
    }
}
