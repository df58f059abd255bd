-- Listing a user's links (`GET /links`), tags on links, and titles.
--
-- The owner index is partial: links made anonymously cannot be listed by owner, so they pay
-- no index entry, and the bytes per link of an anonymous link stay as 0006 measured them.
-- An owned link pays one entry of (owner_id, created_at): about 50 bytes with a 36-byte
-- user id. It serves the listing newest or oldest first, and the deletion of an account
-- with its links (which scanned the table before).
CREATE INDEX links_owner ON links (owner_id, created_at) WHERE owner_id IS NOT NULL;

-- A link's tags: one row per link and tag. Tags are the owner's own vocabulary; a tag
-- exists as long as one link carries it, so renaming or deleting a tag rewrites these rows.
CREATE TABLE link_tags (
    link_id BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    tag     TEXT   NOT NULL,
    PRIMARY KEY (link_id, tag)
);
CREATE INDEX link_tags_tag ON link_tags (tag, link_id);

-- A title the owner gives a link (shown by the preview, `GET /{code}+`), which few links
-- have: a row only while it is set, so a link without one costs nothing here.
CREATE TABLE link_titles (
    link_id BIGINT PRIMARY KEY REFERENCES links (id) ON DELETE CASCADE,
    title   TEXT   NOT NULL
);
