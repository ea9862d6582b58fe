-- Jobs: indexed columns for queries, the whole resource as JSON in `body` (owned by the server).
CREATE TABLE IF NOT EXISTS jobs (
    project     TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL UNIQUE,
    state       TEXT    NOT NULL,
    etag        BIGINT  NOT NULL,
    create_time TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    PRIMARY KEY (project, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
