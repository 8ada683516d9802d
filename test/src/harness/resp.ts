/**
 * A minimal RESP2 client for the harness: one command per connection, the reply parsed into
 * plain values. Enough to ask Redis and Sentinel about replication and failover and to read
 * the name service's sorted sets, with Node built-ins only like the rest of the launcher
 * (launcher.ts header). Talks to 127.0.0.1 only (ports.ts `exchange`).
 */
import { exchange } from './ports.js';

/** A parsed reply: simple/bulk strings, integers, null, arrays; errors are RespError values. */
export type RespValue = string | number | null | RespError | RespValue[];

export class RespError {
  constructor(readonly message: string) {}
}

/** Parses one complete reply at `pos`; undefined when `buf` does not hold all of it yet. */
function parse(buf: Buffer, pos: number): { value: RespValue; end: number } | undefined {
  const eol = buf.indexOf('\r\n', pos, 'latin1');
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[pos] ?? 0);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RespError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`RESP: unexpected reply type ${JSON.stringify(type)}`);
  }
}

const complete = (b: Buffer): boolean => {
  try {
    return parse(b, 0) !== undefined;
  } catch {
    return true; // garbage: stop reading, the parse below reports it
  }
};

/** Sends one command to 127.0.0.1:port and resolves with its parsed reply; rejects if there is none. */
export async function resp(port: number, args: readonly string[], timeoutMs = 2000): Promise<RespValue> {
  const req = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  const { data, error } = await exchange(port, req, complete, timeoutMs);
  const parsed = data.length > 0 ? parse(data, 0) : undefined;
  if (!parsed) throw new Error(`redis ${args[0]} on port ${port}: ${error ?? 'incomplete reply'}`);
  return parsed.value;
}

/** `resp()` that also rejects on an error reply. */
export async function respOk(port: number, args: readonly string[], timeoutMs = 2000): Promise<Exclude<RespValue, RespError>> {
  const v = await resp(port, args, timeoutMs);
  if (v instanceof RespError) throw new Error(`redis ${args.join(' ')} on port ${port}: ${v.message}`);
  return v;
}

/** A flat [k1, v1, k2, v2, ...] array reply (SENTINEL replicas/sentinels entries) as an object. */
export function pairs(v: RespValue): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(v)) return out;
  for (let i = 0; i + 1 < v.length; i += 2) out[String(v[i])] = String(v[i + 1]);
  return out;
}

/** The `field:value` lines of an INFO section as an object. */
export function infoFields(text: RespValue): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of String(text).split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) out[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return out;
}
