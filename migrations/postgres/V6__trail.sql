-- The DNS trail (0.7, src/trail/): responders' watches, and the queries of devices that are
-- isolated, on probation or watched, kept for the retention and a cap per device. Every node
-- writes the queries it answered.
CREATE TABLE watches (
    device BIGINT PRIMARY KEY REFERENCES devices (id),
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at BIGINT NOT NULL,
    expires BIGINT
);
CREATE TABLE queries (
    id BIGSERIAL PRIMARY KEY,
    device BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    name TEXT NOT NULL,
    qtype INTEGER NOT NULL,
    transport TEXT NOT NULL,
    source TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    grp TEXT NOT NULL,
    category TEXT,
    categories TEXT NOT NULL,
    security BOOLEAN NOT NULL,
    rcode INTEGER NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX queries_by_device ON queries (device, id);
