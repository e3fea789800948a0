/**
 * Splitting an EventList body into parts without decoding it whole. A buffer smaller than a server page would
 * otherwise force pages of its own size, and with them one round trip per `bufferSize` events: the page's events are
 * found in the raw text instead (where each one starts and ends), and each part is parsed only when the buffer has
 * room for it. Until then the page is held as text, not as events (guarantee 3).
 */

const QUOTE = 34
const BACKSLASH = 92
const COMMA = 44
const COLON = 58
const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93

const isSpace = (code: number) => code === 32 || code === 10 || code === 13 || code === 9

const skipSpace = (text: string, at: number): number => {
  let i = at
  while (i < text.length && isSpace(text.charCodeAt(i))) i++
  return i
}

/** From the opening quote at `at` to just after its closing quote; -1 if the string never ends. */
const skipString = (text: string, at: number): number => {
  let from = at + 1
  for (;;) {
    const quote = text.indexOf('"', from)
    if (quote < 0) return -1
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++
    if (backslashes % 2 === 0) return quote + 1
    from = quote + 1
  }
}

/**
 * From the first character of a value at `at` to just after it; -1 if it does not end. Brackets are only counted,
 * not matched: a part that is not valid JSON is still rejected when it is parsed.
 */
const skipValue = (text: string, at: number): number => {
  const first = text.charCodeAt(at)
  if (first === QUOTE) return skipString(text, at)
  if (first === OPEN_BRACE || first === OPEN_BRACKET) {
    let depth = 0
    let i = at
    while (i < text.length) {
      const code = text.charCodeAt(i)
      if (code === QUOTE) {
        i = skipString(text, i)
        if (i < 0) return -1
        continue
      }
      if (code === OPEN_BRACE || code === OPEN_BRACKET) depth++
      else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return -1
  }
  // A number, true, false or null: up to the next delimiter.
  let i = at
  while (i < text.length) {
    const code = text.charCodeAt(i)
    if (code === COMMA || code === CLOSE_BRACE || code === CLOSE_BRACKET || isSpace(code)) break
    i++
  }
  return i > at ? i : -1
}

/** How Flowcore (and the emulator) write an event: `eventId` first, no spaces. Only ever a guess, see `splitPage`. */
const EVENT_START = '{"eventId":'
const NEXT_EVENT = ',{"eventId":'

/**
 * Finds the elements of an array from `at` (just inside its `[`) and returns the index after its `]`, or -1. With
 * `guess`, an element written like an event is taken to end where the next such element starts, which saves scanning
 * it; a guess can be wrong only when an event holds something written the same way (an event in its payload), and
 * then a part that does not parse, or parses into fewer events, shows it (`take`).
 */
const scanElements = (text: string, at: number, starts: Array<number>, ends: Array<number>, guess: boolean): number => {
  let i = skipSpace(text, at)
  while (text.charCodeAt(i) !== CLOSE_BRACKET) {
    let end = -1
    if (guess && text.startsWith(EVENT_START, i)) end = text.indexOf(NEXT_EVENT, i + 1)
    if (end < 0) end = skipValue(text, i)
    if (end < 0) return -1
    starts.push(i)
    ends.push(end)
    i = skipSpace(text, end)
    if (text.charCodeAt(i) === COMMA) i = skipSpace(text, i + 1)
    else if (text.charCodeAt(i) !== CLOSE_BRACKET) return -1
  }
  return i + 1
}

interface Layout {
  readonly starts: Array<number>
  readonly ends: Array<number>
  readonly arrayEnd: number
  readonly rest: unknown
}

/** The top level of `{..., "events": [...], ...}`: where its events are, and the rest of it parsed. */
const layoutOf = (text: string, guess: boolean): Layout | undefined => {
  let i = skipSpace(text, 0)
  if (text.charCodeAt(i) !== OPEN_BRACE) return undefined
  i = skipSpace(text, i + 1)
  const starts: Array<number> = []
  const ends: Array<number> = []
  let arrayStart = -1
  let arrayEnd = -1
  while (text.charCodeAt(i) !== CLOSE_BRACE) {
    if (text.charCodeAt(i) !== QUOTE) return undefined
    const keyEnd = skipString(text, i)
    if (keyEnd < 0) return undefined
    const isEvents = keyEnd - i === 8 && text.startsWith('"events"', i)
    i = skipSpace(text, keyEnd)
    if (text.charCodeAt(i) !== COLON) return undefined
    i = skipSpace(text, i + 1)
    if (isEvents && text.charCodeAt(i) === OPEN_BRACKET) {
      if (arrayStart >= 0) return undefined
      arrayStart = i
      i = scanElements(text, i + 1, starts, ends, guess)
      arrayEnd = i
    } else {
      i = skipValue(text, i)
    }
    if (i < 0) return undefined
    i = skipSpace(text, i)
    if (text.charCodeAt(i) === COMMA) i = skipSpace(text, i + 1)
    else if (text.charCodeAt(i) !== CLOSE_BRACE) return undefined
  }
  if (arrayStart < 0 || skipSpace(text, i + 1) !== text.length) return undefined
  try {
    return { starts, ends, arrayEnd, rest: JSON.parse(`${text.slice(0, arrayStart)}[]${text.slice(arrayEnd)}`) }
  } catch {
    return undefined
  }
}

/** A page whose events are parsed a part at a time. */
export interface SplitPage {
  /**
   * The body without its events (`"events": []`), parsed: the rest of the page (its `nextCursor`). Final once every
   * part has been taken; before that it rests on the guessed layout, which a part that does not parse can correct.
   */
  readonly rest: () => unknown
  /** How many events the page holds from `from` on (exact once every part has been taken). */
  readonly remaining: (from: number) => number
  /**
   * At most `max` events from `from` on, parsed, with the index after them and the length of their text (UTF-16
   * code units). Throws a SyntaxError if that part of the body is not valid JSON.
   */
  readonly take: (
    from: number,
    max: number
  ) => { readonly events: Array<unknown>; readonly next: number; readonly length: number }
}

/** The same, for a page that had to be decoded whole (a body `splitPage` could not split but JSON.parse could). */
export const decodedPage = (rest: unknown, events: ReadonlyArray<unknown>): SplitPage => ({
  rest: () => rest,
  remaining: (from) => Math.max(0, events.length - from),
  take: (from, max) => {
    const part = events.slice(from, from + max)
    return { events: part, next: from + part.length, length: 0 }
  }
})

/**
 * Finds the events of a body shaped `{..., "events": [...], ...}`; undefined if it is not (a body that is not JSON,
 * or has no events array): the caller then decodes it whole, which names what is wrong.
 */
export const splitPage = (text: string): SplitPage | undefined => {
  const found = layoutOf(text, true) ?? layoutOf(text, false)
  if (found === undefined) return undefined
  let layout: Layout = found
  const { starts, ends } = layout
  let exact = false
  /**
   * Replaces the (guessed) element bounds from `from` on with scanned ones. Where a guess ran past the end of the
   * events array (into a later member written like events), the array ends elsewhere than guessed: the whole layout,
   * and with it the rest of the page, is then scanned again.
   */
  const rescan = (from: number) => {
    const start = starts[from] as number
    starts.length = from
    ends.length = from
    exact = true
    if (scanElements(text, start, starts, ends, false) === layout.arrayEnd) return
    const scanned = layoutOf(text, false)
    if (scanned === undefined) throw new SyntaxError("the events array of the page is not valid JSON")
    layout = scanned
    starts.length = 0
    ends.length = 0
    starts.push(...scanned.starts)
    ends.push(...scanned.ends)
  }
  const take = (from: number, max: number): ReturnType<SplitPage["take"]> => {
    const to = Math.min(starts.length, from + max)
    if (to <= from) return { events: [], next: from, length: 0 }
    const start = starts[from] as number
    const end = ends[to - 1] as number
    let events: Array<unknown>
    try {
      events = JSON.parse(`[${text.slice(start, end)}]`) as Array<unknown>
    } catch (error) {
      if (exact) throw error
      rescan(from)
      return take(from, max)
    }
    // Fewer events than bounds: a guessed bound inside an event. The part itself is right (it parsed between two
    // true bounds), the bounds after it are not.
    if (events.length !== to - from) rescan(from)
    return { events, next: from + events.length, length: end - start }
  }
  return { rest: () => layout.rest, remaining: (from) => Math.max(0, starts.length - from), take }
}
