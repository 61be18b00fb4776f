-- What the nightly DICOMweb pull fetched from the PACS (issue 14): one row per
-- series, with how many instances it had, so a second night fetches only
-- series that are new or grew.
CREATE TABLE pacs_pulls (
    study_uid  TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    instances  INTEGER NOT NULL,
    pulled_at  TEXT NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
) STRICT;
