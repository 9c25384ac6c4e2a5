/**
 * The app's store when IndexedDB cannot be opened (a private window that refuses it, a broken
 * profile): nothing survives a reload, but the app works. The user is told by the sign-in screen
 * staying the only way in after a restart, which is the honest outcome of "nothing stored".
 */
import { MemoryStore } from '@parley/protocol/client'
import type { ClientEvent } from '@parley/protocol/schema'
import type { AppStore } from '../chat.svelte.ts'
import type { ListedRoom } from '../preview.ts'

export class MemoryAppStore extends MemoryStore implements AppStore {
  #rooms: ListedRoom[] | null = null
  readonly #timelines = new Map<string, ClientEvent[]>()

  async getRooms() {
    return this.#rooms === null ? null : structuredClone(this.#rooms)
  }
  async putRooms(rooms: readonly ListedRoom[]) {
    this.#rooms = structuredClone([...rooms])
  }
  async getTimeline(room: string) {
    const events = this.#timelines.get(room)
    return events ? structuredClone(events) : null
  }
  async putTimeline(room: string, events: readonly ClientEvent[]) {
    this.#timelines.set(room, structuredClone([...events]))
  }
  override async clear() {
    await super.clear()
    this.#rooms = null
    this.#timelines.clear()
  }
}
