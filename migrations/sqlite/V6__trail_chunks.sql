-- The DNS trail in chunks (0.8, src/control/store/trail/chunk.rs): a row holds the queries of
-- one device that one node wrote in one flush, its body a protobuf message; `skip` counts the
-- queries at its head that were trimmed. 0.7's `queries` table, a row a query, goes with what
-- it held (export a device's trail with GET /v1/devices/{id}/queries.ndjson before upgrading).
DROP TABLE queries;
CREATE TABLE trail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device INTEGER NOT NULL,
    node TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    skip INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE INDEX trail_by_device ON trail (device, id);
CREATE INDEX trail_by_time ON trail (first_ms);
