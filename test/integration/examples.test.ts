/**
 * Runs every example as a user would (`node examples/<name>.ts`) and checks that it exits 0 by itself and prints
 * what it claims to show. The Postgres example needs PostgreSQL on 127.0.0.1:5432 and fails without it.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"

const root = resolve(import.meta.dirname, "../..")
const node = join(root, "node_modules/.bin/node")

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs an example to completion; kills it (and fails) if it has not exited within `timeoutMs`. */
const runExample = (name: string, args: ReadonlyArray<string>, cwd = root, timeoutMs = 40_000): Promise<Run> =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(node, [join(root, "examples", name), ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${name} ${args.join(" ")} did not exit within ${timeoutMs} ms:\n${stdout}\n${stderr}`))
    }, timeoutMs)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      resolvePromise({ code, stdout, stderr })
    })
  })

/** Exit code 0, with the output attached to the failure message when it is not. */
const expectSuccess = (run: Run) => expect(run.code, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0)

const EVENT_ID = "[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
const POSITION = new RegExp(`(\\d{14}/${EVENT_ID})`)

const temporaryDirectories: Array<string> = []
afterAll(() => {
  for (const directory of temporaryDirectories) rmSync(directory, { recursive: true, force: true })
})

describe.concurrent("examples", () => {
  // First: it is the longest (three runs one after another), and vitest runs at most five tests at once.
  it("demo: a second run resumes where the first stopped, and --reset starts over", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "data-pump-demo-"))
    temporaryDirectories.push(cwd)

    const first = await runExample("demo.ts", ["--duration", "4"], cwd)
    expectSuccess(first)
    expect(first.stdout).toContain("emulator: seeded 30,000 events")
    expect(first.stdout).toMatch(/^metrics {3}http:\/\/127\.0\.0\.1:\d+\/metrics$/m)
    expect(first.stdout).toMatch(/^emulator {2}http:\/\/127\.0\.0\.1:\d+$/m)
    expect(first.stdout).toContain("no saved state in .demo/state.json")
    expect(first.stdout).toMatch(/catch-up \d{14} [\d.]+% \| [\d,]+ ev\/s \| lag \S+ \| buffer \d+\/1000 \| retries/)
    const stoppedAt = /final checkpoint (\S+)/.exec(first.stdout)?.[1]
    expect(stoppedAt).toMatch(POSITION)

    const second = await runExample("demo.ts", ["--duration", "4"], cwd)
    expectSuccess(second)
    expect(second.stdout).toContain("emulator: reloaded the history persisted in .demo/events.ndjson")
    expect(second.stdout).toContain(`resuming from ${stoppedAt}`)

    const reset = await runExample("demo.ts", ["--duration", "1", "--reset", "--events", "1000"], cwd)
    expectSuccess(reset)
    expect(reset.stdout).toContain("--reset: deleted .demo/")
    expect(reset.stdout).toContain("emulator: seeded 1,000 events")
    expect(reset.stdout).toContain("no saved state in .demo/state.json")
  })

  it("push-mode: catches up on the history, then handles every live event", async () => {
    const run = await runExample("push-mode.ts", ["--duration", "2"])
    expectSuccess(run)
    expect(run.stdout).toContain("history: handled 300/300 events")
    const live = /live: produced (\d+), handled (\d+)/.exec(run.stdout)
    expect(Number(live?.[1])).toBeGreaterThan(0)
    expect(live?.[2]).toBe(live?.[1])
    expect(run.stdout).toMatch(new RegExp(`saved state: \\{ "timeBucket": "\\d{14}", "eventId": "${EVENT_ID}" \\}`))
  })

  // --duration only caps these three; each has to finish on its own well before it.
  it("pull-mode: redelivers failed events and reports the poisoned one as finally failed", async () => {
    const run = await runExample("pull-mode.ts", ["--duration", "20"])
    expectSuccess(run)
    expect(run.stdout).not.toContain("reached, stopping")
    expect(run.stdout).toMatch(/acknowledged 199 of 200, \d+ failed deliveries, 30 events redelivered/)
    const poisoned = /1 poisoned \(([^)]+)\)/.exec(run.stdout)?.[1]
    expect(run.stdout).toContain(`finally failed: 1 (${poisoned})`)
  })

  it("postgres-state: a second run resumes from the saved row and nothing is handled twice", async () => {
    const run = await runExample("postgres-state.ts", ["--duration", "20"])
    expectSuccess(run)
    const saved = run.stdout.match(/run 1: handled 200 events; row is now (\S+)/)?.[1]
    expect(saved).toMatch(POSITION)
    expect(run.stdout).toContain(`run 2: resuming from ${saved}`)
    expect(run.stdout).toContain("handled 400 of 400 events: 0 duplicates, 0 missing")
  })

  it("metrics-endpoint: serves and prints the flowcore_data_pump_* metrics", async () => {
    const run = await runExample("metrics-endpoint.ts", ["--duration", "20"])
    expectSuccess(run)
    expect(run.stdout).toContain("handled 2000 of 2000 events")
    const acknowledged = [...run.stdout.matchAll(/^flowcore_data_pump_events_acknowledged_counter\{.*\} (\d+)$/gm)]
    expect(acknowledged.reduce((sum, match) => sum + Number(match[1]), 0)).toBe(2000)
    expect(run.stdout).toMatch(/^flowcore_data_pump_events_redelivered_counter\{.*\} [1-9]\d*$/m)
  })

  it("effect-layers: runs DataPump.run over the layers and leaves a checkpoint file", async () => {
    const run = await runExample("effect-layers.ts", ["--duration", "2"])
    expectSuccess(run)
    const handled = /handled (\d+) events \(\d+ after a retry\) of 1000 historical \+ (\d+) live/.exec(run.stdout)
    expect(Number(handled?.[1])).toBe(1000 + Number(handled?.[2]))
    expect(run.stdout).toMatch(new RegExp(`checkpoint: \\d{14}/${EVENT_ID}`))
  })
})
