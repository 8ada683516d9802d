/**
 * CURVE authentication of clients. ZeroMQ asks a ZAP handler (a socket bound at
 * inproc://zeromq.zap.01 in the same context) about every CURVE handshake; ours answers per
 * ZAP domain, one domain per server socket, from that socket's allowlist of client keys.
 */
import * as zmq from 'zeromq';
import { randomUUID } from 'node:crypto';
import type { CurveOptions } from './options.js';

const allowlists = new Map<string, ReadonlySet<string> | undefined>();
const domains = new WeakMap<CurveOptions, string>();
let handler: Promise<zmq.Reply> | undefined;

/** The ZAP domain for these options (register before the server socket exists). */
export function zapDomainFor(curve: CurveOptions): string {
  let domain = domains.get(curve);
  if (!domain) {
    domain = `hybridbus-${randomUUID()}`;
    domains.set(curve, domain);
    allowlists.set(domain, curve.allowedClients);
  }
  return domain;
}

let users = 0;

/** Start the process's ZAP handler once; a CURVE server socket must not bind before it. */
export function zapHandlerReady(): Promise<unknown> {
  users++;
  handler ??= startHandler();
  return handler;
}

/** A CURVE server socket closed; the last one stops the handler (it would keep the process alive). */
export function releaseZapHandler(): void {
  if (--users > 0 || !handler) return;
  const h = handler;
  handler = undefined;
  void h.then((socket) => socket.close());
}

async function startHandler(): Promise<zmq.Reply> {
  const socket = new zmq.Reply({ linger: 0 });
  await socket.bind('inproc://zeromq.zap.01');
  void (async () => {
    try {
      for await (const [version, requestId, domain, , , mechanism, clientKey] of socket) {
        const allow = allowlists.get(String(domain));
        const key = clientKey && clientKey.length === 32 ? encodeZ85(clientKey) : undefined;
        let status = '200';
        let text = 'OK';
        if (String(mechanism) !== 'CURVE') [status, text] = ['400', 'CURVE required'];
        else if (!allowlists.has(String(domain))) [status, text] = ['400', 'unknown ZAP domain'];
        else if (allow && (!key || !allow.has(key))) [status, text] = ['400', 'client key not allowed'];
        await socket.send([version ?? '1.0', requestId ?? '', status, text, key ?? '', '']);
      }
    } catch {
      // closed by releaseZapHandler()
    }
  })();
  return socket;
}

const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Z85-encode (length a multiple of 4), as ZeroMQ prints CURVE keys. */
export function encodeZ85(data: Uint8Array): string {
  let out = '';
  for (let i = 0; i < data.length; i += 4) {
    let value = ((data[i] ?? 0) * 2 ** 24 + ((data[i + 1] ?? 0) << 16) + ((data[i + 2] ?? 0) << 8) + (data[i + 3] ?? 0)) >>> 0;
    let chunk = '';
    for (let k = 0; k < 5; k++) {
      chunk = Z85[value % 85] + chunk;
      value = Math.floor(value / 85);
    }
    out += chunk;
  }
  return out;
}
