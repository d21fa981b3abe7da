//! A chunk of the trail as the store gives it back (`control::store::trail::chunk::rows_of`):
//! with a shared store, a body is only as trustworthy as every node that can write the table.
//! Decoding may refuse a body but never panic; what decodes encodes again into a chunk that
//! decodes to the same rows.
#![no_main]

use cordon::control::store::trail::chunk::{chunks_of, rows_of, StoredChunk, ENTRY_BITS};
use cordon::policy::DeviceId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&skip, body)) = data.split_first() else {
        return;
    };
    let stored = StoredChunk {
        id: 9,
        device: DeviceId(7),
        skip: u32::from(skip % 4),
        node: "node-a".into(),
        body: body.to_vec(),
    };
    let Ok(rows) = rows_of(&stored) else {
        return;
    };
    for row in &rows {
        assert_eq!(row.id >> ENTRY_BITS, 9);
        assert!(row.id & ((1 << ENTRY_BITS) - 1) >= i64::from(stored.skip));
    }
    let again = chunks_of(&rows);
    let mut back = Vec::new();
    for chunk in again {
        let stored = StoredChunk {
            id: 9,
            device: chunk.device,
            skip: 0,
            node: chunk.node,
            body: chunk.body,
        };
        back.extend(rows_of(&stored).expect("a chunk encoded here decodes"));
    }
    let strip = |rows: &[cordon::control::store::trail::TrailRow]| {
        rows.iter()
            .map(|r| cordon::control::store::trail::TrailRow { id: 0, ..r.clone() })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&rows), strip(&back));
});
