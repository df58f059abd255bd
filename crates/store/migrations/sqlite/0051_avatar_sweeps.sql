-- When the sweeper last re-enqueued an upload's thumbnail job (Unix ms). An upload is
-- stored before its job is enqueued; a crash in between would leave it waiting forever,
-- so uploads still waiting well after they were stored (or last swept) are enqueued again.
ALTER TABLE avatar_uploads ADD COLUMN swept_at INTEGER;
