#!/usr/bin/env python3
"""The workspace's structural invariants (ARCHITECTURE.md), checked by ./scripts/test.sh:

1. crate dependencies: each crate's declared dependencies (from `cargo metadata`) respect its
   invariant (for example: only mle-nn depends on burn; mle-predict, mle-server and the wire
   crates never reach burn, even through other crates; mle-api and mle-store know nothing of each
   other; only mle-cli depends on mle-server);
2. no import cycles between the files of a crate (`crate::`/`super::` paths);
3. no source file in mle-server/src or mle-cli/src is over 700 lines;
4. in mle-cli, only the `mle server` command (src/server.rs) uses `mle_server`.

Exits 1 naming every violation."""
import json, os, re, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
    cwd=root, check=True, capture_output=True, text=True).stdout)
members = {p["name"]: p for p in meta["packages"]}
deps = {name: {d["name"] for d in p["dependencies"] if d.get("kind") is None}
        for name, p in members.items()}

def reach(name, seen=None):
    """Every package `name` depends on, following workspace members transitively."""
    seen = set() if seen is None else seen
    for d in deps.get(name, ()):
        if d not in seen:
            seen.add(d)
            reach(d, seen)
    return seen

IO = {"tokio", "axum", "hyper", "sqlx", "ureq", "tract-onnx", "nix"}
HTTP_OR_STORE = {"axum", "hyper", "ureq", "sqlx", "mle-store", "mle-server", "mle-api"}
# crate -> (forbidden direct or transitive dependencies, why)
RULES = {
    "mle-api": (IO | {m for m in members if m != "mle-api"}, "the wire types do no I/O and stand alone"),
    "mle-tfconfig": ({m for m in members if m != "mle-tfconfig"} | IO, "TF_CONFIG is a format, no I/O crates"),
    "mle-bundle": ({m for m in members if m != "mle-bundle"} | IO | {"burn"}, "the manifest format reads files only"),
    "mle-data": ({"burn"} | HTTP_OR_STORE | {"mle-nn"}, "tabular data knows no models"),
    "mle-metrics": ({"burn", "mle-nn"} | HTTP_OR_STORE, "metric files only"),
    "mle-tune": ({"burn", "mle-nn"} | IO | HTTP_OR_STORE, "the tuner is pure computation"),
    "mle-store": ({"mle-api", "axum", "burn", "mle-nn"}, "the store knows nothing of the wire format"),
    "mle-exec": ({"mle-store", "axum", "sqlx", "burn", "mle-nn", "mle-server"}, "the run directory is the only interface"),
    "mle-predict": ({"burn", "mle-nn", "mle-train"} | HTTP_OR_STORE, "prediction without burn or HTTP"),
    "mle-train": ({"mle-dist"} | HTTP_OR_STORE | {"tokio"}, "training sees models only; no HTTP, no store"),
    "mle-dist": (HTTP_OR_STORE | {"tokio"}, "replicas exchange flat vectors over their own protocol"),
    "mle-storage": ({m for m in members if m != "mle-storage"} | {"burn", "axum", "sqlx"}, "objects and files only: no models, no jobs, no server"),
    "mle-server": ({"burn", "mle-nn", "mle-train", "mle-dist", "mle-cli"}, "the service trains nothing itself"),
}
problems = []
for name, (forbidden, why) in RULES.items():
    if name not in members:
        problems.append(f"{name}: no such workspace crate (update scripts/check-structure.py)")
        continue
    bad = sorted(reach(name) & forbidden)
    if bad:
        problems.append(f"{name} depends on {', '.join(bad)} ({why})")
for name in members:
    if name != "mle-nn" and any(d.startswith("burn") for d in deps[name]) and name != "custom-trainer":
        problems.append(f"{name} depends on burn directly (only mle-nn does; SDK users get mle_nn::burn)")
    if name != "mle-cli" and "mle-server" in deps[name]:
        problems.append(f"{name} depends on mle-server (only the mle binary does)")
    if "mle-cli" in deps[name]:
        problems.append(f"{name} depends on mle-cli")

def modules(src):
    files = {}
    for base, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                rel = os.path.relpath(os.path.join(base, n), src)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                files["::".join(rel)] = os.path.join(base, n)
    return files

def longest(files, segs):
    for k in range(len(segs), 0, -1):
        c = "::".join(segs[:k])
        if c in files:
            return c
    return None

def cycles(src):
    files = modules(src)
    g = {m: set() for m in files if m}
    for m, path in files.items():
        if not m:
            continue
        text = re.sub(r"//[^\n]*", "", open(path).read()).split("#[cfg(test)]")[0]
        parts = m.split("::")
        targets = [g2.split("::") for g2 in re.findall(r"\bcrate::((?:\w+::)*\w+)", text)]
        for grp in re.findall(r"\bcrate::\{([^}]*)\}", text):
            targets += [x.strip().split("::") for x in re.split(r",", grp) if x.strip()]
        targets += [parts[:-1] + g2.split("::") for g2 in re.findall(r"\bsuper::((?:\w+::)*\w+)", text)]
        for segs in targets:
            t = longest(files, segs)
            if t and t != m and not t.startswith(m + "::") and not m.startswith(t + "::"):
                g[m].add(t)
        # A child importing its parent module (routes::jobs -> routes) is fine; the parent only
        # declares it.
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in g:
        if v not in index:
            visit(v)
    return out

for name, p in members.items():
    src = os.path.join(os.path.dirname(p["manifest_path"]), "src")
    for comp in cycles(src):
        problems.append(f"{name}: files import each other: {' <-> '.join(comp)}")

for crate in ("mle-server", "mle-cli"):
    src = os.path.join(root, "crates", crate, "src")
    for path in modules(src).values():
        n = sum(1 for _ in open(path))
        if n > 700:
            problems.append(f"{os.path.relpath(path, root)}: {n} lines (at most 700)")

cli = os.path.join(root, "crates", "mle-cli", "src")
for path in modules(cli).values():
    if os.path.basename(path) != "server.rs" and "mle_server" in open(path).read():
        problems.append(f"{os.path.relpath(path, root)}: uses mle_server (only src/server.rs may)")

for p in problems:
    print("structure:", p)
if problems:
    sys.exit(1)
print(f"structure: {len(members)} crates keep their dependency rules; no import cycles; file sizes ok")
