/**
 * The arithmetic of the crash harness (lost events, duplicates, duplicates per crash), checked on hand-made logs so
 * a harness bug cannot hide an engine bug, plus one short end-to-end run of the transactional scenario (needs
 * PostgreSQL on 127.0.0.1:5432 and fails without it). The full crash run is long and runs as a script:
 * `node test/crash/run.ts`.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { analyzeLogs, parseLog, spread } from "./analysis.ts"

const id = (n: number) => `${n.toString(16).padStart(8, "0")}-0000-1000-8000-000000000000`
const log = (...lines: ReadonlyArray<string>) => lines.map((line) => `${line}\n`).join("")

describe("parseLog", () => {
  it("reads handled and failed completions", () => {
    expect(parseLog(log(`${id(1)} s`, `${id(2)} f`, `${id(3)} s`))).toEqual({
      handled: [id(1), id(3)],
      failed: [id(2)],
      malformed: 0
    })
  })

  it("counts an unterminated last line and garbage as malformed, never as a completion", () => {
    const parsed = parseLog(`${log(`${id(1)} s`, "not a line", `${id(2)} x`)}${id(3)} s`)
    expect(parsed.handled).toEqual([id(1)])
    expect(parsed.malformed).toBe(3)
  })

  it("reads an empty log", () => {
    expect(parseLog("")).toEqual({ handled: [], failed: [], malformed: 0 })
  })
})

describe("analyzeLogs", () => {
  const ingested = [id(1), id(2), id(3), id(4), id(5)]

  it("counts an event completed only by the failed handler as completed, not lost", () => {
    const analysis = analyzeLogs(ingested, [parseLog(log(`${id(1)} s`, `${id(2)} f`, `${id(3)} s`, `${id(4)} s`))])
    expect(analysis.completed).toBe(4)
    expect(analysis.failedOnly).toBe(1)
    expect(analysis.lost).toBe(1)
    expect(analysis.lostSample).toEqual([id(5)])
  })

  it("attributes re-completions of a restart to the crash before it", () => {
    const runs = [
      parseLog(log(`${id(1)} s`, `${id(2)} s`, `${id(3)} s`)),
      parseLog(log(`${id(2)} s`, `${id(3)} s`, `${id(4)} s`)),
      parseLog(log(`${id(4)} f`, `${id(5)} s`))
    ]
    const analysis = analyzeLogs(ingested, runs)
    expect(analysis.lost).toBe(0)
    expect(analysis.perCrash).toEqual([2, 1])
    expect(analysis.duplicates).toBe(3)
    expect(analysis.inRunDuplicates).toBe(0)
    expect(analysis.lines).toBe(8)
    expect(spread(analysis.perCrash)).toEqual({ max: 2, avg: 1.5 })
  })

  it("tells a double delivery within one run apart from a redelivery after a crash", () => {
    const analysis = analyzeLogs(ingested, [parseLog(log(`${id(1)} s`, `${id(1)} s`)), parseLog(log(`${id(1)} s`))])
    expect(analysis.inRunDuplicates).toBe(1)
    expect(analysis.perCrash).toEqual([1])
    expect(analysis.duplicates).toBe(2)
  })

  it("flags completions of events that were never ingested", () => {
    const analysis = analyzeLogs([id(1)], [parseLog(log(`${id(1)} s`, `${id(9)} s`))])
    expect(analysis.unknown).toBe(1)
    expect(analysis.completed).toBe(1)
  })
})

describe("spread", () => {
  it("is zero for no crashes", () => {
    expect(spread([])).toEqual({ max: 0, avg: 0 })
  })
})

describe("crash harness end to end", () => {
  it("kills the transactional pump twice and finds every event projected exactly once", {
    timeout: 120_000
  }, async () => {
    const harness = fileURLToPath(new URL("./run.ts", import.meta.url))
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [harness, "--scenarios", "d", "--events", "1000", "--kills", "2", "--parallel", "1", "--seed", "7"],
        { timeout: 110_000 },
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number | null), stdout, stderr })
      )
    })
    expect(result.stderr).not.toContain("FAIL")
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^d\) transactional, batches of 10, postgres .* PASS$/m)
  })
})
