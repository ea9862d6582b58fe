# torch comes from the runtime (mle server --runtime 2.1=/opt/torch/bin/python): not listed here.
from setuptools import find_packages, setup

setup(name="torch-trainer", version="0.1", packages=find_packages())
