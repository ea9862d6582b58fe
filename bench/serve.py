"""Online prediction benchmark: requests/s and p50/p99 latency for the abalone model at 1 and 64
instances per request, for mle's server, a bare axum route returning a constant (the machine's
limit) and a Python peer (FastAPI + onnxruntime, 2 uvicorn workers) serving the same model.onnx.
The load generator (bench/serve, closed loop, keep-alive) runs on the same machine.
Usage: bench/serve.sh [SECONDS_PER_RUN] [CONNECTIONS]"""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILE = os.environ.get("PROFILE", "dist")
MLE = os.path.join(ROOT, "target", PROFILE, "mle")
LOAD = os.path.join(ROOT, "target", PROFILE, "mle-bench-serve")
PY = os.path.join(ROOT, "bench/.venv/bin/python")
SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
CONNS = int(sys.argv[2]) if len(sys.argv) > 2 else 16


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_url(proc, pattern):
    line = proc.stdout.readline().decode()
    m = re.search(pattern, line)
    if not m:
        raise SystemExit("unexpected start-up line: %r" % line)
    return m.group(1)


def wait_port(port, secs=30):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("port %d never opened" % port)


def main():
    tmp = tempfile.mkdtemp(prefix="mle-bench-serve-")
    data = os.path.join(tmp, "data")
    job = os.path.join(tmp, "abalone")
    env = dict(os.environ, MLE_DATA_DIR=data)
    subprocess.run([MLE, "train", "--example", "abalone", "--job-dir", job, "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL)
    export_root = os.path.join(job, "export/abalone")
    export = os.path.join(export_root, sorted(os.listdir(export_root))[-1])
    procs = []
    try:
        server = subprocess.Popen([MLE, "server", "--listen", "127.0.0.1:0", "--data-dir", data],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        procs.append(server)
        mle_url = wait_url(server, r"(http://\S+)")
        env["MLE_SERVER"] = mle_url
        subprocess.run([MLE, "models", "create", "abalone"], check=True, env=env)
        subprocess.run([MLE, "versions", "create", "v1", "--model", "abalone", "--origin", export],
                       check=True, env=env, stderr=subprocess.DEVNULL)
        token = open(os.path.join(data, "token")).read().strip()
        bare = subprocess.Popen([LOAD, "bare", "127.0.0.1:0"], stdout=subprocess.PIPE)
        procs.append(bare)
        bare_url = wait_url(bare, r"(http://\S+)")
        port = free_port()
        peer = subprocess.Popen(
            [PY, "-m", "uvicorn", "serve_peer:app", "--port", str(port), "--workers", "2",
             "--log-level", "warning", "--no-access-log"],
            cwd=os.path.join(ROOT, "bench"), env=dict(os.environ, MODEL_ONNX=os.path.join(export, "model.onnx")),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(peer)
        wait_port(port)
        with open(os.path.join(ROOT, "examples/abalone/data/abalone_test.csv")) as f:
            rows = [r for r in csv.reader(f) if r]
        rows = [[float(v) for v in r[:7]] for r in rows]
        bodies = {}
        for n in (1, 64):
            path = os.path.join(tmp, "body%d.json" % n)
            with open(path, "w") as f:
                json.dump({"instances": rows[:n]}, f)
            bodies[n] = path
        targets = [
            ("bare axum route", bare_url + "/predict"),
            ("mle server", mle_url + "/v1/projects/default/models/abalone:predict"),
            ("FastAPI + onnxruntime", "http://127.0.0.1:%d/predict" % port),
        ]
        results = {}
        for n in (1, 64):
            for name, url in targets:
                out = subprocess.run([LOAD, "load", url, bodies[n], token, str(CONNS), str(SECS)],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out)
                results[(name, n)] = r
                print(json.dumps({"target": name, "instances": n, **r}), flush=True)
        versions = subprocess.run(
            [PY, "-c", "import fastapi, uvicorn, onnxruntime; print('fastapi', fastapi.__version__, 'uvicorn', uvicorn.__version__, 'onnxruntime', onnxruntime.__version__)"],
            capture_output=True, text=True).stdout.strip()
        print()
        print("peer: %s; %d connections, %.0f s per run, cargo profile %s" % (versions, CONNS, SECS, PROFILE))
        print("| target | instances/request | requests/s | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        for n in (1, 64):
            for name, _ in targets:
                r = results[(name, n)]
                print("| %s | %d | %.0f | %.3f | %.3f | %d |" % (name, n, r["rps"], r["p50_ms"], r["p99_ms"], r["errors"]))
        for n in (1, 64):
            m = results[("mle server", n)]["rps"]
            print("instances %d: mle / bare route = %.2f, mle / Python peer = %.2f" % (
                n, m / results[("bare axum route", n)]["rps"], m / results[("FastAPI + onnxruntime", n)]["rps"]))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
