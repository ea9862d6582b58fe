-- Principals: who holds a token. Only the token's SHA-256 (hex) is kept; `projects` is a JSON
-- list of project ids, `role` one of the server's role names (owned by the server).
CREATE TABLE IF NOT EXISTS principals (
    name        TEXT NOT NULL PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    projects    TEXT NOT NULL,
    create_time TEXT NOT NULL
);
