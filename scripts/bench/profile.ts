/** Reads a V8 CPU profile (`.cpuprofile`): where the server spent its own (self) time. */

export interface HotFunction {
  readonly name: string
  /** `path:line` relative to the repository, or the node module. */
  readonly where: string
  readonly selfMs: number
  /** Share of the busy (non-idle) time. */
  readonly pct: number
}

export interface ProfileSummary {
  readonly sampledMs: number
  readonly idlePct: number
  readonly top: readonly HotFunction[]
}

interface Node {
  readonly id: number
  readonly name: string
  readonly where: string
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

const numbers = (v: unknown): number[] =>
  Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : []

function nodeOf(v: unknown, root: string): Node | null {
  if (!isRecord(v) || typeof v.id !== 'number' || !isRecord(v.callFrame)) return null
  const f = v.callFrame
  const name = typeof f.functionName === 'string' && f.functionName ? f.functionName : '(anonymous)'
  let url = typeof f.url === 'string' ? f.url.replace(/^file:\/\//, '') : ''
  if (url.startsWith(root)) url = url.slice(root.length)
  url = url.replace(/^.*node_modules\//, '')
  const line = typeof f.lineNumber === 'number' && f.lineNumber >= 0 ? `:${f.lineNumber + 1}` : ''
  return { id: v.id, name, where: url ? url + line : name.startsWith('(') ? '' : '(native)' }
}

/** Top `n` functions by self time, aggregated by function and location. */
export function topSelfTime(profile: unknown, root: string, n = 5): ProfileSummary {
  if (!isRecord(profile) || !Array.isArray(profile.nodes)) throw new Error('not a CPU profile')
  const nodes = new Map<number, Node>()
  for (const raw of profile.nodes) {
    const node = nodeOf(raw, root)
    if (node) nodes.set(node.id, node)
  }
  const samples = numbers(profile.samples)
  const deltas = numbers(profile.timeDeltas)
  const self = new Map<string, { name: string; where: string; us: number }>()
  let total = 0
  let idle = 0
  for (let i = 0; i < samples.length; i++) {
    // A sample stands for the time until the next one.
    const us = deltas[i + 1] ?? deltas[i] ?? 0
    const node = nodes.get(samples[i]!)
    if (!node) continue
    total += us
    if (node.name === '(idle)') {
      idle += us
      continue
    }
    const key = node.name + '\0' + node.where
    const entry = self.get(key) ?? { name: node.name, where: node.where, us: 0 }
    entry.us += us
    self.set(key, entry)
  }
  const busy = total - idle
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({
      name: e.name,
      where: e.where,
      selfMs: Math.round(e.us / 100) / 10,
      pct: busy > 0 ? Math.round((e.us * 1000) / busy) / 10 : 0,
    }))
  return {
    sampledMs: Math.round(total / 1000),
    idlePct: total > 0 ? Math.round((idle * 1000) / total) / 10 : 0,
    top,
  }
}
