# The trainer package as Cloud ML Engine took it. TensorFlow itself comes from the runtime
# (mle server --runtime 2.11=...): it is not listed, so it is never reinstalled.
from setuptools import find_packages, setup

setup(name="tf2-trainer", version="0.1", packages=find_packages())
