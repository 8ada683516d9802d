import { pino } from 'pino';

/** The subset of pino's API hybridbus logs through; pass any pino-compatible logger. */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export function defaultLogger(level = process.env['HYBRIDBUS_LOG_LEVEL'] ?? 'warn'): Logger {
  return pino({ name: 'hybridbus', level }, pino.destination(2));
}
