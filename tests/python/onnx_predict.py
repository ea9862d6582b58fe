"""Runs model.onnx of an export bundle in onnxruntime on rows given as JSON on stdin."""
import json
import sys

import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession(f"{sys.argv[1]}/model.onnx", providers=["CPUExecutionProvider"])
rows = np.asarray(json.load(sys.stdin), dtype=np.float32)
(out,) = sess.run(["output"], {"features": rows})
print(json.dumps(out.tolist()))
