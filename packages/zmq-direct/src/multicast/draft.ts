/**
 * zeromq.js's draft sockets (RADIO), loaded only when multicast is configured. The
 * prebuilt binary has them; loading prints an "experimental" warning, which is filtered for
 * the length of that synchronous load only (zeromq-adapter.ts's withoutWarning).
 */
import { createRequire } from 'node:module';
import type * as Draft from 'zeromq/draft.js';
import { withoutWarning } from '../zeromq-adapter.js';

export const DRAFT_WARNING = 'ZeroMQ draft features are experimental and could change at any time.';

let draft: typeof Draft | undefined;

export function loadDraft(): typeof Draft {
  draft ??= withoutWarning(DRAFT_WARNING, () => createRequire(import.meta.url)('zeromq/draft.js') as typeof Draft);
  return draft;
}
