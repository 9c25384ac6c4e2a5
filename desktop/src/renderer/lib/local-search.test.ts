import { describe, expect, it } from 'vitest'
import { MemoryStore } from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'
import { LocalSearch, MAX_PER_ROOM } from './local-search.ts'

const ROOM = '!room:acme.example'
const OTHER = '!other:acme.example'
const ALICE = '@alice:acme.example'
const BOB = '@bob:globex.example'
let seq = 0
const ev = (type: string, sender: string, content: Record<string, unknown>, room = ROOM): ClientEvent =>
  ({
    type,
    sender,
    content,
    room,
    seq: ++seq,
    event_id: `$e${seq}`,
    origin_ts: 1_700_000_000_000 + seq,
  }) as unknown as ClientEvent

describe('local search', () => {
  it('finds messages case-insensitively, newest first, with edits applied and deletions gone', async () => {
    const search = new LocalSearch(new MemoryStore(), () => [])
    const first = ev('m.message', ALICE, { body: 'The Launch plan' })
    const second = ev('m.message', BOB, { body: 'launch is friday' })
    const gone = ev('m.message', BOB, { body: 'launch codes (oops)' })
    const file = ev('m.message', ALICE, { body: 'see file', attachment: { name: 'launch-deck.pdf' } }, OTHER)
    await search.add(ROOM, [second, first, gone])
    await search.add(OTHER, [file])
    await search.add(ROOM, [ev('m.redaction', BOB, { target: gone.event_id })])
    // Only the author's edit counts.
    await search.add(ROOM, [ev('m.edit', BOB, { target: first.event_id, body: 'hijacked' })])
    await search.add(ROOM, [ev('m.edit', ALICE, { target: first.event_id, body: 'The LAUNCH plan, v2' })])
    const hits = await search.search('  LAUNCH ')
    expect(hits.map((h) => [h.room, h.text])).toEqual([
      [OTHER, 'see file\nlaunch-deck.pdf'],
      [ROOM, 'launch is friday'],
      [ROOM, 'The LAUNCH plan, v2'],
    ])
    expect(await search.search('hijacked')).toEqual([])
    expect(await search.search('')).toEqual([])
  })

  it('keeps the index in the store (the app seals it) and reads it back in the next run', async () => {
    const store = new MemoryStore()
    const before = new LocalSearch(store, () => [])
    await before.add(ROOM, [ev('m.message', ALICE, { body: 'remember me' })])
    await before.flush()
    const after = new LocalSearch(store, () => [ROOM])
    expect((await after.search('REMEMBER')).map((h) => h.text)).toEqual(['remember me'])
    // A damaged record counts as empty.
    await store.setItem(`search:${ROOM}`, '{not json')
    expect(await new LocalSearch(store, () => [ROOM]).search('remember')).toEqual([])
  })

  it(`keeps the newest ${MAX_PER_ROOM} messages of a room`, async () => {
    const search = new LocalSearch(new MemoryStore(), () => [])
    const events = Array.from({ length: MAX_PER_ROOM + 10 }, (_, i) =>
      ev('m.message', ALICE, { body: `m${i}` }),
    )
    await search.add(ROOM, events)
    expect(await search.search('m0')).toEqual([])
    expect((await search.search(`m${MAX_PER_ROOM + 9}`)).length).toBe(1)
  })

  it('drops what was in flight at sign-out: nothing of the old account is kept or written', async () => {
    const store = new MemoryStore()
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const getItem = store.getItem.bind(store)
    store.getItem = async (key) => {
      await held
      return getItem(key)
    }
    const search = new LocalSearch(store, () => [])
    const adding = search.add(ROOM, [ev('m.message', ALICE, { body: 'old account secret' })])
    search.reset()
    release()
    await adding
    await search.flush()
    expect(await store.getItem(`search:${ROOM}`)).toBeNull()
    expect(await search.search('secret')).toEqual([])
  })
})
