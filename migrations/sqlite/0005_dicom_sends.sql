-- Results sent back to the PACS as DICOM (issue 14, item 5): a durable outbox.
-- `results.dicom_outbox` says whether a result's sends were decided: NULL (not yet:
-- new, or waiting for a reviewer), 'queued' (rows below), 'none' (nothing to send).
ALTER TABLE results ADD COLUMN dicom_outbox TEXT CHECK (dicom_outbox IN ('queued', 'none'));
CREATE INDEX results_dicom_undecided ON results (created_at) WHERE dicom_outbox IS NULL;

-- One row per (job, destination, object): retried with backoff until sent, or failed
-- after dicom.send_max_attempts; an admin can put failed rows back to pending.
CREATE TABLE dicom_sends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          INTEGER NOT NULL REFERENCES jobs (id),
    destination     TEXT NOT NULL,
    output          TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (job_id, destination, output)
) STRICT;
CREATE INDEX dicom_sends_due ON dicom_sends (state, next_attempt_at);
