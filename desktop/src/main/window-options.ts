/**
 * The BrowserWindow options of the app window: a sandboxed renderer with context isolation, no Node,
 * no webviews, spellcheck on, the preload as the only bridge. Kept as data so a test can assert it.
 */
export interface SecureWindowOptions {
  readonly width: number
  readonly height: number
  readonly show: boolean
  readonly webPreferences: {
    readonly preload: string
    readonly sandbox: true
    readonly contextIsolation: true
    readonly nodeIntegration: false
    readonly nodeIntegrationInWorker: false
    readonly webviewTag: false
    readonly webSecurity: true
    readonly allowRunningInsecureContent: false
    readonly spellcheck: true
    readonly navigateOnDragDrop: false
  }
}

export function windowOptions(preloadPath: string): SecureWindowOptions {
  return {
    width: 1100,
    height: 760,
    show: false,
    webPreferences: {
      preload: preloadPath,
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webviewTag: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: true,
      navigateOnDragDrop: false,
    },
  }
}
