-- The routing reason codes of each review item, one row per distinct code (issue 17): the
-- review queue filters by reason with an equality on this table instead of matching text
-- inside review_items.reasons. Existing items are backfilled from that JSON array.
CREATE TABLE review_reasons (
    review_item_id INTEGER NOT NULL REFERENCES review_items (id),
    code           TEXT NOT NULL,
    PRIMARY KEY (review_item_id, code)
) STRICT;
CREATE INDEX review_reasons_by_code ON review_reasons (code, review_item_id);

INSERT INTO review_reasons (review_item_id, code)
SELECT DISTINCT ri.id, json_extract(r.value, '$.code')
FROM review_items ri, json_each(ri.reasons) AS r
WHERE json_type(ri.reasons) = 'array' AND json_extract(r.value, '$.code') IS NOT NULL;
