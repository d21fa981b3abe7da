-- One-time keys already used (a Security Event Token's issuer and jti), each until the moment
-- after which a token with that key would be refused anyway: a replay is refused by any node,
-- also after a restart. Rows past `until` are deleted as new keys come.
CREATE TABLE seen_tokens (
    key TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
CREATE INDEX seen_tokens_until ON seen_tokens (until);
