"""Writes a pure-Python wheel of one module by hand (zipfile: no build tools, no network):
make_wheel.py OUT_DIR NAME VERSION — module NAME (dashes as underscores) with VERSION = ..."""
import base64
import hashlib
import os
import sys
import zipfile

out, name, version = sys.argv[1:4]
mod = name.replace("-", "_")
dist = f"{mod}-{version}"
files = {
    f"{mod}/__init__.py": f"VERSION = {version!r}\n",
    f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: mle-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}


def digest(text):
    d = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    return f"sha256={d},{len(text.encode())}"


record = "".join(f"{p},{digest(t)}\n" for p, t in files.items()) + f"{dist}.dist-info/RECORD,,\n"
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(os.path.join(out, f"{dist}-py3-none-any.whl"), "w") as z:
    for p, t in files.items():
        z.writestr(p, t)
    z.writestr(f"{dist}.dist-info/RECORD", record)
