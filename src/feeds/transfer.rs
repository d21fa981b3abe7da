//! One zone transfer over TCP: ask for AXFR, or IXFR from the copy's SOA, sign the request with
//! the feed's TSIG key, and hand every record of every answer message, verified, to the
//! copy's [`Receiver`] as it arrives.
//!
//! The messages are hickory-proto's (`Message`, `TSigner`, its verifier for the chain of
//! signed answers); only the two-byte framing is read here. hickory-net's client is not used
//! for transfers: its multiplexer hands answers over through a small queue and drops what does
//! not fit, which a long AXFR must never do.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::zone::{AnswerError, Receiver};

/// Why a transfer gave nothing to apply. Each is a `result` label of
/// `cordon_feed_transfers_total`.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot reach the primary: {0}")]
    Unreachable(std::io::Error),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the primary refused the transfer ({0}): does its ACL allow this address and key?")]
    Refused(ResponseCode),
    #[error("TSIG: {0}")]
    Tsig(String),
    #[error("{0}")]
    Answer(#[from] AnswerError),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl TransferError {
    pub fn label(&self) -> &'static str {
        match self {
            TransferError::Unreachable(_) => "unreachable",
            TransferError::Timeout(_) => "timeout",
            TransferError::Refused(_) => "refused",
            TransferError::Tsig(_) => "tsig",
            TransferError::Answer(
                AnswerError::Gap { .. }
                | AnswerError::Broken { .. }
                | AnswerError::Unknown(_)
                | AnswerError::OnlySoa(_),
            ) => "gap",
            TransferError::Answer(_) | TransferError::Malformed(_) => "malformed",
        }
    }

    /// Whether a full transfer may succeed where this incremental one did not.
    pub fn wants_full(&self) -> bool {
        self.label() == "gap"
    }
}

/// Where to ask and how.
pub struct Primary<'a> {
    pub addr: SocketAddr,
    pub zone: &'a Name,
    pub tsig: Option<&'a TSigner>,
    pub timeout: Duration,
}

/// Transfers the zone: AXFR without `since`, IXFR from it. Every record goes to `receiver`.
pub async fn transfer(
    primary: &Primary<'_>,
    since: Option<&SOA>,
    receiver: &mut Receiver,
) -> Result<(), TransferError> {
    let timeout = primary.timeout;
    tokio::time::timeout(timeout, exchange(primary, since, receiver))
        .await
        .map_err(|_| TransferError::Timeout(timeout))?
}

async fn exchange(
    primary: &Primary<'_>,
    since: Option<&SOA>,
    receiver: &mut Receiver,
) -> Result<(), TransferError> {
    let mut request = request(primary.zone, since);
    let mut verifier = match primary.tsig {
        Some(key) => request
            .finalize(key, unix_now())
            .map_err(|e| TransferError::Tsig(e.to_string()))?,
        None => None,
    };
    let bytes = request
        .to_vec()
        .map_err(|e| TransferError::Malformed(e.to_string()))?;
    let mut tcp = TcpStream::connect(primary.addr)
        .await
        .map_err(TransferError::Unreachable)?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    tcp.write_all(&framed)
        .await
        .map_err(TransferError::Unreachable)?;
    let mut buf = Vec::new();
    while !receiver.done() {
        let Some(len) = read_len(&mut tcp).await? else {
            // The primary closed the connection: `finish` tells whether the answer was whole.
            return Ok(());
        };
        buf.resize(len, 0);
        tcp.read_exact(&mut buf)
            .await
            .map_err(|e| TransferError::Malformed(format!("cut short: {e}")))?;
        let message = match verifier.as_mut() {
            Some(v) => v
                .verify(&buf)
                .map(|r| r.into_message())
                .map_err(|e| tsig_error(&buf, e.to_string()))?,
            None => {
                Message::from_bytes(&buf).map_err(|e| TransferError::Malformed(e.to_string()))?
            }
        };
        check_header(&message, request.id)?;
        for record in &message.answers {
            receiver.record(record)?;
        }
    }
    Ok(())
}

/// An AXFR or IXFR request; the IXFR names the copy's SOA in its authority section.
fn request(zone: &Name, since: Option<&SOA>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = false;
    let rtype = if since.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    let mut query = Query::query(zone.clone(), rtype);
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    if let Some(soa) = since {
        message.add_authority(Record::from_rdata(zone.clone(), 0, RData::SOA(soa.clone())));
    }
    message
}

/// The two-byte length of the next message; `None` when the primary closed the connection.
async fn read_len(tcp: &mut TcpStream) -> Result<Option<usize>, TransferError> {
    let mut len = [0u8; 2];
    match tcp.read_exact(&mut len).await {
        Ok(_) => Ok(Some(u16::from_be_bytes(len) as usize)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(TransferError::Unreachable(e)),
    }
}

/// An answer that failed TSIG verification: an error (NOTAUTH with BADSIG or BADKEY, a
/// refusal) comes unsigned and says more than the verifier.
fn tsig_error(bytes: &[u8], why: String) -> TransferError {
    match Message::from_bytes(bytes) {
        Ok(m) if m.response_code != ResponseCode::NoError => refusal(&m),
        _ => TransferError::Tsig(why),
    }
}

/// Why the primary did not send the zone. Primaries answer NOTAUTH both to a key they reject
/// (with a TSIG record saying BADSIG, BADKEY or BADTIME) and to a transfer their ACL does not
/// allow (with none): the TSIG record tells them apart.
fn refusal(message: &Message) -> TransferError {
    match message.signature.as_ref().and_then(|s| s.data.error) {
        Some(error) => TransferError::Tsig(format!(
            "the primary answered {} ({error:?}): the key or its secret does not match",
            message.response_code
        )),
        None => TransferError::Refused(message.response_code),
    }
}

fn check_header(message: &Message, id: u16) -> Result<(), TransferError> {
    if message.id != id || message.message_type != MessageType::Response {
        return Err(TransferError::Malformed(
            "not an answer to our request".into(),
        ));
    }
    if message.op_code != OpCode::Query {
        return Err(TransferError::Malformed(format!(
            "opcode {}",
            message.op_code
        )));
    }
    match message.response_code {
        ResponseCode::NoError => Ok(()),
        _ => Err(refusal(message)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
