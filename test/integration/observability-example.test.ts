/**
 * `examples/tracing.ts` as a user runs it, exporting over OTLP/HTTP to a collector stand-in on 127.0.0.1: it exits 0
 * by itself, and what arrives holds the pump's spans, the fetch span tree, and the links from handler spans to the
 * producer spans whose `traceparent` the events carry.
 */
import { spawn } from "node:child_process"
import { createServer, type Server } from "node:http"
import { join, resolve } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"

const root = resolve(import.meta.dirname, "../..")

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly links?: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
}

interface OtlpRequest {
  readonly resourceSpans: ReadonlyArray<{
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

let collector: Server | undefined
afterEach(async () => {
  await new Promise<void>((done) => (collector === undefined ? done() : collector.close(() => done())))
  collector = undefined
})

/** Accepts OTLP/HTTP JSON trace exports and keeps every span. */
const startCollector = () =>
  new Promise<{ readonly url: string; readonly spans: Array<OtlpSpan>; readonly paths: Array<string> }>((ready) => {
    const spans: Array<OtlpSpan> = []
    const paths: Array<string> = []
    collector = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        paths.push(`${req.method} ${req.url} ${req.headers["content-type"]}`)
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpRequest
        for (const resource of body.resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans)
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{}")
      })
    })
    collector.listen(0, "127.0.0.1", () => {
      const address = collector?.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      ready({ url: `http://127.0.0.1:${port}/v1/traces`, spans, paths })
    })
  })

const run = (env: Record<string, string>) =>
  new Promise<{ readonly code: number | null; readonly output: string }>((done, reject) => {
    const child = spawn(join(root, "node_modules/.bin/node"), [join(root, "examples/tracing.ts"), "--duration", "2"], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`examples/tracing.ts did not exit within 30 s:\n${output}`))
    }, 30_000)
    child.on("close", (code) => {
      clearTimeout(timer)
      done({ code, output })
    })
  })

describe("observability: examples/tracing.ts", () => {
  it("exports the pump's span tree and the producer links over OTLP, then exits 0", async () => {
    const otlp = await startCollector()
    const { code, output } = await run({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.url })
    expect(code, output).toBe(0)
    expect(output).toContain(`exporting spans to ${otlp.url}`)
    expect(otlp.paths.length).toBeGreaterThan(0)
    for (const path of otlp.paths) expect(path).toMatch(/^POST \/v1\/traces application\/json/)

    const named = (name: string) => otlp.spans.filter((span) => span.name === name)
    for (const name of [
      "DataPump.fetchPage",
      "FlowcoreHttp.fetchPage",
      "DataPump.handleEvent",
      "DataPump.saveCheckpoint",
      "DataPump.liveWait",
      "WebSocketNotifier.connect",
      "Producer.placeOrder"
    ]) {
      expect(named(name).length, name).toBeGreaterThan(0)
    }
    const fetchSpans = new Set(named("DataPump.fetchPage").map((span) => span.spanId))
    for (const span of named("FlowcoreHttp.fetchPage")) expect(fetchSpans.has(span.parentSpanId ?? "")).toBe(true)

    const producers = new Set(named("Producer.placeOrder").map((span) => `${span.traceId}/${span.spanId}`))
    const linked = named("DataPump.handleEvent").filter((span) =>
      (span.links ?? []).some((link) => producers.has(`${link.traceId}/${link.spanId}`))
    )
    expect(linked.length).toBeGreaterThan(0)
    expect(linked.length).toBeLessThanOrEqual(producers.size)
  })
})
