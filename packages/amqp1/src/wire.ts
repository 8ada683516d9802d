/**
 * oslo's amqp1 bodies (docs/wire.md, "amqp1"): one AMQP-value string holding JSON.
 *
 *   request       {"request": {"method", "args"[, "namespace"][, "version"][, "_trace"]}, "context": {...}[, "call_monitor_timeout": s]}
 *   reply         {"response": <result>}  or  {"failure": "<oslo failure JSON>"}
 *   heartbeat     no body (RabbitMQ turns that into an empty data section: the same)
 *   notification  {"request": {"oslo.version": "2.0", "oslo.message": "<notification JSON>"}, "context": {...}}
 *
 * The context is a plain object (no `_context_` keys) and correlation is the AMQP
 * `message-id` → `correlation-id`, so a request's de-duplication id is its message-id (oslo's
 * casts have none: then its `_unique_id`). Received bodies may also be AMQP binary or data
 * sections, requests enveloped and contexts in `_context_` keys, as oslo's own decoder takes them.
 */
import { MalformedMessage } from '@hybridbus/core';
import rhea from 'rhea';
import type { Message } from 'rhea';
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

const utf8 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/**
 * The body's text: an AMQP-value string (what oslo sends), an AMQP-value binary, or data
 * sections (what a broker that converted the message, or a plain AMQP client, sends; several
 * data sections are one body in order).
 */
function bodyText(body: unknown): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return utf8(body);
  // rhea hands data sections over as {typecode: 0x75, content: Buffer | Buffer[] (several)}
  if (isDict(body) && body['typecode'] === 0x75) {
    const c = body['content'];
    if (c instanceof Uint8Array) return utf8(c);
    if (Array.isArray(c) && c.every((x) => x instanceof Uint8Array)) return utf8(Buffer.concat(c as Uint8Array[]));
  }
  throw new MalformedMessage(`body must be an AMQP string of JSON (or data sections of UTF-8 JSON), got ${isDict(body) && typeof body['typecode'] === 'number' ? `a section of type 0x${body['typecode'].toString(16)}` : typeof body}`);
}

/**
 * A message-id (or correlation-id) as text, for de-duplication and logs. oslo's are strings
 * (uuid4().hex); AMQP also allows ulong, uuid and binary ids, which rhea hands over as
 * numbers or Buffers. The reply echoes the request's id as it came (its AMQP type), not this.
 */
export function messageIdText(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined;
  if (typeof id === 'string') return id;
  if (typeof id === 'number' || typeof id === 'bigint') return `ulong:${id}`;
  if (id instanceof Uint8Array) {
    const hex = Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
    // rhea decodes a uuid as a 16-byte Buffer: give it its canonical form
    return id.byteLength === 16 ? `uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}` : `binary:${hex}`;
  }
  return `${typeof id}:${JSON.stringify(id)}`;
}

/**
 * The correlation-id of a reply to a request with this message-id: the same value with the
 * same AMQP type (oslo matches replies by equality, and so does any AMQP client). rhea decodes
 * uuid and binary ids alike to Buffers and would send every Buffer back as a uuid: a binary id
 * that is not 16 bytes long is wrapped as binary again.
 */
export function correlationIdFor(id: Message['message_id']): Message['correlation_id'] {
  // rhea sends a Typed value as it is (its typings do not say so)
  if (id instanceof Uint8Array && id.byteLength !== 16) return rhea.types.wrap_binary(Buffer.from(id.buffer, id.byteOffset, id.byteLength)) as unknown as Buffer;
  return id;
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

/** The body's "context"; without one, `fallback` (the _context_ keys of an enveloped inner message). */
function contextOf(d: Dict, fallback: Context = {}): Context {
  const c = d['context'];
  if (c === undefined || c === null) return fallback;
  if (!isDict(c)) throw new MalformedMessage('"context" must be a JSON object');
  return c;
}

export function encodeRequest(req: RpcRequest, callMonitorTimeoutMs?: number): string {
  const r: Dict = { method: req.method, args: req.args };
  if (req.namespace !== undefined && req.namespace !== null) r['namespace'] = req.namespace;
  if (req.version !== undefined) r['version'] = req.version;
  // The trace carrier beside the method, as in the other drivers' oslo message (docs/wire.md,
  // "_trace"): oslo's dispatcher reads only the keys it knows. Only when a tracer wrote into it.
  if (req.trace !== undefined && Object.keys(req.trace).length > 0) r['_trace'] = req.trace;
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
  const request = d['request'];
  if (!isDict(request)) throw new MalformedMessage('"request" must be a JSON object');
  // oslo's unmarshal_request takes an enveloped request as well (common.deserialize_msg)
  const inner = 'oslo.version' in request ? unenvelope(JSON.stringify(request)) : request;
  const req = requestFromOslo(inner);
  const cmt = d['call_monitor_timeout'];
  if (cmt !== undefined && cmt !== null && (typeof cmt !== 'number' || !(cmt > 0))) {
    throw new MalformedMessage(`"call_monitor_timeout" must be a positive number of seconds, got ${JSON.stringify(cmt)}`);
  }
  return {
    // oslo's casts carry no message-id: then the request's own _unique_id, if any
    request: { ...req, context: contextOf(d, req.context), uniqueId: messageId !== '' ? messageId : req.uniqueId },
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
  return { ...n, context: contextOf(d, n.context), uniqueId: n.uniqueId !== '' ? n.uniqueId : (messageId ?? n.messageId) };
}
