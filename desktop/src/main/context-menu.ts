/**
 * Main process. The window's context menu, built from the `context-menu` event's parameters: spelling
 * suggestions and "Add to dictionary" for a misspelled word, cut/copy/paste/select all in editable
 * fields, copy for a selection, and "Copy link" for a link. Links are never opened from here: the only
 * way out of the app is a click in the page, through the window-open handler and `externalUrl`.
 */
import type { MenuItemSpec } from './menu-item.ts'
import { joinSections } from './menu-item.ts'
import { externalUrl } from './navigation.ts'

/** What the builder reads of Electron's ContextMenuParams (which is assignable to it). */
export interface ContextMenuInput {
  readonly isEditable: boolean
  readonly selectionText: string
  readonly linkURL: string
  readonly misspelledWord: string
  readonly dictionarySuggestions: readonly string[]
  readonly editFlags: {
    readonly canCut: boolean
    readonly canCopy: boolean
    readonly canPaste: boolean
    readonly canSelectAll: boolean
  }
}

export interface ContextMenuActions {
  /** `webContents.replaceMisspelling` */
  replaceMisspelling(word: string): void
  /** `session.addWordToSpellCheckerDictionary` */
  addToDictionary(word: string): void
  /** `clipboard.writeText` */
  copyText(text: string): void
}

export const MAX_SUGGESTIONS = 5

export function contextMenuTemplate(
  params: ContextMenuInput,
  actions: ContextMenuActions,
  maxSuggestions = MAX_SUGGESTIONS,
): MenuItemSpec[] {
  const spelling: MenuItemSpec[] = []
  const word = params.misspelledWord
  if (params.isEditable && word !== '') {
    const suggestions = params.dictionarySuggestions.slice(0, maxSuggestions)
    for (const suggestion of suggestions)
      spelling.push({ label: suggestion, click: () => actions.replaceMisspelling(suggestion) })
    if (suggestions.length === 0) spelling.push({ label: 'No suggestions', enabled: false })
    spelling.push({ label: 'Add to dictionary', click: () => actions.addToDictionary(word) })
  }

  const flags = params.editFlags
  const edit: MenuItemSpec[] = params.isEditable
    ? [
        { role: 'cut', enabled: flags.canCut },
        { role: 'copy', enabled: flags.canCopy },
        { role: 'paste', enabled: flags.canPaste },
        { role: 'selectAll', enabled: flags.canSelectAll },
      ]
    : params.selectionText.trim() !== ''
      ? [{ role: 'copy', enabled: flags.canCopy }]
      : []

  // Only links the app would open outside anyway (http, https, mailto, no credentials) are offered.
  const link = params.linkURL === '' ? null : externalUrl(params.linkURL)
  const links: MenuItemSpec[] = link ? [{ label: 'Copy link', click: () => actions.copyText(link) }] : []

  return joinSections([spelling, edit, links])
}
