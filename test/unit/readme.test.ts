/**
 * Every TypeScript block of README.md must compile against the library: the blocks are written out as modules that
 * import "@flowcore/data-pump" (mapped to src/) and type-checked with the project's compiler settings.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"

const root = join(import.meta.dirname, "..", "..")
const readme = readFileSync(join(root, "README.md"), "utf8")
const blocks = [...readme.matchAll(/```(?:ts|typescript)\n([\s\S]*?)```/g)].map((match) => match[1] ?? "")

describe("README", () => {
  it("has TypeScript examples", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6)
  })

  it("every TypeScript block compiles", () => {
    const dir = join(root, ".tmp", "readme-snippets")
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    blocks.forEach((code, i) => {
      // Each block is its own module, so top-level names never clash between blocks.
      writeFileSync(join(dir, `block-${i + 1}.ts`), `${code}\nexport {}\n`)
    })
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        extends: "../../tsconfig.json",
        compilerOptions: {
          noEmit: true,
          noUnusedLocals: false,
          paths: {
            "@flowcore/data-pump": ["../../src/index.ts"],
            "@flowcore/data-pump/emulator": ["../../src/emulator/index.ts"]
          }
        },
        include: ["*.ts"]
      })
    )
    const result = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(dir, "tsconfig.json")], {
      encoding: "utf8"
    })
    expect(result.stdout + result.stderr).toBe("")
    expect(result.status).toBe(0)
  })
})
