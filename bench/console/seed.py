"""Copies the seed job's row of an mle SQLite store into N more finished jobs (bench/console.sh)."""
import json
import sqlite3
import sys

db, n = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
project, body, seq = con.execute(
    "SELECT project, body, seq FROM jobs WHERE job_id = 'seed'").fetchone()
job = json.loads(body)
top = con.execute("SELECT MAX(seq) FROM jobs").fetchone()[0]
rows = []
for i in range(n):
    job["jobId"] = f"bench_{i:05d}"
    rows.append((project, job["jobId"], top + 1 + i, job["state"], 1, job["createTime"], json.dumps(job)))
con.executemany(
    "INSERT INTO jobs (project, job_id, seq, state, etag, create_time, body) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
con.commit()
print(f"{con.execute('SELECT COUNT(*) FROM jobs').fetchone()[0]} jobs in the store")
