-- An unknown study uncertainty is NULL (issue 18). It was stored as the
-- largest float so that such cases sort first, which made AVG() overflow
-- ("value out of range: overflow") and the scheduler's metrics fail on every
-- pass. The queue now orders NULLs first explicitly.
ALTER TABLE review_items ALTER COLUMN uncertainty DROP NOT NULL;
-- > 1e300 also catches 'Infinity' and 'NaN' (PostgreSQL sorts NaN above every number).
UPDATE review_items SET uncertainty = NULL WHERE uncertainty > 1e300;
