-- The embedded store's tables. IF NOT EXISTS: a file written by Cordon 0.4 or earlier, before
-- migrations were versioned, already has them and keeps every row.
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    critical INTEGER NOT NULL DEFAULT 0,
    hold_reason TEXT, hold_ticket TEXT, hold_by TEXT, hold_at INTEGER
);
CREATE TABLE IF NOT EXISTS aliases (
    kind TEXT NOT NULL, value TEXT NOT NULL,
    device INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS memberships (
    device INTEGER NOT NULL REFERENCES devices(id),
    uem_group TEXT NOT NULL,
    PRIMARY KEY (device, uem_group)
);
CREATE TABLE IF NOT EXISTS uem_groups (key TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
    addr TEXT PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES devices(id),
    seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    device INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_device ON audit (device, id);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES devices(id),
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    change TEXT NOT NULL
);
