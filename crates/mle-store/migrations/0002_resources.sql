-- Models, versions and operations: one table, the resource as JSON in `body` (owned by the
-- server). `parent` is the model for versions and '' for the others.
CREATE TABLE IF NOT EXISTS resources (
    kind    TEXT    NOT NULL,
    project TEXT    NOT NULL,
    parent  TEXT    NOT NULL,
    name    TEXT    NOT NULL,
    seq     BIGINT  NOT NULL UNIQUE,
    etag    BIGINT  NOT NULL,
    body    TEXT    NOT NULL,
    PRIMARY KEY (kind, project, parent, name)
);
