#!/usr/bin/env bash
# Lints the Helm chart and validates what it renders against Kubernetes' schemas, offline: with its
# defaults plus the values a fleet on object storage needs, that fleet with every optional part on,
# and one pod serving a library folder on a PersistentVolumeClaim with every optional part on. Then
# checks the fields that values decide, and that the renders that must fail do, each with its message.
# Then the KServe example under deploy/kserve, against KServe's schemas: valid, a misspelt field
# refused, and its fields consistent with the image and the server.
# Needs helm, kubeconform, the schemas and KServe's CustomResourceDefinitions that
# scripts/install-tools.sh puts in .tools/, and npm's packages (scripts/crd-schemas.mjs reads YAML).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
KUBE_VERSION=1.33.0
chart=deploy/helm/fusion-serve
schemas="$PWD/.tools/kubernetes-json-schema/v$KUBE_VERSION-local-strict"
[ -f "$schemas/deployment-apps-v1.json" ] || { echo "validate: no schemas in $schemas: run scripts/install-tools.sh" >&2; exit 1; }
KSERVE=v0.15.2
crds="$PWD/.tools/kserve-crds/$KSERVE"
[ -f "$crds/serving.kserve.io_inferenceservices.yaml" ] || { echo "validate: no KServe CustomResourceDefinitions in $crds: run scripts/install-tools.sh" >&2; exit 1; }

python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$chart/dashboards/fusion-serve.json"

fleet=(--set library.url=s3://models/fusion --set admin.token=an-admin-token-for-ci --set s3.endpoint=http://s3.storage.svc:8333
  --set s3.accessKeyId=key --set s3.secretAccessKey=secret)
# Every optional part of the chart that is off by default.
options=(--set-string 'serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::111122223333:role/fusion-serve'
  --set 'imagePullSecrets[0].name=registry-credentials'
  --set ingress.enabled=true --set ingress.className=nginx --set-string 'ingress.annotations.cert-manager\.io/cluster-issuer=letsencrypt'
  --set 'ingress.hosts[0].host=fusion.example.com' --set 'ingress.hosts[0].paths[0].path=/v1/predict'
  --set 'ingress.hosts[0].paths[1].path=/v1/fusions' --set 'ingress.hosts[0].paths[2].path=/info'
  --set 'ingress.tls[0].secretName=fusion-serve-tls' --set 'ingress.tls[0].hosts[0]=fusion.example.com'
  --set metrics.prometheusAdapter.enabled=true --set metrics.prometheusAdapter.namespace=monitoring)
full=("${fleet[@]}" "${options[@]}" --set metrics.serviceMonitor.enabled=true --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false)
single=(--set replicaCount=1 --set autoscaling.enabled=false --set podDisruptionBudget.enabled=false)
volume=(--set library.persistentVolumeClaim.claimName=fusion-library --set admin.token=an-admin-token-for-ci "${single[@]}" "${options[@]}"
  --set metrics.serviceMonitor.enabled=true)

for values in fleet full volume; do
  declare -n args=$values
  helm lint --strict --quiet --kube-version "$KUBE_VERSION" "$chart" "${args[@]}"
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

render() { helm template fusion "$chart" --kube-version "$KUBE_VERSION" "$@"; }
# The value of the first line of the rendered manifests that starts with KEY.
field() {
  local key=$1 out
  shift
  out=$(render "$@") || return
  sed -n "s#^ *$key: ##p" <<<"$out" | sed -n 1p
}
# The value of FIELD on the line after the first that opens KEY, as in imagePullSecrets: [{name: ...}].
under() {
  local key=$1 field=$2 out
  shift 2
  out=$(render "$@") || return
  sed -n "/^ *$key:\$/{n;s/^ *$field: //p}" <<<"$out" | sed -n 1p
}
# The value of the environment variable NAME in the pods.
env_value() {
  local name=$1 out
  shift
  out=$(render "$@") || return
  sed -n "/^ *- name: $name\$/{n;s/^ *value: //p}" <<<"$out" | sed -n 1p
}
# How many rendered lines match the extended regular expression PATTERN.
lines() {
  local pattern=$1 out
  shift
  out=$(render "$@") || return
  grep -cE -- "$pattern" <<<"$out" || true
}
checks=0
expect() {
  local what=$1 want=$2 got
  shift 2
  got=$("$@")
  [ "$got" = "$want" ] || { echo "validate: $what: got '$got', want '$want'" >&2; exit 1; }
  checks=$((checks + 1))
}
expect "an existing ServiceAccount is used" fusion-reader field serviceAccountName "${fleet[@]}" --set serviceAccount.create=false --set serviceAccount.name=fusion-reader
expect "an existing ServiceAccount is not created" 0 lines "^kind: ServiceAccount$" "${fleet[@]}" --set serviceAccount.create=false --set serviceAccount.name=fusion-reader
expect "the ServiceAccount carries its annotations" arn:aws:iam::111122223333:role/fusion-serve field eks.amazonaws.com/role-arn "${full[@]}"
expect "the pods pull with the registry's Secret" registry-credentials under imagePullSecrets "- name" "${full[@]}"
# Threads of the forward pass from the pod's CPU: the limit, else the request, rounded down, at least 1.
for case in "2 -:2" "- 1500m:1" "2 3:3" "2 0.5:1" "2 100m:1" "- 2.5:2" "1 -:1"; do
  read -r request limit <<<"${case%:*}"
  cpu=(--set resources.requests.cpu="${request/#-/null}" --set resources.limits.cpu="${limit/#-/null}")
  expect "threads for a CPU request of $request and a limit of $limit" "\"${case#*:}\"" env_value FUSION_THREADS "${fleet[@]}" "${cpu[@]}"
done
expect "server.threads over the CPU" '"6"' env_value FUSION_THREADS "${fleet[@]}" --set resources.limits.cpu=1 --set server.threads=6
expect "no threads without a CPU request or limit" "" env_value FUSION_THREADS "${fleet[@]}" --set resources.requests.cpu=null
expect "a library volume is mounted" fusion-library field claimName "${volume[@]}"
expect "a library volume is the server's library" /library env_value FUSION_LIBRARY "${volume[@]}"
expect "a library volume's pod is replaced, not rolled" Recreate field type "${volume[@]}" --show-only templates/deployment.yaml
expect "a library volume needs no S3 Secret" 1 lines "^kind: Secret$" "${volume[@]}" --set s3.accessKeyId=key --set s3.secretAccessKey=secret
expect "the Ingress routes to the Service" fusion-fusion-serve under service name "${full[@]}" --show-only templates/ingress.yaml
expect "the Ingress serves TLS" fusion-serve-tls field secretName "${full[@]}" --show-only templates/ingress.yaml
expect "no Ingress by default" 0 lines "^kind: Ingress$" "${fleet[@]}"
expect "the adapter configuration goes to the adapter's namespace" monitoring field namespace "${full[@]}" --show-only templates/prometheus-adapter.yaml
expect "the adapter serves the series under the autoscaler's name" queue_depth under name as "${full[@]}" --set autoscaling.queueDepthMetric=queue_depth
# The grace period covers the preStop wait, the drain and the shutdown timeout, and 5 s to exit.
expect "the grace period by default" 45 field terminationGracePeriodSeconds "${fleet[@]}"
shutdown=(--set shutdown.preStopSeconds=0 --set shutdown.drainSeconds=10 --set shutdown.timeoutSeconds=60)
expect "the grace period without a preStop wait" 75 field terminationGracePeriodSeconds "${fleet[@]}" "${shutdown[@]}"
expect "a preStop hook by default" 1 lines "^ +preStop:$" "${fleet[@]}"
expect "no preStop hook without a wait" 0 lines "^ +preStop:$" "${fleet[@]}" "${shutdown[@]}"
expect "the shutdown timeout the server is given" '"60000"' env_value FUSION_SHUTDOWN_TIMEOUT_MS "${fleet[@]}" "${shutdown[@]}"
echo "validate: $checks rendered fields as the values ask"

# The autoscaler's metric is one the server exports, under the name the adapter rule looks for.
hpa_metric=$(under metric name "${fleet[@]}" --show-only templates/hpa.yaml)
rule_series=$(sed -n "s/^ *- seriesQuery: '\([a-z_:]*\){.*/\1/p" "$chart/prometheus-adapter-rules.yaml")
rule_name=$(under name as "${full[@]}")
[ "$hpa_metric" = "$rule_name" ] && [ "$hpa_metric" = "$rule_series" ] \
  || { echo "validate: the autoscaler asks for '$hpa_metric', the adapter rule serves '$rule_name' from the series '$rule_series'" >&2; exit 1; }
grep -rqF "\"$rule_series\"" src/ || { echo "validate: the server exports no metric named $rule_series" >&2; exit 1; }
echo "validate: the autoscaler's metric $hpa_metric: the adapter rule serves it, the server exports it"

# Renders that must fail, each with its own message: a render refused for another reason (a typo
# in the values, the Kubernetes version) would otherwise pass for the refusal it is meant to show.
refusals=0
refuse() {
  local why=$1 err
  shift
  if err=$(helm template fusion "$chart" --kube-version "$KUBE_VERSION" "$@" 2>&1 >/dev/null); then
    echo "validate: rendered with $*, but the chart must refuse it: $why" >&2
    exit 1
  fi
  grep -qF -- "$why" <<<"$err" || { echo "validate: $* was refused with \"$err\", not: $why" >&2; exit 1; }
  refusals=$((refusals + 1))
}
refuse "library.url must be an s3://bucket/prefix URL; a library folder comes from library.persistentVolumeClaim.claimName" "${fleet[@]}" --set library.url=/srv/library
refuse "no library: set library.url" "${fleet[@]}" --set library.url=
refuse "set library.url or library.persistentVolumeClaim.claimName, not both" "${fleet[@]}" --set library.persistentVolumeClaim.claimName=fusion-library
# A library folder has one writer: no second pod, by count, by autoscaling, or kept by a budget.
claim=(--set library.url= --set library.persistentVolumeClaim.claimName=fusion-library)
refuse "served by one pod: set replicaCount=1, autoscaling.enabled=false, podDisruptionBudget.enabled=false" "${fleet[@]}" "${claim[@]}"
refuse "served by one pod: set replicaCount=1;" "${fleet[@]}" "${claim[@]}" "${single[@]}" --set replicaCount=2
refuse "served by one pod: set autoscaling.enabled=false;" "${fleet[@]}" "${claim[@]}" "${single[@]}" --set autoscaling.enabled=true
refuse "served by one pod: set podDisruptionBudget.enabled=false" "${fleet[@]}" "${claim[@]}" "${single[@]}" --set podDisruptionBudget.enabled=true
refuse "admin.token of at least 16 characters" "${fleet[@]}" --set admin.token=short
refuse "cannot derive the forward pass's threads from the CPU quantity \"1k\"" "${fleet[@]}" --set resources.limits.cpu=1k
refuse "server.threads must be a whole number" "${fleet[@]}" --set server.threads=two
refuse "env.FUSION_THREADS is set by the chart (from server.threads or the CPU resources)" "${fleet[@]}" --set env.FUSION_THREADS=4
echo "validate: $refusals renders refused, each with its message"
echo "validate: chart OK"

# The KServe example (deploy/kserve), against the schemas of KServe's CustomResourceDefinitions
# that scripts/install-tools.sh fetched, made strict here by scripts/crd-schemas.mjs, and
# Kubernetes' own for anything else.
crd_schemas=$(mktemp -d)
trap 'rm -rf "$crd_schemas"' EXIT
node scripts/crd-schemas.mjs "$crd_schemas" "$crds"/*.yaml >/dev/null
kserve_validate() {
  kubeconform -strict -summary -kubernetes-version "$KUBE_VERSION" \
    -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$crd_schemas/{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json" "$@"
}
summary=$(kserve_validate deploy/kserve/*.yaml) || { echo "validate: the KServe example is invalid: $summary" >&2; exit 1; }
echo "validate (kserve): $summary; kinds: $(cat deploy/kserve/*.yaml | grep -E '^kind: ' | sed 's/kind: //' | sort | uniq | tr '\n' ' ')"
[[ $summary =~ Valid:\ ([1-9][0-9]*) ]] || { echo "validate: kubeconform validated no resource of the KServe example" >&2; exit 1; }

# A misspelt field is refused, and named: schemas that let it through would pass anything.
misspelt=0
misspell() {
  local file=$1 field=$2 typo=$3 copy="$crd_schemas/misspelt.yaml" out
  sed "s/^\( *\)$field:\$/\1$typo:/" "$file" >"$copy"
  if cmp -s "$file" "$copy"; then echo "validate: $file has no line '$field:' to misspell" >&2; exit 1; fi
  if out=$(kserve_validate "$copy"); then echo "validate: $file with '$typo' for '$field' was accepted" >&2; exit 1; fi
  grep -qF "additional properties '$typo' not allowed" <<<"$out" || { echo "validate: $file with '$typo' for '$field' was refused for another reason: $out" >&2; exit 1; }
  misspelt=$((misspelt + 1))
}
misspell deploy/kserve/inferenceservice.yaml model modle
misspell deploy/kserve/servingruntime.yaml volumeMounts volumeMount
misspell deploy/kserve/inferenceservice-s3.yaml spec sepc
echo "validate: $misspelt misspelt fields of the KServe example refused, each named"

# What the schemas cannot see: the example agrees with itself, the image and the server.
node --input-type=module - deploy/kserve/*.yaml <<'JS'
import { readFileSync } from "node:fs";
import { parse, parseAllDocuments } from "yaml";

const docs = process.argv.slice(2).flatMap((file) => parseAllDocuments(readFileSync(file, "utf8")).map((doc) => doc.toJS()));
const [runtime, ...others] = docs.filter((doc) => doc.kind === "ServingRuntime");
const services = docs.filter((doc) => doc.kind === "InferenceService");
let checks = 0;
function expect(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    console.error(`validate: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    process.exit(1);
  }
  checks += 1;
}
const env = (container) => Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));

expect("one ServingRuntime", others.length, 0);
const container = runtime.spec.containers.find((c) => c.name === "kserve-container");
expect("the container KServe mounts /mnt/models in", container?.name, "kserve-container");
const vars = env(container);
const mounts = (container.volumeMounts ?? []).map((m) => m.mountPath);
expect("the library is seeded from KServe's download", vars.FUSION_SEED_LIBRARY, "/mnt/models");
expect("the library is a volume of the pod", mounts.includes(vars.FUSION_LIBRARY), true);
expect("threads of the forward pass as the CPU limit", vars.FUSION_THREADS, String(container.resources.limits.cpu));
const grace = Number(vars.FUSION_DRAIN_SECONDS) + Number(vars.FUSION_SHUTDOWN_TIMEOUT_MS) / 1000 + 5;
expect("the drain and the shutdown timeout, and 5 s to exit, within the default grace period of 30 s", grace <= 30, true);
const imagePort = Number(/\bPORT=(\d+)/.exec(readFileSync("Dockerfile", "utf8"))[1]);
expect("the port is the image's", container.ports.map((p) => p.containerPort), [imagePort]);
const served = Object.keys(parse(readFileSync("openapi.yaml", "utf8")).paths);
for (const probe of ["livenessProbe", "readinessProbe"]) {
  const { path, port } = container[probe].httpGet;
  expect(`the ${probe} asks a path the server serves`, served.includes(path) ? path : `${path} (not in openapi.yaml)`, path);
  expect(`the ${probe} asks the server's port`, port, imagePort);
}
// Variables the server reads (src/config.ts), the entry point reads, or the S3 client takes.
const known = new Set([
  ...readFileSync("src/config.ts", "utf8").matchAll(/\benv: "([A-Z0-9_]+)"/g).map((m) => m[1]),
  ...readFileSync("scripts/docker-entrypoint.sh", "utf8").matchAll(/\$\{([A-Z0-9_]+):/g).map((m) => m[1]),
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
]);
const everyEnv = [container, ...services.map((s) => s.spec.predictor.model)].flatMap((c) => c.env ?? []);
expect("every variable set is one that is read", everyEnv.map((e) => e.name).filter((name) => !known.has(name)), []);
for (const service of services) {
  const { model } = service.spec.predictor;
  const name = service.metadata.name;
  expect(`${name}: the runtime`, model.runtime, runtime.metadata.name);
  expect(`${name}: a model format of the runtime`, runtime.spec.supportedModelFormats.some((f) => f.name === model.modelFormat.name), true);
  expect(`${name}: a protocol of the runtime`, runtime.spec.protocolVersions.includes(model.protocolVersion), true);
  const own = env(model);
  // A library from storageUri, or one on object storage: never both, never neither.
  expect(`${name}: storageUri or an s3:// FUSION_LIBRARY`, [model.storageUri !== undefined, /^s3:\/\//.test(own.FUSION_LIBRARY ?? "")].filter(Boolean).length, 1);
  if (own.FUSION_LIBRARY_CACHE !== undefined) expect(`${name}: the download cache is a volume of the pod`, mounts.includes(own.FUSION_LIBRARY_CACHE), true);
  // Without an object store, admin changes would stay in one pod's copy of the library.
  expect(`${name}: the admin API only with a library on object storage`, own.ADMIN_TOKEN === undefined || own.FUSION_LIBRARY?.startsWith("s3://"), true);
}
console.log(`validate: ${checks} fields of the KServe example agree with each other, the image and the server`);
JS
echo "validate: kserve OK"
