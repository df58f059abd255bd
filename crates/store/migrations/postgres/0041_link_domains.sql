-- Several domains on one instance (`--domain`): each link belongs to one, and an alias is
-- unique within its domain only, so the same code may exist on two domains.
--
-- `domain` is NULL for the default domain (the base URL's host): every link made before
-- this migration, and every link of an instance with one domain, so those rows do not
-- grow. Generated codes stay unique across domains (they are ids).
ALTER TABLE links ADD COLUMN domain TEXT;

DROP INDEX links_alias;
CREATE UNIQUE INDEX links_alias ON links (alias) WHERE alias IS NOT NULL AND domain IS NULL;
CREATE UNIQUE INDEX links_domain_alias ON links (domain, alias)
    WHERE alias IS NOT NULL AND domain IS NOT NULL;
