/**
 * zeromq.js's draft sockets (RADIO/DISH), loaded only when multicast is configured. The
 * prebuilt binary has them; loading prints an "experimental" warning, which is filtered for
 * the length of that synchronous load only (as zeromq-adapter.ts does for its warning).
 */
import { createRequire } from 'node:module';
import type * as Draft from 'zeromq/draft.js';

export const DRAFT_WARNING = 'ZeroMQ draft features are experimental and could change at any time.';

let draft: typeof Draft | undefined;

export function loadDraft(): typeof Draft {
  if (draft) return draft;
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning) === DRAFT_WARNING) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    draft = createRequire(import.meta.url)('zeromq/draft.js') as typeof Draft;
  } finally {
    process.emitWarning = emit;
  }
  return draft;
}
