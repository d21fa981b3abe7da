-- The DNS trail (0.7, src/trail/): responders' watches, and the queries of devices that are
-- isolated, on probation or watched, kept for the retention and a cap per device.
CREATE TABLE watches (
    device INTEGER PRIMARY KEY REFERENCES devices (id),
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL,
    expires INTEGER
);
CREATE TABLE queries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    name TEXT NOT NULL,
    qtype INTEGER NOT NULL,
    transport TEXT NOT NULL,
    source TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    grp TEXT NOT NULL,
    category TEXT,
    categories TEXT NOT NULL,
    security INTEGER NOT NULL,
    rcode INTEGER NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX queries_by_device ON queries (device, id);
