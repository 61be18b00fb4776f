-- A worker that vanishes while holding a job (its lease expires: a node eviction, an OOM kill,
-- a crash) no longer spends the job's attempt (issue 18). Each expiry is recorded here, with
-- whether the job was the only one its worker was running (`solo`): a study is declared poison
-- only after it was the one job on several workers that vanished. The requeued job waits until
-- `not_before` (a backoff per expiry) before the outbox sends it again.
CREATE TABLE lease_expiries (
    job_id     BIGINT NOT NULL REFERENCES jobs (id),
    worker     TEXT NOT NULL,
    solo       BOOLEAN NOT NULL,
    expired_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, worker)
);
CREATE INDEX lease_expiries_by_worker ON lease_expiries (worker);

ALTER TABLE jobs ADD COLUMN not_before TIMESTAMPTZ;
