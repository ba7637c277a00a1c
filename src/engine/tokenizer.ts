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
    private readonly pieces: Pieces,
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
    return new TextTokenizer(new Tokenizer(tokenizerJson, tokenizerConfig), maxLength, pieceRule(tokenizerJson));
  }

  encode(text: string): Encoded {
    const { ids, tokens } = this.tokenizer.encode(cutBeyondModel(text, this.maxLength, this.pieces));
    if (ids.length <= this.maxLength) return { ids, tokens, truncated: false };
    const cut = <T>(all: T[]) => [...all.slice(0, this.maxLength - 1), all[all.length - 1]];
    return { ids: cut(ids), tokens: cut(tokens), truncated: true };
  }
}

/**
 * How a text splits into pieces that each give at least one token of their own, whatever the
 * rest of the text holds ("none" where that is not known for the tokenizer, which then reads
 * every text whole), and how many pieces one token may cover at most: an added token ([CLS],
 * [MASK]) is matched in the raw text before anything else, so it covers at most as many pieces
 * as it has characters.
 */
interface Pieces {
  readonly rule: "bert" | "byte-level" | "none";
  readonly perToken: number;
}

interface AddedToken {
  content?: string;
  normalized?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

/**
 * BERT's normalizer keeps every printable ASCII character (it lowercases them; it removes only
 * control characters and accents) and acts on each character alone; its pre-tokenizer splits at
 * whitespace and makes each ASCII punctuation or symbol character a word of its own; WordPiece
 * gives every word at least one token ([UNK] at worst). The byte-level BPE pre-tokenizer of
 * RoBERTa (no normalizer) splits at whitespace, and every pre-token gives at least one token.
 */
function pieceRule(json: { normalizer?: { type?: string } | null; pre_tokenizer?: { type?: string } | null; added_tokens?: AddedToken[] }): Pieces {
  const normalizer = json.normalizer?.type ?? null;
  const preTokenizer = json.pre_tokenizer?.type ?? null;
  const added = json.added_tokens ?? [];
  // Tokens matched after normalization, or taking whitespace beside them, cover more than their characters.
  if (added.some((a) => a.normalized || a.lstrip || a.rstrip || typeof a.content !== "string")) return { rule: "none", perToken: 1 };
  const perToken = Math.max(1, ...added.map((a) => a.content!.length));
  if ((normalizer === null || normalizer === "BertNormalizer") && preTokenizer === "BertPreTokenizer") return { rule: "bert", perToken };
  if (normalizer === null && preTokenizer === "ByteLevel") return { rule: "byte-level", perToken };
  return { rule: "none", perToken };
}

const isAsciiSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);
const isAsciiAlnum = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isAsciiPunct = (c: number) => c >= 0x21 && c <= 0x7e && !isAsciiAlnum(c);

/**
 * The text up to where the model has certainly stopped reading it: a cheap scan before the
 * tokenizer, which costs far more per character, so a long text costs what its first
 * max-seq-len tokens cost.
 *
 * A piece is a run between ASCII whitespace holding an ASCII letter or digit, or (BERT) one ASCII
 * punctuation character. Each gives at least one token of its own, and the text is cut only at a
 * boundary that tokenization never crosses (ASCII whitespace, or just after a BERT punctuation
 * character), so the tokens of what is kept are the first tokens of the whole text, except
 * where an added token straddles the cut (it covers at most `perToken` pieces). Once
 * `perToken` × (max-seq-len + 1) pieces are kept, the kept text alone gives more content tokens
 * before any such straddle than the model reads (max-seq-len minus [CLS] and [SEP]), since no
 * token covers more than `perToken` pieces: it is truncated just as the whole text is, to the
 * same tokens. Runs of whitespace, control characters or text without ASCII count for nothing,
 * so a text of them is read whole.
 */
export function cutBeyondModel(text: string, maxSeqLen: number, { rule, perToken }: Pieces): string {
  const maxLength = perToken * (maxSeqLen + 1);
  if (rule === "none" || text.length <= maxLength) return text;
  let pieces = 0;
  let inRun = false;
  let runCounts = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isAsciiSpace(c)) {
      if (inRun && runCounts && ++pieces >= maxLength) return text.slice(0, i);
      inRun = false;
      runCounts = false;
    } else if (rule === "bert" && isAsciiPunct(c)) {
      if (inRun && runCounts) pieces++;
      inRun = false;
      runCounts = false;
      if (++pieces >= maxLength) return text.slice(0, i + 1);
    } else {
      inRun = true;
      runCounts ||= isAsciiAlnum(c);
    }
  }
  return text;
}
