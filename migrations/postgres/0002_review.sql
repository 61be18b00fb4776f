-- The reviewers' workflow (issue 5): API tokens, escalation, comments and corrected masks.

-- Bearer tokens: only their SHA-256 is stored; the token is shown once at creation.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('reviewer', 'admin', 'service')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);

-- An escalated case goes back to the queue, first in line, for a senior reviewer.
ALTER TABLE review_items ADD COLUMN escalated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX review_items_decided ON review_items (state, decided_at);

CREATE TABLE review_comments (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    review_item_id BIGINT NOT NULL REFERENCES review_items (id),
    author         TEXT NOT NULL,
    body           TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX review_comments_by_item ON review_comments (review_item_id, created_at);

-- Corrected masks, one row per uploaded version; the object holds the NIfTI.
CREATE TABLE review_corrections (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    review_item_id BIGINT NOT NULL REFERENCES review_items (id),
    version        BIGINT NOT NULL,
    object_key     TEXT NOT NULL,
    author         TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (review_item_id, version)
);
