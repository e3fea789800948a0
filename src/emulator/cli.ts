#!/usr/bin/env node
/**
 * `flowcore-emulator`: runs the local Flowcore emulator until SIGINT/SIGTERM.
 *
 *   flowcore-emulator --port 8080 --config ./emulator.json [--host 127.0.0.1] [--open] [--persist ./events.ndjson]
 *     [--nats nats://127.0.0.1:4222] [--error-rate 0.2] [--latency-ms 200] [--no-auto-create]
 */
// The two modules, not the package root: the root loads every Node service (~0.3 s more start-up).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Exit, Option, Runtime } from "effect"
import { Command, Flag } from "effect/cli"
import { DEFAULT_API_KEY, type EmulatorConfig, type EmulatorFaults, loadConfigFile } from "./config.ts"
import { type EmulatorOptions, make } from "./emulator.ts"

const emulator = Command.make(
  "flowcore-emulator",
  {
    port: Flag.Int("port").pipe(Flag.withDefault(8080), Flag.withDescription("Port to listen on (0 = any free port)")),
    host: Flag.String("host").pipe(Flag.withDefault("127.0.0.1"), Flag.withDescription("Interface to bind")),
    config: Flag.String("config").pipe(
      Flag.optional,
      Flag.withDescription("JSON file with tenants, data cores, flow types, event types, apiKeys, bearerTokens")
    ),
    open: Flag.Boolean("open").pipe(Flag.withDefault(false), Flag.withDescription("Accept every request, no auth")),
    noAutoCreate: Flag.Boolean("no-auto-create").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Reject ingestion into data cores / flow types / event types that are not configured")
    ),
    persist: Flag.String("persist").pipe(
      Flag.optional,
      Flag.withDescription("Append-only NDJSON file; events and resources survive a restart")
    ),
    nats: Flag.String("nats").pipe(
      Flag.optional,
      Flag.withDescription("NATS server(s), comma-separated, to publish notifications on")
    ),
    errorRate: Flag.Finite("error-rate").pipe(
      Flag.optional,
      Flag.withDescription("Share (0..1) of data-API requests answered with HTTP 500")
    ),
    latencyMs: Flag.Int("latency-ms").pipe(
      Flag.optional,
      Flag.withDescription("Milliseconds added to every data-API response")
    )
  },
  Effect.fn("flowcore-emulator")(function* (flags) {
    const config: EmulatorConfig = Option.isSome(flags.config) ? yield* loadConfigFile(flags.config.value) : {}
    const faults: Partial<EmulatorFaults> = {
      ...(Option.isSome(flags.errorRate) ? { errorRate: flags.errorRate.value } : {}),
      ...(Option.isSome(flags.latencyMs) ? { latencyMs: flags.latencyMs.value } : {})
    }
    const options: EmulatorOptions = {
      port: flags.port,
      host: flags.host,
      config,
      open: flags.open,
      autoCreate: !flags.noAutoCreate,
      faults,
      ...(Option.isSome(flags.persist) ? { persistPath: flags.persist.value } : {}),
      ...(Option.isSome(flags.nats)
        ? {
            nats: {
              servers: flags.nats.value
                .split(",")
                .map((s) => s.trim())
                .filter((s) => s !== "")
            }
          }
        : {})
    }
    yield* Effect.scoped(
      Effect.gen(function* () {
        const running = yield* make(options)
        const apiKey = config.apiKeys?.[0] ?? DEFAULT_API_KEY
        yield* Console.log(`Flowcore emulator listening on ${running.url}`)
        if (flags.open) {
          yield* Console.log("Auth: open (no credentials needed)")
        } else {
          yield* Console.log(`API key: ${apiKey}`)
          yield* Console.log(
            `  data API header: Authorization: ApiKey ${apiKey.split("_")[1]}:${apiKey}; ingestion header: Authorization: ${apiKey}`
          )
        }
        yield* Console.log(`Point the pump or the SDK at it with baseUrlOverride / setBaseUrl("${running.url}")`)
        return yield* Effect.never
      })
    )
  })
)

// SIGINT/SIGTERM interrupt the program; that is the normal way to stop a server, so it exits 0.
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

NodeRuntime.runMain(emulator.pipe(Command.run({ version: "1.0.0" }), Effect.provide(NodeServices.layer)), { teardown })
