/** Display names and the user directory. */
import { ParleyError } from '@parley/protocol'
import type { Repos } from '../db/repos/index.ts'

export class ProfilesService {
  constructor(private readonly repos: Repos) {}

  get(userId: string) {
    const user = this.repos.users.get(userId)
    if (!user) throw new ParleyError('P_NOT_FOUND', 'no such user')
    return { user_id: user.user_id, display_name: user.display_name }
  }

  setDisplayName(userId: string, name: string): void {
    this.repos.users.setDisplayName(userId, name.trim())
  }

  /** Active local users whose name starts with `q` (prefix of the user name or of a word of the display name). */
  search(q: string, limit: number) {
    const query = q.trim().replace(/^@/, '').split(':')[0]!
    return this.repos.users.search(query, limit)
  }
}
