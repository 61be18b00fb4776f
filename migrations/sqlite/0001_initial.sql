-- neurobatch job store, SQLite (embedded mode; docs/daemon.md describes every table).
-- The same schema as migrations/postgres/0001_initial.sql; keep them in step.
-- STRICT tables: INTEGER for every integer, timestamps as RFC 3339 UTC TEXT
-- (written by the application, which sorts correctly as text), REAL for
-- floating point, JSON as TEXT, priority as a rank (0 stat, 1 routine).

-- A study as submitted: a DICOM StudyInstanceUID, or a content id for other inputs.
CREATE TABLE studies (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    study_key         TEXT NOT NULL UNIQUE,
    source_uri        TEXT NOT NULL,
    -- Why no series was eligible for processing (NULL when some was).
    ineligible_reason TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;

-- The series of a study that were seen, with the scanner that acquired them.
CREATE TABLE series (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id           INTEGER NOT NULL REFERENCES studies (id),
    series_uid         TEXT NOT NULL,
    modality           TEXT,
    description        TEXT,
    manufacturer       TEXT,
    manufacturer_model TEXT,
    station_name       TEXT,
    field_strength_t   REAL,
    slices             INTEGER,
    created_at         TEXT NOT NULL,
    UNIQUE (study_id, series_uid)
) STRICT;
CREATE INDEX series_by_scanner ON series (manufacturer, manufacturer_model, field_strength_t);

-- One unit of work. (job_key, version) is unique: version 1 is the job for a
-- key; a forced re-run adds version 2, 3, ...
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id           INTEGER NOT NULL REFERENCES studies (id),
    job_key            TEXT NOT NULL,
    version            INTEGER NOT NULL CHECK (version >= 1),
    source_uri         TEXT NOT NULL,
    series_uids        TEXT NOT NULL,
    pipeline           TEXT NOT NULL,
    model_version      TEXT NOT NULL,
    harmonizer_version TEXT NOT NULL,
    priority           INTEGER NOT NULL CHECK (priority IN (0, 1)),
    state              TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts           INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts       INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner        TEXT,
    lease_expires_at   TEXT,
    last_error         TEXT,
    -- Outbox: NULL until the job's message was confirmed by the queue.
    published_at       TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    finished_at        TEXT,
    UNIQUE (job_key, version)
) STRICT;
CREATE INDEX jobs_outbox ON jobs (priority, id) WHERE published_at IS NULL AND state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_by_study ON jobs (study_id);
CREATE INDEX jobs_by_state ON jobs (state, priority, created_at);

-- What a succeeded job produced: one row per job.
CREATE TABLE results (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id               INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    study_id             INTEGER NOT NULL REFERENCES studies (id),
    decision             TEXT NOT NULL CHECK (decision IN ('accept', 'review')),
    series_uid           TEXT,
    scanner_manufacturer TEXT,
    scanner_model        TEXT,
    field_strength_t     REAL,
    -- JSON object: output name -> object key (mask, entropy, mutual_information, report, ...).
    object_keys          TEXT NOT NULL,
    -- The report.json of the job.
    report               TEXT NOT NULL,
    worker_id            TEXT NOT NULL,
    created_at           TEXT NOT NULL
) STRICT;
CREATE INDEX results_by_scanner ON results (scanner_manufacturer, scanner_model, field_strength_t, created_at);
CREATE INDEX results_by_study ON results (study_id);

-- Per-structure figures of a segmentation result.
CREATE TABLE structure_metrics (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id               INTEGER NOT NULL REFERENCES results (id),
    label                   INTEGER NOT NULL,
    structure               TEXT NOT NULL,
    voxels                  INTEGER NOT NULL,
    volume_ml               REAL NOT NULL,
    volume_cv               REAL,
    pairwise_dice           REAL,
    mean_entropy            REAL,
    mean_mutual_information REAL,
    UNIQUE (result_id, label)
) STRICT;
CREATE INDEX structure_metrics_by_structure ON structure_metrics (structure, result_id);

-- Outputs of classifiers (e.g. scan quality) of a result.
CREATE TABLE classification_outputs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id          INTEGER NOT NULL REFERENCES results (id),
    model              TEXT NOT NULL,
    label              TEXT NOT NULL,
    probability        REAL NOT NULL,
    predictive_entropy REAL,
    mutual_information REAL,
    -- JSON object: class name -> mean probability.
    probabilities      TEXT NOT NULL,
    UNIQUE (result_id, model)
) STRICT;
CREATE INDEX classification_outputs_by_model ON classification_outputs (model, label);

-- Cases waiting for a reviewer: pending -> claimed (lease) -> decided.
CREATE TABLE review_items (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    result_id        INTEGER NOT NULL REFERENCES results (id),
    study_id         INTEGER NOT NULL REFERENCES studies (id),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'decided')),
    -- JSON array of the routing reasons.
    reasons          TEXT NOT NULL,
    priority         INTEGER NOT NULL CHECK (priority IN (0, 1)),
    -- Higher first within a priority.
    uncertainty      REAL NOT NULL,
    claimed_by       TEXT,
    lease_expires_at TEXT,
    decision         TEXT,
    decided_by       TEXT,
    decided_at       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) STRICT;
-- The review queue: pending first by priority, then most uncertain, then oldest.
CREATE INDEX review_queue ON review_items (state, priority, uncertainty DESC, created_at);
CREATE INDEX review_items_by_study ON review_items (study_id);

-- Who did what, when: job transitions and review actions.
CREATE TABLE audit_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    study_id       INTEGER REFERENCES studies (id),
    job_id         INTEGER REFERENCES jobs (id),
    review_item_id INTEGER REFERENCES review_items (id),
    -- JSON object with the action's details.
    detail         TEXT NOT NULL
) STRICT;
CREATE INDEX audit_events_by_job ON audit_events (job_id, at);
CREATE INDEX audit_events_by_review_item ON audit_events (review_item_id, at);
CREATE INDEX audit_events_by_time ON audit_events (at);
