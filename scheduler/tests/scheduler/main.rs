//! The scheduler against the real embedded backends (SQLite in a temporary
//! folder, a `memory://` queue of its own, a `file://` object store) and,
//! for dispatch and the HTTP API, PostgreSQL at 127.0.0.1:5432 (or
//! `NEUROBATCH_TEST_POSTGRES`) in a database of its own, dropped afterwards.
//! Studies are the real DICOM and NIfTI test data (`$NEUROBATCH_TESTDATA`).

mod api;
mod dicom;
mod dispatch;
mod helpers;
mod ingest;
#[path = "../../../tests/common/orthanc.rs"]
mod orthanc;
mod review;
mod sources;
