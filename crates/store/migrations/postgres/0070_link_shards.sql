-- The catalog of sharded links (see `link_shards.rs`). Used only when links live on shard
-- databases (`--shard-url`); the tables stay empty otherwise.

-- The shard databases, numbered from 0 in the order they joined. `name` is the database's
-- host, port and name (never a password), so the map follows a database, not its position
-- on the command line.
CREATE TABLE link_shard_databases (
    database SMALLINT PRIMARY KEY CHECK (database >= 0),
    name     TEXT     NOT NULL UNIQUE,
    added_at BIGINT   NOT NULL
);

-- Which database holds each of the 256 logical shards.
CREATE TABLE link_shard_map (
    logical_shard SMALLINT PRIMARY KEY CHECK (logical_shard >= 0 AND logical_shard < 256),
    database      SMALLINT NOT NULL REFERENCES link_shard_databases (database)
);

-- The global alias index: a code decodes to its link's id, and so to its shard; an alias
-- does not, so it is looked up here. The row is written before the link and removed after
-- it, so an alias is never held by two links in different shards. `domain` is '' for the
-- default domain.
CREATE TABLE link_alias_index (
    domain     TEXT   NOT NULL,
    alias      TEXT   NOT NULL,
    link_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (domain, alias)
);
