-- The registry's trees, as on sled: one row per record. `tree` names the
-- record kind (holders, cards, certificates, audit, feed, meta, ...), `key`
-- is the record's key as the store encodes it (text ids as UTF-8, serials
-- and sequence numbers as big-endian bytes), `value` the record (JSON for
-- records, UTF-8 for index entries). Keys order bytewise, as on sled.
CREATE TABLE kv (
    tree  text  NOT NULL,
    key   bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

-- Read-only views for operators and auditors (psql, reports).
CREATE VIEW certificates AS
    SELECT encode(key, 'hex') AS serial, convert_from(value, 'UTF8')::jsonb AS record
    FROM kv WHERE tree = 'certificates';
CREATE VIEW cards AS
    SELECT convert_from(key, 'UTF8') AS card_id, convert_from(value, 'UTF8')::jsonb AS record
    FROM kv WHERE tree = 'cards';
CREATE VIEW audit_log AS
    SELECT ('x' || encode(key, 'hex'))::bit(64)::bigint AS sequence, convert_from(value, 'UTF8')::jsonb AS record
    FROM kv WHERE tree = 'audit';
CREATE VIEW status_feed AS
    SELECT ('x' || encode(key, 'hex'))::bit(64)::bigint AS sequence, convert_from(value, 'UTF8')::jsonb AS record
    FROM kv WHERE tree = 'feed';
