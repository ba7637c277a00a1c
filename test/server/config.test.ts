import { readFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { ConfigError, DEFAULT_CONFIG, effectiveMaxSeqLen, HelpRequested, loadConfig, OPTIONS, shownDefault, usage } from "../../src/config.js";

t.test("defaults, environment, flags: a flag wins over its variable", async (t) => {
  t.same(loadConfig([], {}), DEFAULT_CONFIG);
  const c = loadConfig(["--port", "9000", "--max-wait-ms=0", "--library", "lib"], { PORT: "1234", HOST: "0.0.0.0", FUSION_DEVICE: "cuda", FUSION_MAX_QUEUE: "2000" });
  t.equal(c.port, 9000);
  t.equal(c.host, "0.0.0.0");
  t.equal(c.device, "cuda");
  t.equal(c.maxQueue, 2000);
  t.equal(c.maxWaitMs, 0);
  t.equal(loadConfig([], { FUSION_PRECISION: "int8" }).precision, "int8");
  t.equal(loadConfig([], {}).libraryConsistency, "eventual");
  t.equal(loadConfig(["--library-consistency", "strict"], {}).libraryConsistency, "strict");
  t.equal(DEFAULT_CONFIG.int8Weights, "auto");
  t.equal(loadConfig([], { FUSION_INT8_WEIGHTS: "7" }).int8Weights, "7");
  t.equal(c.library, join(process.cwd(), "lib"), "relative library paths resolve against the working directory");
});

t.test("bad values fail fast, naming the flag, the variable and the value", async (t) => {
  const fails = (argv: string[], env: Record<string, string>, message: RegExp) => t.throws(() => loadConfig(argv, env), { name: "ConfigError", message });
  fails(["--port", "80x"], {}, /^--port must be an integer from 0 to 65535, got '80x'/);
  fails([], { PORT: "70000" }, /^PORT \(--port\) must be an integer from 0 to 65535, got '70000'/);
  fails(["--device", "tpu"], {}, /--device must be one of cpu, cuda, got 'tpu'/);
  fails(["--precision", "fp16"], {}, /--precision must be one of float32, int8, auto, got 'fp16'/);
  fails(["--precision", "int8", "--device", "cuda"], {}, /--precision int8 runs on the CPU only/);
  fails(["--int8-weights", "6"], {}, /--int8-weights must be one of auto, 8, 7, got '6'/);
  fails([], { FUSION_LIBRARY_CONSISTENCY: "linearizable" }, /FUSION_LIBRARY_CONSISTENCY \(--library-consistency\) must be one of eventual, strict, got 'linearizable'/);
  fails(["--max-batch-size", "0"], {}, /--max-batch-size must be an integer from 1/);
  fails(["--threads=-1"], {}, /--threads must be an integer/);
  fails(["--max-seq-len", "1"], {}, /--max-seq-len must be an integer from 2/);
  fails(["--log-level", "loud"], {}, /--log-level must be one of fatal, error/);
  fails(["--host", ""], {}, /--host must not be empty/);
  fails(["--max-queue", "10", "--max-inputs", "20"], {}, /--max-queue \(10\) must be at least --max-inputs \(20\)/);
  fails(["--max-batch-tokens", "100", "--max-seq-len", "128"], {}, /--max-batch-tokens \(100\) must be at least the sequence length \(128\)/);
  fails(["--keep-versions", "1"], {}, /--keep-versions must be an integer from 2/);
  fails(["--headers-timeout-ms", "5000", "--receive-timeout-ms", "1000"], {}, /--headers-timeout-ms \(5000\) must be at most --receive-timeout-ms \(1000\)/);
  fails(["--nope"], {}, /Unknown option '--nope'/);
  fails(["--port"], {}, /argument missing/);
  t.throws(() => loadConfig(["--help"], {}), HelpRequested);
});

t.test("the sequence length respects the backbone", async (t) => {
  t.equal(effectiveMaxSeqLen(DEFAULT_CONFIG, 512), 128);
  t.equal(effectiveMaxSeqLen(DEFAULT_CONFIG, 64), 64, "the default shrinks to a small backbone");
  t.equal(effectiveMaxSeqLen({ ...DEFAULT_CONFIG, maxSeqLen: 256 }, 512), 256);
  t.throws(() => effectiveMaxSeqLen({ ...DEFAULT_CONFIG, maxSeqLen: 256 }, 128), new ConfigError("--max-seq-len 256 exceeds the backbone's max_position_embeddings (128)"));
});

t.test("the README documents every flag and environment variable", async (t) => {
  const readme = await readFile(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
  for (const o of OPTIONS) {
    t.match(readme, `\`--${o.flag}\``, `--${o.flag}`);
    t.match(readme, `\`${o.env}\``, o.env);
  }
});

t.test("every default is a value its own flag accepts, shown as that flag would be given it", async (t) => {
  for (const o of OPTIONS) {
    if (o.shown !== undefined) continue;
    t.same(o.parse(shownDefault(o)), o.default, `--${o.flag} ${shownDefault(o)}`);
  }
  t.same(loadConfig([], {}), DEFAULT_CONFIG, "no flag and no variable: the defaults");
});

t.test("--help: every flag's text starts in one column, past the longest flag", async (t) => {
  const text = usage();
  const flagLines = text.split("\n").filter((l) => /^ {2}-/.test(l));
  t.ok(flagLines.length > OPTIONS.length, `${flagLines.length} flag lines`);
  const columns = new Set(flagLines.map((l) => /^ {2}(?:-h, )?\S+(?: <value>)? {2,}/.exec(l)?.[0].length));
  t.same([...columns].length, 1, "one column for every flag's text");
  const column = [...columns][0]!;
  for (const line of text.split("\n").filter((l) => /^ +env /.test(l))) t.equal(line.indexOf("env"), column, line);
});
