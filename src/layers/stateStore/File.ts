/**
 * The checkpoint in a JSON file, `{"version":1,"timeBucket":"…","eventId":"…"}`, for single-instance deployments.
 *
 * A save never leaves a torn file behind, even on SIGKILL or power loss: it writes `<path>.<pid>.<random>.tmp`,
 * fsyncs it, renames it over `<path>` (atomic on POSIX file systems) and fsyncs the directory so the rename itself is
 * durable. Readers therefore see the old checkpoint or the new one, never a mix. Saves run one at a time in call
 * order, so a slow earlier save can never overwrite a later one.
 *
 * Uses `node:fs/promises` directly: the store needs `fsync` on a file handle and on a directory, which is exactly what
 * that API offers.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as NodePath from "node:path"
import { Effect, Layer, Option, Semaphore } from "effect"
import { CorruptState, InvalidOptions, StateStoreError } from "../../domain/errors.ts"
import type { PumpState } from "../../domain/PumpState.ts"
import { StateStore } from "../../services/StateStore.ts"
import { decodeCheckpoint } from "./CheckpointDecoder.ts"

export interface FileStateStoreOptions {
  /** The checkpoint file. Its directory must exist; the file is created by the first save. */
  readonly path: string
}

const FILE_FORMAT_VERSION = 1

const errnoOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const isProcessAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return errnoOf(cause) !== "ESRCH"
  }
}

/**
 * A process killed between creating its temp file and renaming it leaves the temp file behind. Only files of
 * processes that no longer exist are removed, so a concurrent writer's in-flight file is never pulled away.
 */
const removeStaleTempFiles = async (path: string): Promise<void> => {
  const directory = NodePath.dirname(path)
  const pattern = new RegExp(`^${escapeRegExp(NodePath.basename(path))}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`)
  const entries = await fs.readdir(directory)
  for (const entry of entries) {
    const match = pattern.exec(entry)
    if (match === null) continue
    const pid = Number(match[1])
    if (pid === process.pid || isProcessAlive(pid)) continue
    await fs.rm(NodePath.join(directory, entry), { force: true })
  }
}

const writeAtomically = async (path: string, contents: string): Promise<void> => {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`
  try {
    const handle = await fs.open(temp, "wx")
    try {
      await handle.writeFile(contents, "utf8")
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.rename(temp, path)
  } catch (cause) {
    await fs.rm(temp, { force: true }).catch(() => undefined)
    throw cause
  }
  const directory = await fs.open(NodePath.dirname(path), "r")
  try {
    await directory.sync()
  } finally {
    await directory.close()
  }
}

const encode = (state: PumpState): string =>
  `${JSON.stringify({ version: FILE_FORMAT_VERSION, timeBucket: state.timeBucket, eventId: state.eventId })}\n`

export const FileStateStore = {
  layer(options: FileStateStoreOptions): Layer.Layer<StateStore, InvalidOptions> {
    return Layer.effect(
      StateStore,
      Effect.gen(function* () {
        if (typeof options.path !== "string" || options.path.trim() === "") {
          return yield* InvalidOptions.of("stateStore.path", options.path, "a non-empty file path")
        }
        const path = NodePath.resolve(options.path)
        const writeLock = yield* Semaphore.make(1)

        // Housekeeping only: a directory that cannot be listed will fail the first save with a precise message.
        yield* Effect.promise(() => removeStaleTempFiles(path).catch(() => undefined))

        const corrupt = (detail: string) =>
          new CorruptState({
            location: path,
            detail,
            message: `Checkpoint file ${path} is corrupt: ${detail}. Delete ${path} to start from the live edge, or fix it (expected {"version":1,"timeBucket":"yyyyMMddHH0000","eventId":"<version-1 uuid>"}, eventId optional).`
          })

        const load = Effect.gen(function* () {
          const text = yield* Effect.tryPromise({
            try: () =>
              fs.readFile(path, "utf8").catch((cause: unknown) => {
                if (errnoOf(cause) === "ENOENT") return undefined
                throw cause
              }),
            catch: (cause) =>
              new StateStoreError({
                store: "file",
                operation: "load",
                message: `File state store: could not read checkpoint file ${path}: ${reasonOf(cause)}`,
                cause
              })
          })
          if (text === undefined) return Option.none<PumpState>()
          let parsed: unknown
          try {
            parsed = JSON.parse(text)
          } catch (cause) {
            return yield* corrupt(`it is not valid JSON (${reasonOf(cause)})`)
          }
          if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
            return yield* corrupt(`expected a JSON object, found ${JSON.stringify(parsed)}`)
          }
          const { version, ...checkpoint } = parsed as Record<string, unknown>
          if (version !== undefined && version !== FILE_FORMAT_VERSION) {
            return yield* corrupt(
              `"version" is ${JSON.stringify(version)}; this release reads version ${FILE_FORMAT_VERSION}`
            )
          }
          const state = yield* decodeCheckpoint(checkpoint, { strict: true }).pipe(Effect.mapError(corrupt))
          return Option.some(state)
        }).pipe(Effect.withSpan("FileStateStore.load", { attributes: { "state.path": path } }))

        const save = (state: PumpState) =>
          Effect.tryPromise({
            try: () => writeAtomically(path, encode(state)),
            catch: (cause) =>
              new StateStoreError({
                store: "file",
                operation: "save",
                message: `File state store: could not save checkpoint ${state.timeBucket}/${state.eventId ?? "(whole bucket)"} to ${path}: ${reasonOf(cause)}`,
                cause
              })
          }).pipe(
            // An interrupted save would release the lock while its rename is still in flight and could then land
            // after a later save; letting the write finish keeps saves strictly ordered.
            Effect.uninterruptible,
            writeLock.withPermit,
            Effect.withSpan("FileStateStore.save", { attributes: { "state.path": path } })
          )

        return StateStore.of({ name: "file", load, save })
      })
    )
  }
}
