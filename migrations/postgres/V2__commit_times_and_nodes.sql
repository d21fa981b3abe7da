-- When each change was written, for the webhook-to-enforcement delay every other node
-- measures (cordon_replication_delay_seconds); rows from before have none.
ALTER TABLE changes ADD COLUMN committed TIMESTAMPTZ;
ALTER TABLE changes ALTER COLUMN committed SET DEFAULT clock_timestamp();
-- Each node's heartbeat and how far it has applied the log: any node can tell which is behind.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    seen TIMESTAMPTZ NOT NULL
);
