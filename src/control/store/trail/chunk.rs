//! The trail's chunks: the queries of one device that one node wrote in one flush, kept as one
//! row whose body is a protobuf message (a word table, then the entries). A row a flush rather
//! than a row a query leaves the store one insert for thousands of queries: what a traced query
//! costs is encoding it.
//!
//! An entry's id, as the API and its cursors show it, is the chunk's id shifted left by
//! [`ENTRY_BITS`] plus the entry's place in the chunk: ids grow with the chunks, and the head
//! of a chunk is trimmed by raising its `skip` rather than by rewriting it.

use prost::Message;
use rustc_hash::FxHashMap;

use super::TrailRow;
use crate::policy::DeviceId;

/// Bits of an entry id that place it in its chunk.
pub const ENTRY_BITS: u32 = 16;

/// The most entries a chunk holds.
pub const MAX_ENTRIES: usize = 1 << ENTRY_BITS;

/// A chunk's body as it is stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Body {
    /// What entries name by index: transports, decisions, reasons, groups, categories. The
    /// first word is empty, and an entry's `category` of 0 means none.
    #[prost(string, repeated, tag = "1")]
    pub words: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
}

/// One query, its words as indexes into [`Body::words`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(int64, tag = "1")]
    pub at_ms: i64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint32, tag = "3")]
    pub qtype: u32,
    #[prost(uint32, tag = "4")]
    pub transport: u32,
    #[prost(string, tag = "5")]
    pub source: String,
    #[prost(uint32, tag = "6")]
    pub decision: u32,
    #[prost(uint32, tag = "7")]
    pub reason: u32,
    #[prost(uint32, tag = "8")]
    pub group: u32,
    #[prost(uint32, tag = "9")]
    pub category: u32,
    #[prost(uint32, repeated, tag = "10")]
    pub categories: Vec<u32>,
    #[prost(bool, tag = "11")]
    pub security: bool,
    #[prost(uint32, tag = "12")]
    pub rcode: u32,
}

/// A chunk ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub device: DeviceId,
    pub node: String,
    /// The earliest and the latest entry's time, in milliseconds since the epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u32,
    pub body: Vec<u8>,
}

/// A chunk as the store gives it back.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub id: i64,
    pub device: DeviceId,
    /// Entries at the head that were trimmed.
    pub skip: u32,
    pub node: String,
    pub body: Vec<u8>,
}

/// One query as the writer hands it over: words borrowed, encoded at once.
pub struct EntryRef<'a> {
    pub at_ms: i64,
    pub name: &'a str,
    pub qtype: u16,
    pub transport: &'a str,
    pub source: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub group: &'a str,
    pub category: Option<&'a str>,
    pub security: bool,
    pub rcode: u8,
}

/// Encodes one device's entries into a chunk, with no allocation an entry once its buffers
/// have grown (the words are looked up, and copied only the first time).
pub struct ChunkBuilder {
    device: DeviceId,
    node: String,
    words: FxHashMap<String, u32>,
    /// The entry encoded last, its buffers filled again for the next.
    scratch: Entry,
    bytes: Vec<u8>,
    count: u32,
    first_ms: i64,
    last_ms: i64,
}

impl ChunkBuilder {
    pub fn new(device: DeviceId, node: &str) -> ChunkBuilder {
        ChunkBuilder::with_buffer(device, node, Vec::new())
    }

    /// A builder that encodes into `buffer` (emptied first): a writer hands back the bodies
    /// it wrote, so that a flush grows no memory that the last one did not.
    pub fn with_buffer(device: DeviceId, node: &str, mut buffer: Vec<u8>) -> ChunkBuilder {
        buffer.clear();
        ChunkBuilder {
            device,
            node: node.to_string(),
            words: FxHashMap::from_iter([(String::new(), 0)]),
            scratch: Entry::default(),
            bytes: buffer,
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }

    pub fn is_full(&self) -> bool {
        self.count as usize >= MAX_ENTRIES
    }

    /// Adds an entry listed in `categories`; the caller starts another chunk when this one
    /// [is full](Self::is_full).
    pub fn push<'a>(&mut self, e: &EntryRef<'_>, categories: impl Iterator<Item = &'a str>) {
        let mut entry = std::mem::take(&mut self.scratch);
        entry.at_ms = e.at_ms;
        entry.name.clear();
        entry.name.push_str(e.name);
        entry.qtype = u32::from(e.qtype);
        entry.transport = self.word(e.transport);
        entry.source.clear();
        entry.source.push_str(e.source);
        entry.decision = self.word(e.decision);
        entry.reason = self.word(e.reason);
        entry.group = self.word(e.group);
        entry.category = e.category.map_or(0, |c| self.word(c));
        entry.categories.clear();
        for c in categories {
            let word = self.word(c);
            entry.categories.push(word);
        }
        entry.security = e.security;
        entry.rcode = u32::from(e.rcode);
        prost::encoding::message::encode(2, &entry, &mut self.bytes);
        self.scratch = entry;
        self.count += 1;
        self.first_ms = self.first_ms.min(e.at_ms);
        self.last_ms = self.last_ms.max(e.at_ms);
    }

    fn word(&mut self, word: &str) -> u32 {
        if let Some(&index) = self.words.get(word) {
            return index;
        }
        let index = self.words.len() as u32;
        self.words.insert(word.to_string(), index);
        index
    }

    /// The chunk, its word table after its entries (protobuf reads fields in any order).
    pub fn finish(mut self) -> Chunk {
        let mut words: Vec<(u32, String)> = self.words.into_iter().map(|(w, i)| (i, w)).collect();
        words.sort_unstable_by_key(|(i, _)| *i);
        for (_, word) in &words {
            prost::encoding::string::encode(1, word, &mut self.bytes);
        }
        Chunk {
            device: self.device,
            node: self.node,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            count: self.count,
            body: self.bytes,
        }
    }
}

/// Rows as chunks, one per device and node in the order the rows come, as many as the
/// entries need: for tests and tools that have rows at hand.
pub fn chunks_of(rows: &[TrailRow]) -> Vec<Chunk> {
    let mut open: Vec<ChunkBuilder> = Vec::new();
    let mut done = Vec::new();
    for row in rows {
        let at = open
            .iter()
            .position(|b| b.device == row.device && b.node == row.node);
        let at = match at {
            Some(at) if !open[at].is_full() => at,
            found => {
                if let Some(at) = found {
                    done.push(open.swap_remove(at).finish());
                }
                open.push(ChunkBuilder::new(row.device, &row.node));
                open.len() - 1
            }
        };
        let entry = EntryRef {
            at_ms: row.at_ms,
            name: &row.name,
            qtype: row.qtype,
            transport: &row.transport,
            source: &row.source,
            decision: &row.decision,
            reason: &row.reason,
            group: &row.group,
            category: row.category.as_deref(),
            security: row.security,
            rcode: row.rcode,
        };
        open[at].push(&entry, row.categories.iter().map(String::as_str));
    }
    done.extend(open.into_iter().map(ChunkBuilder::finish));
    done
}

/// Why a stored chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {0}: {1}")]
    Decode(i64, prost::DecodeError),
    #[error("chunk {0}: entry {1} names word {2}, past the {3} words")]
    Word(i64, usize, u32, usize),
    #[error("chunk {0}: {1} entries, more than a chunk holds")]
    TooMany(i64, usize),
}

/// A stored chunk's live entries (past its `skip`) as rows, with their ids.
pub fn rows_of(chunk: &StoredChunk) -> Result<Vec<TrailRow>, ChunkError> {
    let body = Body::decode(chunk.body.as_slice()).map_err(|e| ChunkError::Decode(chunk.id, e))?;
    if body.entries.len() > MAX_ENTRIES {
        return Err(ChunkError::TooMany(chunk.id, body.entries.len()));
    }
    let words = &body.words;
    let skip = chunk.skip as usize;
    let mut rows = Vec::with_capacity(body.entries.len().saturating_sub(skip));
    for (index, e) in body.entries.into_iter().enumerate().skip(skip) {
        let word = |w: u32| {
            words
                .get(w as usize)
                .cloned()
                .ok_or(ChunkError::Word(chunk.id, index, w, words.len()))
        };
        rows.push(TrailRow {
            id: (chunk.id << ENTRY_BITS) | index as i64,
            device: chunk.device,
            at_ms: e.at_ms,
            name: e.name,
            qtype: e.qtype as u16,
            transport: word(e.transport)?,
            source: e.source,
            decision: word(e.decision)?,
            reason: word(e.reason)?,
            group: word(e.group)?,
            category: match e.category {
                0 => None,
                c => Some(word(c)?).filter(|c| !c.is_empty()),
            },
            categories: e
                .categories
                .iter()
                .map(|&c| word(c))
                .collect::<Result<_, _>>()?,
            security: e.security,
            rcode: e.rcode as u8,
            node: chunk.node.clone(),
        });
    }
    Ok(rows)
}

/// The times of a chunk's entries, for trimming its head.
pub fn times_of(body: &[u8]) -> Result<Vec<i64>, prost::DecodeError> {
    Ok(Body::decode(body)?
        .entries
        .iter()
        .map(|e| e.at_ms)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device: u64, at_ms: i64, name: &str, categories: &[&str]) -> TrailRow {
        TrailRow {
            id: 0,
            device: DeviceId(device),
            at_ms,
            name: name.into(),
            qtype: 65,
            transport: "doh".into(),
            source: "2001:db8::7".into(),
            decision: "blocked".into(),
            reason: "category malware (policy standard, group default)".into(),
            group: "default".into(),
            category: categories.first().map(|c| c.to_string()),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            security: !categories.is_empty(),
            rcode: 3,
            node: "node-a".into(),
        }
    }

    fn stored(id: i64, skip: u32, chunk: Chunk) -> StoredChunk {
        StoredChunk {
            id,
            device: chunk.device,
            skip,
            node: chunk.node,
            body: chunk.body,
        }
    }

    #[test]
    fn rows_come_back_as_they_went_in_one_chunk_a_device() {
        let rows = vec![
            row(1, 1_000, "c2.example.net", &["malware", "newly_registered"]),
            row(2, 1_500, "other.example", &[]),
            row(1, 2_000, "www.example.com", &[]),
        ];
        let chunks = chunks_of(&rows);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (chunks[0].count, chunks[0].first_ms, chunks[0].last_ms),
            (2, 1_000, 2_000)
        );
        let back = rows_of(&stored(7, 0, chunks[0].clone())).unwrap();
        let expected: Vec<TrailRow> = [(0, &rows[0]), (1, &rows[2])]
            .into_iter()
            .map(|(i, r)| TrailRow {
                id: (7 << ENTRY_BITS) | i,
                ..r.clone()
            })
            .collect();
        assert_eq!(back, expected);
        let skipped = rows_of(&stored(7, 1, chunks[0].clone())).unwrap();
        assert_eq!(skipped, expected[1..]);
        assert_eq!(times_of(&chunks[0].body).unwrap(), [1_000, 2_000]);
    }

    #[test]
    fn a_chunk_that_does_not_decode_is_an_error() {
        let mut chunk = chunks_of(&[row(1, 1, "a.example", &["malware"])]).remove(0);
        chunk.body.push(0xff);
        assert!(rows_of(&stored(1, 0, chunk.clone())).is_err());
        // A word index past the table: the entry names word 9 of 5.
        let mut body =
            Body::decode(chunks_of(&[row(1, 1, "a.example", &[])])[0].body.as_slice()).unwrap();
        body.entries[0].reason = 9;
        chunk.body = body.encode_to_vec();
        let err = rows_of(&stored(1, 0, chunk)).unwrap_err();
        assert!(matches!(err, ChunkError::Word(1, 0, 9, _)), "{err}");
    }
}
