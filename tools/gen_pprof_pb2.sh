#!/usr/bin/env bash
# Regenerates plop/formats/profile_pb2.py from plop/formats/profile.proto.
# The checked-in file was made with grpcio-tools 1.85.1 (libprotoc 35.1, Python
# gencode 7.35.1), installed from PyPI into a scratch virtual environment:
#   python3 -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.85.1
#   PYTHON=/tmp/gen/bin/python bash tools/gen_pprof_pb2.sh
# Generated code needs a protobuf runtime at least as new as its gencode version,
# of the same major version: pyproject.toml pins the range to match.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m grpc_tools.protoc -I. --python_out=. plop/formats/profile.proto
