-- The DNS trail in chunks (0.8, src/control/store/trail/chunk.rs): a row holds the queries of
-- one device that one node wrote in one flush, its body a protobuf message; `skip` counts the
-- queries at its head that were trimmed. 0.7's `queries` table, a row a query, goes with what
-- it held (export a device's trail with GET /v1/devices/{id}/queries.ndjson before upgrading).
DROP TABLE queries;
CREATE TABLE trail (
    id BIGSERIAL PRIMARY KEY,
    device BIGINT NOT NULL,
    node TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    skip BIGINT NOT NULL DEFAULT 0,
    body BYTEA NOT NULL
);
CREATE INDEX trail_by_device ON trail (device, id);
CREATE INDEX trail_by_time ON trail (first_ms);
