import effect from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["**/node_modules/**", ".cache/**", "**/dist/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-restricted-imports": ["error", {
        paths: ["node:child_process", "child_process"].map((name) => ({
          name,
          message: "Start processes with ServiceProcess (@kpipe/devtools), on @effect/platform's Command."
        }))
      }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "no-restricted-syntax": ["error", {
        selector: "CallExpression[callee.object.name='Effect'][callee.property.name='promise']",
        message:
          "Effect.promise turns a failure into a defect that no retry or dead-letter policy sees; use Effect.tryPromise."
      }]
    }
  },
  {
    files: ["**/test/**", "vitest.*.ts", "packages/testing/**"],
    rules: { "no-restricted-syntax": "off" }
  }
)
