-- Time-boxed holds, holds that wait for a device not seen yet, probation after release (0.6).
ALTER TABLE devices ADD COLUMN hold_expires INTEGER;
ALTER TABLE devices ADD COLUMN probation_until INTEGER;
ALTER TABLE approvals ADD COLUMN expires INTEGER;
CREATE TABLE waiting_holds (
    key TEXT PRIMARY KEY,
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL,
    expires INTEGER
);
