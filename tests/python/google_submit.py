"""Submits one job with Google's ml v1 client library (only the endpoint changed) and waits for
it to end: google_submit.py URL TOKEN PROJECT JOB_JSON. Prints the final job as JSON."""
import json
import sys
import time

from google.oauth2.credentials import Credentials
from googleapiclient import discovery

url, token, project, body = sys.argv[1:5]
ml = discovery.build(
    "ml", "v1", credentials=Credentials(token), static_discovery=True,
    client_options={"api_endpoint": url}, cache_discovery=False,
)
jobs = ml.projects().jobs()
job = json.loads(body)
jobs.create(parent=f"projects/{project}", body=job).execute()
for _ in range(3000):
    got = jobs.get(name=f"projects/{project}/jobs/{job['jobId']}").execute()
    if got["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
        break
    time.sleep(0.1)
print(json.dumps(got))
