-- The catalog of sharded links (see `link_shards.rs`). Used only when links live on shard
-- databases (`--shard-url`); the tables stay empty otherwise.

-- The shard databases, numbered from 0 in the order they joined. `name` is the database's
-- host, port and name (never a password), so the map follows a database, not its position
-- on the command line. `url` is how to connect to it, so instances that are running when a
-- reshard adds a database can reach it without a restart.
CREATE TABLE link_shard_databases (
    database SMALLINT PRIMARY KEY CHECK (database >= 0),
    name     TEXT     NOT NULL UNIQUE,
    url      TEXT     NOT NULL,
    added_at BIGINT   NOT NULL
);

-- Bumped by every change of the databases or the map; instances poll it and reload.
CREATE TABLE link_shard_layout (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  BIGINT  NOT NULL
);
INSERT INTO link_shard_layout (version) VALUES (0);

-- The plan and progress of a reshard (`basis admin reshard --add`): one row per logical
-- shard that moves. A reshard that stopped half way resumes from here.
CREATE TABLE link_shard_moves (
    logical_shard SMALLINT PRIMARY KEY,
    from_database SMALLINT NOT NULL,
    to_database   SMALLINT NOT NULL,
    done          BOOLEAN  NOT NULL DEFAULT FALSE,
    links         BIGINT   NOT NULL DEFAULT 0,
    rows_copied   BIGINT   NOT NULL DEFAULT 0,
    frozen_ms     BIGINT   NOT NULL DEFAULT 0,
    finished_at   BIGINT
);

-- On a shard database: the logical shards that have moved away. A write to a link of such
-- a shard is refused (the writer reloads the map and goes to the new database); the rows
-- left behind are deleted at the end of the reshard.
CREATE TABLE link_shards_gone (
    logical_shard SMALLINT PRIMARY KEY,
    gone_at       BIGINT   NOT NULL
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
