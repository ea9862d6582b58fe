"""Writes an event file with a STEPS-step `loss` curve under DIR, with TensorBoard's own writer."""
import math
import sys

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

out, steps = sys.argv[1], int(sys.argv[2])
w = EventFileWriter(out)
for s in range(1, steps + 1):
    v = 2.0 + 8.0 * math.exp(-s / 20000) + 0.3 * math.sin(s / 50)
    summ = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=v)])
    w.add_event(event_pb2.Event(wall_time=1.7e9 + s, step=s, summary=summ))
w.close()
print(f"{steps} steps of loss in {out}")
