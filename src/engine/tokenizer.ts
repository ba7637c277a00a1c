import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelLoadError } from "../errors.js";

export interface Encoded {
  readonly ids: number[];
  /** The tokens as strings, one per id (e.g. "[CLS]", "hello", "##ing"). */
  readonly tokens: string[];
  /** True when the text was longer than the maximum and its tail was cut. */
  readonly truncated: boolean;
}

/**
 * The backbone's own tokenizer.json, read by @huggingface/tokenizers. Truncation keeps the
 * closing special token ([SEP] / </s>) so a cut input still looks like a whole sequence to the model.
 */
export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly maxLength: number,
  ) {}

  static async load(dir: string, maxLength: number): Promise<TextTokenizer> {
    const read = async (file: string, required: boolean) => {
      try {
        return JSON.parse(await readFile(join(dir, file), "utf8"));
      } catch (err) {
        if (!required && (err as NodeJS.ErrnoException).code === "ENOENT") return {};
        throw new ModelLoadError(required ? "missing_file" : "malformed_file", `cannot read ${join(dir, file)}: ${String(err)}`);
      }
    };
    const tokenizerJson = await read("tokenizer.json", true);
    const tokenizerConfig = await read("tokenizer_config.json", false);
    if (maxLength < 2) throw new ModelLoadError("unsupported_config", `maximum sequence length ${maxLength} leaves no room for text`);
    return new TextTokenizer(new Tokenizer(tokenizerJson, tokenizerConfig), maxLength);
  }

  encode(text: string): Encoded {
    const { ids, tokens } = this.tokenizer.encode(text);
    if (ids.length <= this.maxLength) return { ids, tokens, truncated: false };
    const cut = <T>(all: T[]) => [...all.slice(0, this.maxLength - 1), all[all.length - 1]];
    return { ids: cut(ids), tokens: cut(tokens), truncated: true };
  }
}
