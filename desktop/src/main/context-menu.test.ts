/** The context menu template (context-menu.ts), built from plain stand-ins for Electron's params. */
import { describe, expect, it, vi } from 'vitest'
import { contextMenuTemplate, MAX_SUGGESTIONS, type ContextMenuInput } from './context-menu.ts'

const FLAGS = { canCut: true, canCopy: true, canPaste: true, canSelectAll: true }
const params = (over: Partial<ContextMenuInput>): ContextMenuInput => ({
  isEditable: false,
  selectionText: '',
  linkURL: '',
  misspelledWord: '',
  dictionarySuggestions: [],
  editFlags: FLAGS,
  ...over,
})
const actions = () => ({ replaceMisspelling: vi.fn(), addToDictionary: vi.fn(), copyText: vi.fn() })
const shape = (menu: ReturnType<typeof contextMenuTemplate>) => menu.map((i) => i.label ?? i.role ?? i.type)

describe('context menu', () => {
  it('offers suggestions for a misspelled word that replace it, and adds it to the dictionary', () => {
    const a = actions()
    const menu = contextMenuTemplate(
      params({ isEditable: true, misspelledWord: 'helo', dictionarySuggestions: ['hello', 'help'] }),
      a,
    )
    expect(shape(menu)).toEqual([
      'hello',
      'help',
      'Add to dictionary',
      'separator',
      'cut',
      'copy',
      'paste',
      'selectAll',
    ])
    menu[1]?.click?.()
    expect(a.replaceMisspelling).toHaveBeenCalledWith('help')
    menu[2]?.click?.()
    expect(a.addToDictionary).toHaveBeenCalledWith('helo')
  })

  it(`shows at most ${MAX_SUGGESTIONS} suggestions, or a disabled "No suggestions"`, () => {
    const many = Array.from({ length: 9 }, (_, i) => `word${i}`)
    const menu = contextMenuTemplate(
      params({ isEditable: true, misspelledWord: 'wrod', dictionarySuggestions: many }),
      actions(),
    )
    expect(menu.slice(0, MAX_SUGGESTIONS + 1).map((i) => i.label)).toEqual([
      ...many.slice(0, MAX_SUGGESTIONS),
      'Add to dictionary',
    ])
    expect(contextMenuTemplate(params({ isEditable: true, misspelledWord: 'xqzt' }), actions())[0]).toEqual({
      label: 'No suggestions',
      enabled: false,
    })
    expect(
      contextMenuTemplate(
        params({ isEditable: true, misspelledWord: 'a', dictionarySuggestions: ['b'] }),
        actions(),
        0,
      )[0],
    ).toMatchObject({ label: 'No suggestions' })
  })

  it('gives editable fields cut, copy, paste and select all as roles, enabled per the edit flags', () => {
    const menu = contextMenuTemplate(
      params({ isEditable: true, editFlags: { ...FLAGS, canCut: false, canCopy: false } }),
      actions(),
    )
    expect(menu).toEqual([
      { role: 'cut', enabled: false },
      { role: 'copy', enabled: false },
      { role: 'paste', enabled: true },
      { role: 'selectAll', enabled: true },
    ])
  })

  it('gives a selection of read-only text copy only, and whitespace or nothing no menu', () => {
    expect(contextMenuTemplate(params({ selectionText: 'some text' }), actions())).toEqual([
      { role: 'copy', enabled: true },
    ])
    expect(contextMenuTemplate(params({ selectionText: '  \n' }), actions())).toEqual([])
    expect(contextMenuTemplate(params({}), actions())).toEqual([])
  })

  it('ignores a misspelling outside an editable field', () => {
    expect(
      contextMenuTemplate(params({ misspelledWord: 'helo', dictionarySuggestions: ['hello'] }), actions()),
    ).toEqual([])
  })

  it('offers "Copy link" for web links, never an item that opens one', () => {
    const a = actions()
    const menu = contextMenuTemplate(params({ linkURL: 'https://example.com/a', selectionText: 'a' }), a)
    expect(shape(menu)).toEqual(['copy', 'separator', 'Copy link'])
    menu[2]?.click?.()
    expect(a.copyText).toHaveBeenCalledWith('https://example.com/a')
    expect(shape(contextMenuTemplate(params({ linkURL: 'mailto:bob@example.com' }), actions()))).toEqual([
      'Copy link',
    ])
    for (const linkURL of [
      'javascript:alert(1)',
      'file:///etc/passwd',
      'parley://room/x',
      'https://user:pw@example.com/',
      'not a url',
    ])
      expect(contextMenuTemplate(params({ linkURL }), actions()), linkURL).toEqual([])
  })

  it('never contains leading, trailing or doubled separators', () => {
    const menu = contextMenuTemplate(
      params({
        isEditable: true,
        misspelledWord: 'helo',
        dictionarySuggestions: ['hello'],
        linkURL: 'https://example.com/',
      }),
      actions(),
    )
    expect(menu[0]?.type).toBeUndefined()
    expect(menu.at(-1)?.type).toBeUndefined()
    menu.forEach((item, i) => {
      if (item.type === 'separator') expect(menu[i + 1]?.type, `at ${i}`).toBeUndefined()
    })
    expect(shape(menu)).toEqual([
      'hello',
      'Add to dictionary',
      'separator',
      'cut',
      'copy',
      'paste',
      'selectAll',
      'separator',
      'Copy link',
    ])
  })
})
