/**
 * Main process. The subset of Electron's MenuItemConstructorOptions our menus use, so the menu
 * templates can be built (and tested) without Electron; `Menu.buildFromTemplate` accepts them as is.
 */
export interface MenuItemSpec {
  readonly label?: string
  readonly type?: 'separator'
  readonly role?: 'cut' | 'copy' | 'paste' | 'selectAll'
  readonly enabled?: boolean
  readonly click?: () => void
}

export const SEPARATOR: MenuItemSpec = { type: 'separator' }

/** The non-empty sections, with one separator between neighbours (none leading, trailing or doubled). */
export function joinSections(sections: readonly (readonly MenuItemSpec[])[]): MenuItemSpec[] {
  const out: MenuItemSpec[] = []
  for (const section of sections) {
    if (section.length === 0) continue
    if (out.length > 0) out.push(SEPARATOR)
    out.push(...section)
  }
  return out
}
