import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { ChurnMap } from "../../src/domain/ChurnMap.ts"

type Op =
  | { readonly op: "set"; readonly key: number; readonly value: number }
  | { readonly op: "delete"; readonly key: number }
  | { readonly op: "clear" }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 100, arbitrary: fc.record({ op: fc.constant("set" as const), key: fc.nat(40), value: fc.integer() }) },
  { weight: 80, arbitrary: fc.record({ op: fc.constant("delete" as const), key: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) }
)

/** Everything a map answers, as one value to compare after each operation. */
const answers = (map: {
  readonly size: number
  has(key: number): boolean
  get(key: number): number | undefined
  values(): IterableIterator<number>
}) => {
  const byKey: Array<string> = []
  for (let key = 0; key <= 40; key++) byKey.push(map.has(key) ? `${key}=${map.get(key)}` : "")
  return `${map.size} [${[...map.values()].join(",")}] ${byKey.join(" ")}`
}
const expectSame = (churn: ChurnMap<number, number>, reference: Map<number, number>) => {
  const got = answers(churn)
  if (got !== answers(reference)) expect(got).toBe(answers(reference))
  if (churn.oldestKey() !== reference.keys().next().value) expect(churn.oldestKey()).toBe(reference.keys().next().value)
}

describe("ChurnMap", () => {
  it("answers like a Map through any mix of insertions, deletions and clears (across its renewals)", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 300, maxLength: 800 }), (ops) => {
        const churn = new ChurnMap<number, number>()
        const reference = new Map<number, number>()
        for (const step of ops) {
          if (step.op === "set") {
            churn.set(step.key, step.value)
            reference.set(step.key, step.value)
          } else if (step.op === "delete") {
            expect(churn.delete(step.key)).toBe(reference.delete(step.key))
          } else {
            churn.clear()
            reference.clear()
          }
          expectSame(churn, reference)
        }
      }),
      { numRuns: 40 }
    )
  })

  it("keeps what is held, in insertion order, while entries come and go first in, first out", () => {
    const churn = new ChurnMap<string, number>()
    const held: Array<string> = []
    for (let i = 0; i < 5_000; i++) {
      const id = `event-${i}`
      churn.set(id, i)
      held.push(id)
      if (held.length > 100) expect(churn.delete(held.shift() as string)).toBe(true)
      expect(churn.size).toBe(held.length)
      expect(churn.oldestKey()).toBe(held[0])
    }
    expect([...churn.values()]).toEqual(held.map((id) => Number(id.slice(6))))
    for (const id of held) expect(churn.get(id)).toBe(Number(id.slice(6)))
    expect(churn.has("event-0")).toBe(false)
  })
})
