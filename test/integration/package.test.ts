/**
 * The published shape: `npm run build` output exposes the facade, the registry and TimeUuid from the package root,
 * and the emulator's CLI keeps its shebang.
 */
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { describe, expect, it } from "@effect/vitest"

const root = join(import.meta.dirname, "..", "..")
const out = join(root, ".tmp", "dist-test")

describe("package build", () => {
  it("emits an importable root entry with the original API", async () => {
    rmSync(out, { recursive: true, force: true })
    const build = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json", "--outDir", out], {
      cwd: root,
      encoding: "utf8"
    })
    expect(build.stdout + build.stderr).toBe("")
    const entry = await import(pathToFileURL(join(out, "index.js")).href)
    expect(typeof entry.FlowcoreDataPump.create).toBe("function")
    expect(typeof entry.TimeUuid.fromDate).toBe("function")
    expect(entry.dataPumpPromRegistry.contentType).toContain("text/plain")
    expect(typeof entry.DataPump.run).toBe("function")
    expect(readFileSync(join(out, "emulator", "cli.js"), "utf8").startsWith("#!/usr/bin/env node")).toBe(true)
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
    expect(pkg.exports["."].default).toBe("./dist/index.js")
    expect(pkg.bin["flowcore-emulator"]).toBe("./dist/emulator/cli.js")
  })
})
