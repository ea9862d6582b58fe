"""The Python peer for bench/serve.sh: the same exported model (model.onnx of an mle export)
served by FastAPI + onnxruntime with the ml v1 request and response shapes."""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

session = ort.InferenceSession(os.environ["MODEL_ONNX"], providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
app = FastAPI()


@app.post("/predict")
async def predict(request: Request):
    body = await request.json()
    x = np.asarray(body["instances"], dtype=np.float32)
    y = session.run(None, {input_name: x})[0]
    return JSONResponse({"predictions": [float(v[0]) for v in y]})
