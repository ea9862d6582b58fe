-- A project's jobs in creation order, either way (the console lists the newest first).
CREATE INDEX IF NOT EXISTS jobs_project_seq ON jobs (project, seq);
