#!/usr/bin/env node
// Writes kubeconform's JSON schemas for the resources that CustomResourceDefinitions define, one
// file per kind and version, named as the -schema-location template
// "{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json" looks them up
// (servingruntime-serving.kserve.io-v1alpha1.json). Strict, as kubeconform's openapi2jsonschema.py
// makes them with DENY_ROOT_ADDITIONAL_PROPERTIES and as Kubernetes' own strict schemas are: an
// object that lists its properties accepts no other, so a misspelt field is refused instead of
// ignored; the root too, unlike that script's default, so a misspelt `spec` is refused as well.
//
// Usage: crd-schemas.mjs OUT_DIR CRD.yaml...; prints the files written.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

const [out, ...crds] = process.argv.slice(2);
if (!out || crds.length === 0) {
  console.error("usage: crd-schemas.mjs OUT_DIR CRD.yaml...");
  process.exit(2);
}

/**
 * Closes every object schema that lists its properties and says nothing of others, where the
 * schema is a real structure: not under anyOf/allOf/oneOf/not, whose branches only add
 * constraints to the structure beside them, and not where the API server keeps unknown fields
 * (x-kubernetes-preserve-unknown-fields), whose extra fields are the point.
 */
function strict(schema) {
  if (schema === null || typeof schema !== "object") return;
  if (schema.properties && !("additionalProperties" in schema) && schema["x-kubernetes-preserve-unknown-fields"] !== true) {
    schema.additionalProperties = false;
  }
  for (const property of Object.values(schema.properties ?? {})) strict(property);
  for (const item of [schema.items ?? []].flat()) strict(item);
  if (typeof schema.additionalProperties === "object") strict(schema.additionalProperties);
}

mkdirSync(out, { recursive: true });
let written = 0;
for (const file of crds) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
    const crd = doc.toJS();
    if (crd?.kind !== "CustomResourceDefinition") continue;
    for (const version of crd.spec.versions ?? []) {
      const schema = version.schema?.openAPIV3Schema;
      if (!schema) continue;
      strict(schema);
      const name = `${crd.spec.names.kind}-${crd.spec.group}-${version.name}`.toLowerCase();
      writeFileSync(join(out, `${name}.json`), JSON.stringify(schema));
      console.log(`${name}.json`);
      written += 1;
    }
  }
}
if (written === 0) {
  console.error(`crd-schemas: no CustomResourceDefinition with a schema in ${crds.join(", ")}`);
  process.exit(1);
}
