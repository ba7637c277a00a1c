#!/usr/bin/env bash
# Lints the Helm chart and validates what it renders against Kubernetes' schemas, offline: once
# with its defaults plus the values a fleet needs, once with every optional part on.
# Needs helm, kubeconform and the schemas that scripts/install-tools.sh puts in .tools/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
KUBE_VERSION=1.33.0
chart=deploy/helm/fusion-serve
schemas="$PWD/.tools/kubernetes-json-schema/v$KUBE_VERSION-local-strict"
[ -f "$schemas/deployment-apps-v1.json" ] || { echo "validate: no schemas in $schemas: run scripts/install-tools.sh" >&2; exit 1; }

python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$chart/dashboards/fusion-serve.json"

fleet=(--set library.url=s3://models/fusion --set admin.token=an-admin-token-for-ci --set s3.endpoint=http://s3.storage.svc:8333
  --set s3.accessKeyId=key --set s3.secretAccessKey=secret)
full=("${fleet[@]}" --set metrics.serviceMonitor.enabled=true --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false)

helm lint --strict --kube-version "$KUBE_VERSION" "$chart" "${fleet[@]}"
for values in fleet full; do
  declare -n args=$values
  out=$(mktemp --suffix .yaml)
  helm template fusion "$chart" --kube-version "$KUBE_VERSION" "${args[@]}" >"$out"
  # The ServiceMonitor is a Prometheus Operator resource: Kubernetes' schemas do not describe it.
  summary=$(kubeconform -strict -summary -kubernetes-version "$KUBE_VERSION" -skip ServiceMonitor \
    -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$out")
  echo "validate ($values): $summary; kinds: $(grep -E '^kind: ' "$out" | sed 's/kind: //' | sort | uniq | tr '\n' ' ')"
  rm -f "$out"
  # A summary that validated nothing would pass silently.
  [[ $summary =~ Valid:\ ([1-9][0-9]*) ]] || { echo "validate: kubeconform validated no resource" >&2; exit 1; }
done

# A chart without an s3:// library or an admin token must refuse to render.
if helm template fusion "$chart" --kube-version "$KUBE_VERSION" --set library.url=/srv/library --set admin.token=an-admin-token-for-ci >/dev/null 2>&1; then
  echo "validate: a folder library rendered, but the chart must require s3://" >&2
  exit 1
fi
if helm template fusion "$chart" --kube-version "$KUBE_VERSION" --set admin.token=short >/dev/null 2>&1; then
  echo "validate: a short admin token rendered" >&2
  exit 1
fi
echo "validate: chart OK"
