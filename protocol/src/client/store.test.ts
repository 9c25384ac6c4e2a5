import { describe, expect, it } from 'vitest'
import { MemoryStore, OutboxEntry, Session } from './store.ts'
import { ROOM, aliceSession } from './test-utils.ts'

function entry(txn: string, body = txn): OutboxEntry {
  return { txn_id: txn, room: ROOM, event_type: 'm.message', content: { body }, created_ts: 1 }
}

describe('MemoryStore', () => {
  it('lists the outbox in insertion order; a put with a known txn_id replaces in place', async () => {
    const store = new MemoryStore()
    await store.putOutbox(entry('a'))
    await store.putOutbox(entry('b'))
    await store.putOutbox(entry('c'))
    await store.putOutbox(entry('a', 'edited'))
    await store.removeOutbox('b')
    await store.removeOutbox('unknown')
    expect(await store.listOutbox()).toEqual([entry('a', 'edited'), entry('c')])
  })

  it('returns copies, so callers cannot change what is stored', async () => {
    const store = new MemoryStore()
    const session = aliceSession(0)
    await store.setSession(session)
    session.access_token = 'changed'
    const read = (await store.getSession())!
    expect(read.access_token).toBe('tok1')
    read.refresh_token = 'changed'
    expect((await store.getSession())!.refresh_token).toBe('ref1')

    await store.putOutbox(entry('a'))
    const [listed] = await store.listOutbox()
    listed!.content['body'] = 'changed'
    expect((await store.listOutbox())[0]!.content).toEqual({ body: 'a' })
  })

  it('keeps the cursor and items, and forgets everything on clear()', async () => {
    const store = new MemoryStore()
    expect(await store.getCursor()).toBe(0)
    expect(await store.getSession()).toBeNull()
    await store.setSession(aliceSession(0))
    await store.setCursor(17)
    await store.setItem('draft:room', 'hello')
    await store.putOutbox(entry('a'))
    expect(await store.getItem('draft:room')).toBe('hello')
    await store.removeItem('draft:room')
    expect(await store.getItem('draft:room')).toBeNull()
    await store.setItem('draft:room', 'again')
    await store.clear()
    expect([
      await store.getSession(),
      await store.getCursor(),
      await store.listOutbox(),
      await store.getItem('draft:room'),
    ]).toEqual([null, 0, [], null])
  })

  it('offers schemas to validate records read back from a durable store', () => {
    expect(Session.safeParse(aliceSession(0)).success).toBe(true)
    expect(Session.safeParse({ ...aliceSession(0), user_id: 'alice' }).success).toBe(false)
    expect(OutboxEntry.safeParse(entry('a')).success).toBe(true)
    expect(OutboxEntry.safeParse({ ...entry('a'), txn_id: 'has space' }).success).toBe(false)
  })
})
