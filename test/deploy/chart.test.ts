import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import t from "tap";

// The Helm chart under deploy/, linted and rendered, every manifest validated against
// Kubernetes' schemas offline, and the KServe example against KServe's (deploy/validate.sh); the
// tools, the schemas and KServe's CustomResourceDefinitions come from scripts/install-tools.sh.
const ROOT = join(import.meta.dirname, "..", "..");
const TOOLS = ["helm", "kubeconform"].map((tool) => join(ROOT, ".tools", "bin", tool));
const SCHEMAS = [join(ROOT, ".tools", "kubernetes-json-schema"), join(ROOT, ".tools", "kserve-crds")];

function missing(): string | undefined {
  const absent = [...TOOLS, ...SCHEMAS].filter((p) => !existsSync(p));
  if (absent.length === 0) return undefined;
  const why = `${absent.map((p) => p.slice(ROOT.length + 1)).join(", ")} missing: run scripts/install-tools.sh`;
  if (process.env.CI) throw new Error(`${why} (.ci/run does; the chart must be validated in CI)`);
  return why;
}

t.test("the chart renders manifests that Kubernetes' schemas accept, and KServe's accept the KServe example", { skip: missing() }, async (t) => {
  const run = spawnSync("bash", [join(ROOT, "deploy", "validate.sh")], { encoding: "utf8", timeout: 120_000 });
  t.equal(run.status, 0, `deploy/validate.sh: ${run.stderr}${run.stdout}`);
  // Each set of values renders the kinds it asks for, and every one of them is valid.
  t.match(run.stdout, /^validate \(fleet\): Summary: 8 resources found in 1 file - Valid: 8, Invalid: 0, Errors: 0, Skipped: 0; kinds: ConfigMap Deployment HorizontalPodAutoscaler PodDisruptionBudget Secret Service ServiceAccount $/m);
  t.match(run.stdout, /^validate \(full\): Summary: 9 resources found in 1 file - Valid: 8, Invalid: 0, Errors: 0, Skipped: 1; kinds: ConfigMap Deployment Ingress Secret Service ServiceAccount ServiceMonitor $/m);
  t.match(run.stdout, /^validate \(volume\): Summary: 8 resources found in 1 file - Valid: 7, Invalid: 0, Errors: 0, Skipped: 1; kinds: ConfigMap Deployment Ingress Secret Service ServiceAccount ServiceMonitor $/m);
  t.match(run.stdout, /^validate: 27 rendered fields as the values ask$/m);
  t.match(run.stdout, /^validate: 11 renders refused, each with its message$/m);
  t.match(run.stdout, /validate: the autoscaler's metric fusion_queue_depth: the adapter rule serves it, the server exports it/);
  t.match(run.stdout, /validate: chart OK/);
  // The KServe example: every resource valid against KServe's strict schemas, which refuse a
  // misspelt field, and consistent with the image and the server.
  t.match(run.stdout, /^validate \(kserve\): Summary: 3 resources found in 3 files - Valid: 3, Invalid: 0, Errors: 0, Skipped: 0; kinds: InferenceService ServingRuntime $/m);
  t.match(run.stdout, /^validate: 3 misspelt fields of the KServe example refused, each named$/m);
  t.match(run.stdout, /^validate: 23 fields of the KServe example agree with each other, the image and the server$/m);
  t.match(run.stdout, /validate: kserve OK/);
  t.comment(run.stdout.split("\n").filter((l) => l.startsWith("validate")).join("\n"));
});
