// @ts-check
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

/** Folders a layer may not import from: the arrows point down only (docs/design.md, "Layout"). */
const above = {
  formats: ["engine", "library", "scheduler", "core", "server", "export", "cli"],
  engine: ["library", "scheduler", "core", "server", "export", "cli"],
  library: ["scheduler", "core", "server", "export", "cli"],
  scheduler: ["core", "server", "export", "cli"],
  core: ["server", "export", "cli"],
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".tools/", ".venv*/", "exported/", "bench/results/", "coverage/", ".tap/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      eqeqeq: ["error", "always"],
      "prefer-const": "error",
      "no-console": "off",
    },
  },
  {
    // Tests and benches read JSON answers of many shapes; `any` there is the parsed body, not a hole in the types of src/.
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  ...Object.entries(above).map(([layer, forbidden]) => ({
    files: [`src/${layer}/**/*.ts`],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            ...forbidden.map((folder) => ({ group: [`**/${folder}/*`, `../${folder}/*`, `../../${folder}/*`], message: `${layer}/ sits below ${folder}/: it may not import from it` })),
            { group: ["**/config.js"], message: "only main.ts, server/ and the CLIs read the configuration; pass options down" },
            ...(layer === "server" ? [] : [{ group: ["fastify", "fastify-plugin", "@fastify/*"], message: "fastify belongs to server/ only" }]),
          ],
        },
      ],
    },
  })),
);
