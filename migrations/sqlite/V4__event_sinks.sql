-- Events to the SOC (0.6): the audit log is the outbox. Each sink's row says how far it has
-- been delivered: the id of the last audit row it has passed (src/events/).
CREATE TABLE event_sinks (
    name TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL
);
