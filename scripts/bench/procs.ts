/**
 * Child processes of the bench (pinning, fd limit, cleanup on any exit) and what /proc says about
 * them: CPU time, RSS, per-core load. Linux only, like the box the numbers are for.
 */
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, rmSync } from 'node:fs'

let tasksetPresent: boolean | null = null

export function hasTaskset(): boolean {
  tasksetPresent ??= spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0
  return tasksetPresent
}

/** `cmd` prefixed with `taskset -c <core>` when taskset exists and a core is given. */
export function pinned(core: number | null, cmd: readonly string[]): string[] {
  return core !== null && hasTaskset() ? ['taskset', '-c', String(core), ...cmd] : [...cmd]
}

/** Arguments for `sh` that raise the soft fd limit to the hard one, then exec `cmd` (same pid). */
export function raiseFdLimit(cmd: readonly string[]): string[] {
  return ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...cmd]
}

/** Pins this process (all threads) to `core`. */
export function pinSelf(core: number): boolean {
  if (!hasTaskset()) return false
  return (
    spawnSync('taskset', ['-a', '-cp', String(core), String(process.pid)], { stdio: 'ignore' }).status === 0
  )
}

const children = new Set<ChildProcess>()
const dirs = new Set<string>()

/** Kills `child` if it is still running when the bench exits, whatever the reason. */
export function track(child: ChildProcess): void {
  children.add(child)
  child.once('exit', () => children.delete(child))
}

/** Removes `dir` if it still exists when the bench exits. */
export function trackDir(dir: string): void {
  dirs.add(dir)
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

/** Synchronous last-resort cleanup, safe in an `exit` handler. */
export function cleanupNow(): void {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs.clear()
}

// ---- /proc ----

let ticksPerSecond: number | null = null

function clockTicks(): number {
  if (ticksPerSecond === null) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** User and system CPU time of a process, in ms (10 ms resolution on most kernels). */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which may contain spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ms = (ticks: string | undefined) => (Number(ticks) * 1000) / clockTicks()
  return { user: ms(fields[11]), system: ms(fields[12]) }
}

/** User + system CPU time of a process, in ms. */
export function cpuMs(pid: number): number {
  const t = cpuTimes(pid)
  return t.user + t.system
}

/** A `kB` line of /proc/<pid>/status (VmRSS, VmHWM, ...), in KiB. */
export function statusKiB(pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no ${key} in /proc/${pid}/status`)
  return Number(m[1])
}

/** The soft "Max open files" of a process. */
export function fdLimit(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1])
}

/** Busy and total jiffies of each core. */
export type CoreTimes = Array<{ busy: number; total: number }>

export function coreTimes(): CoreTimes {
  const out: CoreTimes = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    if (!/^cpu\d+ /.test(line)) continue
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    const idle = (v[3] ?? 0) + (v[4] ?? 0) // idle + iowait
    out.push({ busy: total - idle, total })
  }
  return out
}

/** Busy percentage of each core between two samples. */
export function coreBusyPct(before: CoreTimes, after: CoreTimes): number[] {
  return after.map((a, i) => {
    const b = before[i] ?? { busy: 0, total: 0 }
    const total = a.total - b.total
    return total > 0 ? Math.round(((a.busy - b.busy) * 1000) / total) / 10 : 0
  })
}

/** Every live descendant of `pid` with its command name (`/proc/<pid>/comm`). */
export function descendants(pid: number): Array<{ pid: number; comm: string }> {
  const children = new Map<number, number[]>()
  const comms = new Map<number, string>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited meanwhile
    }
    // "pid (comm) state ppid ...": the command name may contain spaces and parentheses.
    const open = stat.indexOf('(')
    const close = stat.lastIndexOf(')')
    const ppid = Number(stat.slice(close + 2).split(' ')[1])
    const self = Number(entry)
    comms.set(self, stat.slice(open + 1, close))
    const siblings = children.get(ppid)
    if (siblings) siblings.push(self)
    else children.set(ppid, [self])
  }
  const out: Array<{ pid: number; comm: string }> = []
  const stack = [...(children.get(pid) ?? [])]
  while (stack.length > 0) {
    const p = stack.pop()!
    out.push({ pid: p, comm: comms.get(p) ?? '' })
    stack.push(...(children.get(p) ?? []))
  }
  return out
}

/** User + system CPU time of several processes, in ms; processes that exited meanwhile count 0. */
export function totalCpuMs(pids: readonly number[]): number {
  let sum = 0
  for (const pid of pids) {
    try {
      sum += cpuMs(pid)
    } catch {
      // exited
    }
  }
  return sum
}
