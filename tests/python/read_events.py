"""Reads an mle job dir with TensorBoard's own loader and prints the scalars as JSON."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

out = {}
for sub in ("", "eval"):
    acc = EventAccumulator(f"{sys.argv[1]}/{sub}")
    acc.Reload()
    out[sub or "train"] = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
    }
print(json.dumps(out))
