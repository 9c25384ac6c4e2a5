/** Minimise-to-tray decisions (tray-policy.ts), without Electron. */
import { describe, expect, it, vi } from 'vitest'
import { closeAction, trayIconFile, trayMenuTemplate, trayTooltip } from './tray-policy.ts'

describe('closing the window', () => {
  it('hides it to the tray while the app is not quitting', () => {
    for (const platform of ['win32', 'linux', 'darwin'] as const)
      expect(closeAction({ quitting: false, hasTray: true, platform }), platform).toBe('hide')
  })

  it('lets it close once the app quits (tray Quit, Cmd+Q, OS shutdown)', () => {
    for (const platform of ['win32', 'linux', 'darwin'] as const)
      for (const hasTray of [true, false])
        expect(closeAction({ quitting: true, hasTray, platform }), platform).toBe('close')
  })

  it('closes without a tray on Windows and Linux, but keeps the macOS dock convention', () => {
    expect(closeAction({ quitting: false, hasTray: false, platform: 'win32' })).toBe('close')
    expect(closeAction({ quitting: false, hasTray: false, platform: 'linux' })).toBe('close')
    expect(closeAction({ quitting: false, hasTray: false, platform: 'darwin' })).toBe('hide')
  })
})

describe('tray', () => {
  it('has a menu of Show Parley and Quit Parley that call their actions', () => {
    const actions = { show: vi.fn(), quit: vi.fn() }
    const menu = trayMenuTemplate(actions)
    expect(menu.map((item) => item.label ?? item.type)).toEqual(['Show Parley', 'separator', 'Quit Parley'])
    menu[0]?.click?.()
    expect(actions.show).toHaveBeenCalledOnce()
    expect(actions.quit).not.toHaveBeenCalled()
    menu[2]?.click?.()
    expect(actions.quit).toHaveBeenCalledOnce()
  })

  it('shows the unread count in its tooltip, and nothing for zero or nonsense', () => {
    expect(trayTooltip(0)).toBe('Parley')
    expect(trayTooltip(1)).toBe('Parley: 1 unread')
    expect(trayTooltip(42)).toBe('Parley: 42 unread')
    for (const n of [-1, 1.5, Number.NaN]) expect(trayTooltip(n), String(n)).toBe('Parley')
  })

  it('uses a template image on macOS and the colour icon elsewhere', () => {
    expect(trayIconFile('darwin')).toBe('trayTemplate.png')
    expect(trayIconFile('win32')).toBe('tray.png')
    expect(trayIconFile('linux')).toBe('tray.png')
  })
})
