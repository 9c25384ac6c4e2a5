/** IPC channel names of the DesktopApi (shared by preload and main; the schemas live in desktop-api.ts). */
export const IPC = {
  notify: 'parley:notify',
  setBadge: 'parley:set-badge',
  openExternal: 'parley:open-external',
  secretGet: 'parley:secret-get',
  secretSet: 'parley:secret-set',
} as const
