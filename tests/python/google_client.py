"""Drives an mle server with Google's own ml v1 client library (google-api-python-client and
its bundled discovery document), only the endpoint changed. Prints a JSON summary."""
import json
import sys
import time

from google.oauth2.credentials import Credentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError

url, token = sys.argv[1], sys.argv[2]
ml = discovery.build(
    "ml", "v1", credentials=Credentials(token), static_discovery=True,
    client_options={"api_endpoint": url}, cache_discovery=False,
)
jobs = ml.projects().jobs()
created = jobs.create(parent="projects/gp", body={
    "jobId": "google_1",
    "trainingInput": {"scaleTier": "BASIC", "region": "local",
                      "masterConfig": {"containerCommand": ["sh", "-c", "echo from-google-client"]}},
}).execute()
for _ in range(300):
    got = jobs.get(name="projects/gp/jobs/google_1").execute()
    if got["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
        break
    time.sleep(0.1)
jobs.create(parent="projects/gp", body={
    "jobId": "google_2",
    "trainingInput": {"masterConfig": {"containerCommand": ["sleep", "300"]}},
}).execute()
cancelled = jobs.cancel(name="projects/gp/jobs/google_2", body={}).execute()
listed = jobs.list(parent="projects/gp", filter="jobId:google_*", pageSize=1).execute()
page2 = jobs.list(parent="projects/gp", pageSize=1, pageToken=listed["nextPageToken"]).execute()
try:
    jobs.create(parent="projects/gp", body={"jobId": "bad-id", "trainingInput": {}}).execute()
    error = None
except HttpError as e:
    error = {"status": e.resp.status, "body": json.loads(e.content)}
print(json.dumps({"created": created, "final": got, "cancel": cancelled,
                  "page1": [j["jobId"] for j in listed["jobs"]], "page2": [j["jobId"] for j in page2["jobs"]],
                  "error": error}))
