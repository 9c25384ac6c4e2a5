/**
 * Message markdown to HTML that is safe to put in the DOM: marked renders, DOMPurify keeps only a
 * small allow-list of tags and attributes (no raw HTML, no scripts, no styles, no event handlers),
 * and links are forced to open outside the app, without a referrer.
 */
import DOMPurify from 'dompurify'
import { marked } from 'marked'

const ALLOWED_TAGS = ['p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a']
const ALLOWED_ATTR = ['href']

let hooked = false

/** Sanitised HTML for a markdown message body. */
export function renderMarkdown(body: string): string {
  if (!hooked) {
    hooked = true
    DOMPurify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName !== 'A') return
      const href = node.getAttribute('href') ?? ''
      // Only web and mail links; anything else (javascript:, data:, app-relative) is dropped.
      if (!/^(https?:|mailto:)/i.test(href)) node.removeAttribute('href')
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer nofollow')
    })
  }
  // Raw HTML in the source is escaped by marked's renderer override below, then sanitised anyway.
  const html = marked.parse(body, { async: false, gfm: true, breaks: true }) as string
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR: [...ALLOWED_ATTR, 'target', 'rel'],
    ALLOW_DATA_ATTR: false,
  })
}

marked.use({
  renderer: {
    // Raw HTML blocks and inline HTML are shown as text, never interpreted.
    html(token) {
      return escapeHtml(token.text)
    },
  },
})

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
