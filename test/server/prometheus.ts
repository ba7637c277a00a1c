/**
 * A strict reader of the Prometheus text exposition format (0.0.4): every line must be a HELP or
 * TYPE comment, a sample of a declared family, or blank; label values must be properly quoted
 * and escaped; values must be numbers. Histograms must have ascending `le`, cumulative
 * non-decreasing buckets, a +Inf bucket equal to _count, and a _sum. Throws on the first violation.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"];

export function parsePrometheusText(text: string): Exposition {
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples: Sample[] = [];
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  text
    .slice(0, -1)
    .split("\n")
    .forEach((line, i) => {
      const where = `line ${i + 1} '${line}'`;
      if (line === "") return;
      if (line.startsWith("#")) {
        const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
        if (!m) return; // other comments are allowed
        const [, kind, name, rest] = m;
        if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
        if (kind === "TYPE") {
          if (!TYPES.includes(rest)) throw new Error(`${where}: unknown type`);
          if (types.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
          if (samples.some((s) => familyOf(s.name, types) === name)) throw new Error(`${where}: TYPE after samples`);
          types.set(name, rest);
        } else {
          if (helped.has(name)) throw new Error(`${where}: second HELP for ${name}`);
          helped.add(name);
        }
        return;
      }
      const sample = parseSample(line, where);
      if (!familyOf(sample.name, types)) throw new Error(`${where}: sample of undeclared family`);
      samples.push(sample);
    });
  checkHistograms(types, samples);
  return { types, samples };
}

function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count|total|created)$/.exec(name);
  return m && types.has(m[1]) ? m[1] : undefined;
}

function parseSample(line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (!m) throw new Error(`${where}: not a sample line`);
  const [, name, rawLabels, rawValue] = m;
  const labels: Record<string, string> = {};
  if (rawLabels) {
    let rest = rawLabels.slice(1, -1);
    while (rest.length > 0) {
      const lm = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!lm || !LABEL_NAME.test(lm[1])) throw new Error(`${where}: malformed labels`);
      if (lm[1] in labels) throw new Error(`${where}: repeated label ${lm[1]}`);
      labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
      rest = rest.slice(lm[0].length);
    }
  }
  const value = /^[+-]?Inf$/.test(rawValue) ? (rawValue.startsWith("-") ? -Infinity : Infinity) : rawValue === "NaN" ? NaN : Number(rawValue);
  if (Number.isNaN(value) && rawValue !== "NaN") throw new Error(`${where}: value is not a number`);
  return { name, labels, value };
}

function checkHistograms(types: ReadonlyMap<string, string>, samples: readonly Sample[]): void {
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
    const keyOf = (labels: Readonly<Record<string, string>>) =>
      JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort());
    for (const s of samples) {
      if (!s.name.startsWith(`${family}_`)) continue;
      const key = keyOf(s.labels);
      const entry = series.get(key) ?? { buckets: [] };
      series.set(key, entry);
      if (s.name === `${family}_bucket`) {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        if (s.labels.le === undefined || Number.isNaN(le)) throw new Error(`${family}: bucket without a numeric le`);
        entry.buckets.push([le, s.value]);
      } else if (s.name === `${family}_count`) entry.count = s.value;
      else if (s.name === `${family}_sum`) entry.sum = s.value;
    }
    for (const [key, { buckets, count, sum }] of series) {
      const what = `${family}${key}`;
      if (count === undefined || sum === undefined) throw new Error(`${what}: missing _count or _sum`);
      buckets.forEach(([le, v], i) => {
        if (i > 0 && (le <= buckets[i - 1][0] || v < buckets[i - 1][1])) throw new Error(`${what}: buckets not ascending and cumulative`);
      });
      const last = buckets.at(-1);
      if (!last || last[0] !== Infinity || last[1] !== count) throw new Error(`${what}: +Inf bucket must equal _count`);
    }
  }
}

/** The one sample of `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return e.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
