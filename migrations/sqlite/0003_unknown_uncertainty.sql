-- An unknown study uncertainty is NULL (issue 18). It was stored as the
-- largest float so that such cases sort first, which made averages overflow
-- on PostgreSQL and skewed them here. The queue now orders NULLs first
-- explicitly.
--
-- SQLite cannot drop a NOT NULL constraint: the column is replaced (the
-- index on it first, since an indexed column cannot be dropped). Rebuilding
-- the table instead would trip the foreign keys of the tables that reference
-- review_items.
DROP INDEX review_queue;
ALTER TABLE review_items ADD COLUMN uncertainty_known REAL;
UPDATE review_items SET uncertainty_known = CASE WHEN uncertainty > 1e300 THEN NULL ELSE uncertainty END;
ALTER TABLE review_items DROP COLUMN uncertainty;
ALTER TABLE review_items RENAME COLUMN uncertainty_known TO uncertainty;
-- The review queue: pending first by priority, then unknown or most uncertain, then oldest.
CREATE INDEX review_queue ON review_items (state, priority, uncertainty DESC, created_at);
