-- The routing reason codes of each review item, one row per distinct code (issue 17): the
-- review queue filters by reason with an equality on this table instead of matching text
-- inside review_items.reasons. Existing items are backfilled from that JSON array.
CREATE TABLE review_reasons (
    review_item_id BIGINT NOT NULL REFERENCES review_items (id),
    code           TEXT NOT NULL,
    PRIMARY KEY (review_item_id, code)
);
CREATE INDEX review_reasons_by_code ON review_reasons (code, review_item_id);

INSERT INTO review_reasons (review_item_id, code)
SELECT DISTINCT ri.id, r.value ->> 'code'
FROM review_items ri, jsonb_array_elements(ri.reasons::jsonb) AS r(value)
WHERE jsonb_typeof(ri.reasons::jsonb) = 'array' AND r.value ->> 'code' IS NOT NULL;
