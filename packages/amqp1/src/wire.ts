/**
 * oslo's amqp1 bodies (docs/wire.md, "amqp1"): one AMQP-value string holding JSON.
 *
 *   request       {"request": {"method", "args"[, "namespace"][, "version"]}, "context": {...}[, "call_monitor_timeout": s]}
 *   reply         {"response": <result>}  or  {"failure": "<oslo failure JSON>"}
 *   heartbeat     no body (RabbitMQ turns that into an empty data section: the same)
 *   notification  {"request": {"oslo.version": "2.0", "oslo.message": "<notification JSON>"}, "context": {...}}
 *
 * The context is a plain object (no `_context_` keys) and correlation is the AMQP
 * `message-id` → `correlation-id`, so a request's de-duplication id is its message-id.
 */
import { MalformedMessage } from '@hybridbus/core';
import {
  notificationFromOslo,
  notificationToOslo,
  requestFromOslo,
  unenvelope,
  type Context,
  type Notification,
  type RpcReply,
  type RpcRequest,
} from '@hybridbus/core/driver';

type Dict = Record<string, unknown>;

const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The body's text: an AMQP string, or a data section (a broker may have converted it). */
function bodyText(body: unknown): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  // rhea hands a data section over as {typecode, content}
  if (isDict(body) && body['content'] instanceof Uint8Array) return bodyText(body['content']);
  throw new MalformedMessage(`body must be an AMQP string of JSON, got ${typeof body}`);
}

function parseDict(body: unknown, what: string): Dict {
  const text = bodyText(body);
  if (text === undefined || text === '') throw new MalformedMessage(`${what} has no body`);
  let d: unknown;
  try {
    d = JSON.parse(text);
  } catch (e) {
    throw new MalformedMessage(`${what} body is not JSON`, { cause: e });
  }
  if (!isDict(d)) throw new MalformedMessage(`${what} body must be a JSON object`);
  return d;
}

function contextOf(d: Dict): Context {
  const c = d['context'];
  if (c === undefined || c === null) return {};
  if (!isDict(c)) throw new MalformedMessage('"context" must be a JSON object');
  return c;
}

export function encodeRequest(req: RpcRequest, callMonitorTimeoutMs?: number): string {
  const r: Dict = { method: req.method, args: req.args };
  if (req.namespace !== undefined && req.namespace !== null) r['namespace'] = req.namespace;
  if (req.version !== undefined) r['version'] = req.version;
  const d: Dict = { request: r, context: req.context };
  if (callMonitorTimeoutMs !== undefined) d['call_monitor_timeout'] = callMonitorTimeoutMs / 1000;
  return JSON.stringify(d);
}

export interface DecodedRequest {
  readonly request: RpcRequest;
  readonly callMonitorTimeoutMs: number | undefined;
}

export function decodeRequest(body: unknown, messageId: string): DecodedRequest {
  const d = parseDict(body, 'request');
  const inner = d['request'];
  if (!isDict(inner)) throw new MalformedMessage('"request" must be a JSON object');
  const req = requestFromOslo(inner);
  const cmt = d['call_monitor_timeout'];
  if (cmt !== undefined && cmt !== null && (typeof cmt !== 'number' || !(cmt > 0))) {
    throw new MalformedMessage(`"call_monitor_timeout" must be a positive number of seconds, got ${JSON.stringify(cmt)}`);
  }
  return {
    request: { ...req, context: contextOf(d), uniqueId: messageId },
    callMonitorTimeoutMs: typeof cmt === 'number' ? cmt * 1000 : undefined,
  };
}

export function encodeReply(reply: Omit<RpcReply, 'ending'>): string {
  return JSON.stringify(reply.failure !== null ? { failure: reply.failure } : { response: reply.result ?? null });
}

/** A reply, or undefined for a heartbeat (a message with no body). */
export function decodeReply(body: unknown): RpcReply | undefined {
  const text = bodyText(body);
  if (text === undefined || text === '') return undefined;
  const d = parseDict(text, 'reply');
  const failure = d['failure'];
  if (failure !== undefined && failure !== null) {
    if (typeof failure !== 'string') throw new MalformedMessage('"failure" must be a JSON string');
    return { result: null, failure, ending: true };
  }
  return { result: d['response'] ?? null, failure: null, ending: true };
}

export function encodeNotification(n: Notification): string {
  const inner = notificationToOslo({ ...n, context: {} });
  return JSON.stringify({ request: { 'oslo.version': '2.0', 'oslo.message': JSON.stringify(inner) }, context: n.context });
}

export function decodeNotification(body: unknown, messageId: string | undefined): Notification {
  const d = parseDict(body, 'notification');
  const request = d['request'];
  if (!isDict(request)) throw new MalformedMessage('"request" must be a JSON object');
  const inner = 'oslo.version' in request ? unenvelope(JSON.stringify(request)) : request;
  const n = notificationFromOslo(inner);
  return { ...n, context: contextOf(d), uniqueId: n.uniqueId !== '' ? n.uniqueId : (messageId ?? n.messageId) };
}
