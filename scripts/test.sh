#!/usr/bin/env bash
# The test command: on a fresh clone, everything the tests need, then the tests, on Node.js 22.
#   scripts/install-tools.sh   Node.js 22, versitygw, helm, kubeconform into .tools/ (once)
#   npm ci                     exactly what package-lock.json pins; onnxruntime-node's optional
#                              CUDA download skipped (ONNXRUNTIME_NODE_INSTALL=skip): the CPU
#                              binaries ship inside the package
#   npm test                   type-check, lint, every tap test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"
echo "test: node $(node --version), npm $(npm --version)" >&2
ONNXRUNTIME_NODE_INSTALL=skip npm ci
npm test
