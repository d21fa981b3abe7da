-- The shared store's tables: the same as the embedded store's, in PostgreSQL's types.
CREATE TABLE devices (
    id BIGINT PRIMARY KEY,
    label TEXT NOT NULL,
    critical BOOLEAN NOT NULL DEFAULT FALSE,
    hold_reason TEXT, hold_ticket TEXT, hold_by TEXT, hold_at BIGINT
);
CREATE TABLE aliases (
    kind TEXT NOT NULL, value TEXT NOT NULL,
    device BIGINT NOT NULL REFERENCES devices(id),
    PRIMARY KEY (kind, value)
);
CREATE TABLE memberships (
    device BIGINT NOT NULL REFERENCES devices(id),
    uem_group TEXT NOT NULL,
    PRIMARY KEY (device, uem_group)
);
CREATE TABLE uem_groups (key TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE bindings (
    addr TEXT PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES devices(id),
    seen BIGINT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    device BIGINT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX audit_device ON audit (device, id);
CREATE TABLE approvals (
    id BIGINT PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES devices(id),
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at BIGINT NOT NULL
);
-- The change log. Ids are given by the writer holding the log's advisory lock, one after the
-- last: dense, and visible in increasing order (ARCHITECTURE.md, "Replicas").
CREATE TABLE changes (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    change TEXT NOT NULL
);
