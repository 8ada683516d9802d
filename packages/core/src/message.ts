/**
 * The logical messages core hands to drivers and gets back from them, and oslo.messaging's
 * dict form of them (docs/wire.md, "The oslo message"), which drivers put on the wire.
 * Core builds and checks messages here once; a driver only moves the encoded bytes.
 */
import { randomBytes } from 'node:crypto';
import { MalformedMessage, RemoteError } from './errors.js';
import type { TraceCarrier } from './diagnostics.js';

export type Context = Readonly<Record<string, unknown>>;

export const PRIORITIES = ['audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample'] as const;
export type Priority = (typeof PRIORITIES)[number];
export function isPriority(p: unknown): p is Priority {
  return typeof p === 'string' && (PRIORITIES as readonly string[]).includes(p);
}

export interface RpcRequest {
  readonly method: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly namespace?: string | null | undefined;
  readonly version?: string | undefined;
  readonly context: Context;
  /** De-duplication id (uuid4 hex). */
  readonly uniqueId: string;
  /** The sender's trace context (W3C keys), when a tracer put one there. */
  readonly trace?: Readonly<TraceCarrier> | undefined;
}

/** A reply as the server sends it: `ending: false` is a call-monitor heartbeat. */
export interface RpcReply {
  readonly result: unknown;
  /** oslo's failure format, JSON-encoded as a string (see serializeFailure). */
  readonly failure: string | null;
  readonly ending: boolean;
}

export interface Notification {
  /** uuid4, dashed. */
  readonly messageId: string;
  readonly publisherId: string;
  readonly eventType: string;
  readonly priority: Priority;
  readonly payload: unknown;
  /** "YYYY-MM-DD HH:MM:SS.ffffff", UTC, as oslo writes it. */
  readonly timestamp: string;
  readonly context: Context;
  readonly uniqueId: string;
  /** As RpcRequest's. */
  readonly trace?: Readonly<TraceCarrier> | undefined;
}

/** The 4,096 three-digit hex strings, "000" to "fff". */
const LOW_DIGITS = Array.from({ length: 4096 }, (_, i) => i.toString(16).padStart(3, '0'));

/**
 * Ids made of `prefix` and a 48-bit counter in 12 hex digits. The top 9 digits are formatted once
 * per 4,096 ids: formatting the counter per id (toString(16), padStart) showed in a busy client.
 */
function counterIds(prefix: string): () => string {
  let next = 0;
  let high = -1;
  let head = '';
  return () => {
    const n = next;
    next = (next + 1) % 2 ** 48;
    const h = Math.floor(n / 4096);
    if (h !== high) {
      high = h;
      head = prefix + h.toString(16).padStart(9, '0');
    }
    return head + (LOW_DIGITS[n & 0xfff] as string);
  };
}

/**
 * A request's or notification's _unique_id: 80 random bits per process, then the counter: 32 hex
 * digits like oslo's uuid4().hex, unique in practice, without a random UUID per message (that was
 * a few % of a busy client).
 */
export const uniqueId: () => string = counterIds(randomBytes(10).toString('hex'));

/**
 * A notification's message_id (oslo: str(uuid4())) in the same way: the dashed UUID form with the
 * version 4 and variant bits, the rest the process's random prefix and the counter. A random UUID
 * per notification was 6 % of a busy notifier's CPU (crypto.randomUUID: ~270 ns here).
 */
export const messageId: () => string = counterIds(
  (() => {
    const r = randomBytes(10).toString('hex');
    const variant = '89ab'[parseInt(r.charAt(15), 16) & 3] as string;
    return `${r.slice(0, 8)}-${r.slice(8, 12)}-4${r.slice(12, 15)}-${variant}${r.slice(16, 19)}-`;
  })(),
);

// Formatting a date was a fifth of a busy notifier's time: one string per millisecond will do.
let stampMs = Number.NaN;
let stamp = '';
/** oslo's `str(datetime.utcnow())`. */
export function osloTimestamp(d?: Date): string {
  const ms = d ? d.getTime() : Date.now();
  if (ms !== stampMs) {
    const iso = new Date(ms).toISOString();
    stamp = `${iso.slice(0, 10)} ${iso.slice(11, 23)}000`;
    stampMs = ms;
  }
  return stamp;
}

// ---- oslo dict form ------------------------------------------------------------------------

type Dict = Record<string, unknown>;
const CONTEXT_PREFIX = '_context_';
/**
 * hybridbus's key for the trace context in the inner message (docs/wire.md): oslo's dispatchers
 * read only the keys they know, so Python peers ignore it.
 */
const TRACE_KEY = '_trace';

function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

/** Only a carrier a tracer wrote into goes on the wire: untraced messages stay oslo's bytes. */
function addTrace(d: Dict, trace: Readonly<TraceCarrier> | undefined): Dict {
  if (trace !== undefined && !isEmpty(trace)) d[TRACE_KEY] = trace;
  return d;
}

/** The sender's carrier, if it is a dict of strings; anything else is ignored (it only feeds tracing). */
function extractTrace(d: Dict): TraceCarrier | undefined {
  const t = d[TRACE_KEY];
  if (!isDict(t)) return undefined;
  const out: TraceCarrier = {};
  for (const k in t) if (Object.hasOwn(t, k) && typeof t[k] === 'string') out[k] = t[k];
  return out;
}

function isDict(v: unknown): v is Dict {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Context keys with and without the prefix, made once per key name. A key made per message (a
 * concatenation or a slice) is a new string that each property store must hash and look up
 * again: with an OpenStack-sized context (~20 keys) that was most of the cost of flattening and
 * extracting one. Bounded: the keys come from the network too; past the bound they are made per
 * message, as before.
 */
const KEY_CACHE_MAX = 4096;
const prefixedKeys = new Map<string, string>();
const strippedKeys = new Map<string, string>();

function prefixed(k: string): string {
  let long = prefixedKeys.get(k);
  if (long === undefined) {
    long = CONTEXT_PREFIX + k;
    if (prefixedKeys.size < KEY_CACHE_MAX) prefixedKeys.set(k, long);
  }
  return long;
}

/** `k` without the context prefix; undefined when it has none. */
function stripped(k: string): string | undefined {
  let short = strippedKeys.get(k);
  if (short === undefined) {
    if (!k.startsWith(CONTEXT_PREFIX)) return undefined;
    short = k.slice(CONTEXT_PREFIX.length);
    if (strippedKeys.size < KEY_CACHE_MAX) strippedKeys.set(k, short);
  }
  return short;
}

/**
 * `o[k] = v` as JSON.parse would make it: an own property even when `k` is "__proto__" (an
 * assignment would set `o`'s prototype instead). For keys that come from the network.
 */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** How many key names the caches hold (they stay within their bound whatever arrives). */
export function contextKeyCacheSizes(): { prefixed: number; stripped: number; max: number } {
  return { prefixed: prefixedKeys.size, stripped: strippedKeys.size, max: KEY_CACHE_MAX };
}

// for…in over own keys rather than Object.entries: no array of pairs per message.
function flattenContext(out: Dict, context: Context): Dict {
  for (const k in context) if (Object.hasOwn(context, k)) out[prefixed(k)] = context[k];
  return out;
}

function extractContext(d: Dict): Dict {
  const ctx: Dict = {};
  for (const k in d) {
    // Most keys of the dict are not context ones: those without a leading "_" cost one compare.
    if (k.charCodeAt(0) !== 0x5f) continue;
    const short = stripped(k);
    if (short === undefined || !Object.hasOwn(d, k)) continue;
    // "_context___proto__" is a key like any other.
    setOwn(ctx, short, d[k]);
  }
  return ctx;
}

function field<T>(d: Dict, key: string, ok: (v: unknown) => v is T, what: string, optional = false): T | undefined {
  const v = d[key];
  if (v === undefined && optional) return undefined;
  if (!ok(v)) throw new MalformedMessage(`field "${key}" must be ${what}, got ${JSON.stringify(v) ?? 'nothing'}`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isAny = (_v: unknown): _v is unknown => true;

/** The inner oslo message of a request, without a driver's correlation fields. */
export function requestToOslo(req: RpcRequest): Dict {
  const d: Dict = { method: req.method, args: req.args };
  if (req.namespace !== undefined && req.namespace !== null) d['namespace'] = req.namespace;
  if (req.version !== undefined) d['version'] = req.version;
  d['_unique_id'] = req.uniqueId;
  return flattenContext(addTrace(d, req.trace), req.context);
}

export function requestFromOslo(d: unknown): RpcRequest {
  if (!isDict(d)) throw new MalformedMessage('request must be a JSON object');
  const method = field(d, 'method', isString, 'a string') as string;
  const args = d['args'] === undefined ? {} : field(d, 'args', isDict, 'an object');
  const req: { -readonly [K in keyof RpcRequest]: RpcRequest[K] } = {
    method,
    args: args as Dict,
    namespace: field(d, 'namespace', isStringOrNull, 'a string or null', true),
    version: field(d, 'version', isString, 'a version string', true),
    context: extractContext(d),
    uniqueId: field(d, '_unique_id', isString, 'a string', true) ?? '',
  };
  // Only when sent: the application sees the same request whether or not a tracer ran.
  if (d[TRACE_KEY] !== undefined) req.trace = extractTrace(d);
  return req;
}

export function replyToOslo(reply: RpcReply): Dict {
  return { result: reply.result ?? null, failure: reply.failure, ending: reply.ending };
}

export function replyFromOslo(d: unknown): RpcReply {
  if (!isDict(d)) throw new MalformedMessage('reply must be a JSON object');
  return {
    result: d['result'] ?? null,
    failure: field(d, 'failure', isStringOrNull, 'a JSON string or null') ?? null,
    ending: field(d, 'ending', isBool, 'a boolean') as boolean,
  };
}

export function notificationToOslo(n: Notification): Dict {
  return flattenContext(
    addTrace({
      message_id: n.messageId,
      publisher_id: n.publisherId,
      event_type: n.eventType,
      priority: n.priority.toUpperCase(),
      payload: n.payload,
      timestamp: n.timestamp,
      _unique_id: n.uniqueId,
    }, n.trace),
    n.context,
  );
}

export function notificationFromOslo(d: unknown): Notification {
  if (!isDict(d)) throw new MalformedMessage('notification must be a JSON object');
  const priority = String(field(d, 'priority', isString, 'a priority string')).toLowerCase();
  if (!isPriority(priority)) throw new MalformedMessage(`unknown notification priority ${JSON.stringify(d['priority'])}`);
  const n: { -readonly [K in keyof Notification]: Notification[K] } = {
    messageId: field(d, 'message_id', isStringOrNull, 'a string', true) ?? '',
    publisherId: field(d, 'publisher_id', isStringOrNull, 'a string', true) ?? '',
    eventType: field(d, 'event_type', isStringOrNull, 'a string', true) ?? '',
    priority,
    payload: field(d, 'payload', isAny, 'JSON', true) ?? null,
    timestamp: field(d, 'timestamp', isStringOrNull, 'a string', true) ?? '',
    context: extractContext(d),
    uniqueId: field(d, '_unique_id', isString, 'a string', true) ?? '',
  };
  if (d[TRACE_KEY] !== undefined) n.trace = extractTrace(d);
  return n;
}

// ---- compact form --------------------------------------------------------------------------
//
// A request or notification as a JSON array, the context one nested object: for a transport
// whose wire is this project's own (zmq://, docs/wire.md). oslo's dict spreads the context over
// "_context_<key>" fields; with an OpenStack-sized context, building, encoding and taking that
// dict apart cost about twice what this form does. The application gets the same values from
// either form (the conformance suite checks it): absent namespace and version travel as null
// and come back absent, as the dict form's omitted fields do.

/** [method, args, namespace | null, version | null, uniqueId, context, trace?] */
export type CompactRequest = readonly unknown[];
/** [messageId, publisherId, eventType, priority, payload, timestamp, uniqueId, context, trace?] */
export type CompactNotification = readonly unknown[];

function compactTrace(trace: Readonly<TraceCarrier> | undefined): TraceCarrier | undefined {
  return trace !== undefined && !isEmpty(trace) ? (trace as TraceCarrier) : undefined;
}

function item<T>(a: readonly unknown[], i: number, name: string, ok: (v: unknown) => v is T, what: string): T {
  const v = a[i];
  if (!ok(v)) throw new MalformedMessage(`compact ${name} must be ${what}, got ${JSON.stringify(v) ?? 'nothing'}`);
  return v;
}

export function requestToCompact(req: RpcRequest): CompactRequest {
  const trace = compactTrace(req.trace);
  const a: unknown[] = [req.method, req.args, req.namespace ?? null, req.version ?? null, req.uniqueId, req.context];
  if (trace) a.push(trace);
  return a;
}

export function requestFromCompact(a: unknown): RpcRequest {
  if (!Array.isArray(a) || a.length < 6) throw new MalformedMessage('a compact request must be a JSON array of 6 or 7 items');
  const namespace = item(a, 2, 'namespace', isStringOrNull, 'a string or null');
  const version = item(a, 3, 'version', isStringOrNull, 'a version string or null');
  const req: { -readonly [K in keyof RpcRequest]: RpcRequest[K] } = {
    method: item(a, 0, 'method', isString, 'a string'),
    args: item(a, 1, 'args', isDict, 'an object'),
    namespace: namespace ?? undefined,
    version: version ?? undefined,
    context: item(a, 5, 'context', isDict, 'an object'),
    uniqueId: item(a, 4, 'unique id', isString, 'a string'),
  };
  if (a.length > 6) req.trace = extractTrace({ [TRACE_KEY]: a[6] });
  return req;
}

export function notificationToCompact(n: Notification): CompactNotification {
  const trace = compactTrace(n.trace);
  // Lower case, whatever case a caller used: the dict form upper-cases it and its reader lower-cases it.
  const a: unknown[] = [n.messageId, n.publisherId, n.eventType, n.priority.toLowerCase(), n.payload ?? null, n.timestamp, n.uniqueId, n.context];
  if (trace) a.push(trace);
  return a;
}

export function notificationFromCompact(a: unknown): Notification {
  if (!Array.isArray(a) || a.length < 8) throw new MalformedMessage('a compact notification must be a JSON array of 8 or 9 items');
  const priority = a[3];
  if (!isPriority(priority)) throw new MalformedMessage(`unknown notification priority ${JSON.stringify(priority) ?? 'nothing'}`);
  const n: { -readonly [K in keyof Notification]: Notification[K] } = {
    messageId: item(a, 0, 'message id', isString, 'a string'),
    publisherId: item(a, 1, 'publisher id', isString, 'a string'),
    eventType: item(a, 2, 'event type', isString, 'a string'),
    priority,
    payload: a[4] ?? null,
    timestamp: item(a, 5, 'timestamp', isString, 'a string'),
    context: item(a, 7, 'context', isDict, 'an object'),
    uniqueId: item(a, 6, 'unique id', isString, 'a string'),
  };
  if (a.length > 8) n.trace = extractTrace({ [TRACE_KEY]: a[8] });
  return n;
}

export const ENVELOPE_VERSION = '2.0';

/** Wrap an inner message in oslo's 2.0 envelope (the inner message is JSON-encoded again). */
export function envelope(inner: Dict): string {
  return JSON.stringify({ 'oslo.version': ENVELOPE_VERSION, 'oslo.message': JSON.stringify(inner) });
}

/** Parse a body: the 2.0 envelope, or a bare object (envelope "1.0"). Other majors are rejected. */
export function unenvelope(body: string | Uint8Array): Dict {
  let outer: unknown;
  try {
    outer = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
  } catch (e) {
    throw new MalformedMessage('body is not JSON', { cause: e });
  }
  if (!isDict(outer)) throw new MalformedMessage('body must be a JSON object');
  const version = outer['oslo.version'];
  if (version === undefined) return outer;
  if (typeof version !== 'string' || version.split('.')[0] !== '2') {
    throw new MalformedMessage(`unsupported envelope version ${JSON.stringify(version)}`);
  }
  const inner = outer['oslo.message'];
  if (typeof inner !== 'string') throw new MalformedMessage('"oslo.message" must be a JSON string');
  let parsed: unknown;
  try {
    parsed = JSON.parse(inner);
  } catch (e) {
    throw new MalformedMessage('"oslo.message" is not JSON', { cause: e });
  }
  if (!isDict(parsed)) throw new MalformedMessage('"oslo.message" must encode a JSON object');
  return parsed;
}

// ---- failures ------------------------------------------------------------------------------

/** oslo's serialized exception. */
export interface Failure {
  readonly class: string;
  readonly module: string;
  readonly message: string;
  readonly tb: readonly string[];
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
}

/** Errors may say which module a Python peer should look their class up in (e.g. "builtins"). */
interface WithModule {
  module?: unknown;
}

/**
 * The failure a caller gets for what an endpoint threw. The class a caller sees is, in order: a
 * RemoteError's (`remoteError()`, or one a call of the endpoint's own raised), with its module,
 * args and kwargs; else the error's `name` (a subclass sets it), its `module` property if it has
 * one (default "hybridbus"), and `[message]` as args. README: "Remote errors".
 */
export function serializeFailure(err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const module = (e as WithModule).module;
  const remote = e instanceof RemoteError ? e : undefined;
  const failure: Failure = {
    class: remote ? remote.remoteClass : e.name || 'Error',
    module: remote ? remote.remoteModule : typeof module === 'string' ? module : 'hybridbus',
    message: remote ? remote.remoteMessage : e.message,
    tb: (e.stack ?? '').split('\n').map((l) => `${l}\n`),
    args: remote && remote.remoteArgs.length > 0 ? remote.remoteArgs : [remote ? remote.remoteMessage : e.message],
    kwargs: remote ? remote.remoteKwargs : {},
  };
  return JSON.stringify(failure);
}

export function deserializeFailure(data: string): RemoteError {
  let f: unknown;
  try {
    f = JSON.parse(data);
  } catch {
    return new RemoteError('UnknownError', 'unknown', data, []);
  }
  if (!isDict(f)) return new RemoteError('UnknownError', 'unknown', data, []);
  const s = (v: unknown, dflt: string): string => (typeof v === 'string' ? v : dflt);
  return new RemoteError(
    s(f['class'], 'UnknownError'),
    s(f['module'], 'unknown'),
    s(f['message'], ''),
    Array.isArray(f['tb']) ? f['tb'].map(String) : [],
    Array.isArray(f['args']) ? f['args'] : [],
    isDict(f['kwargs']) ? f['kwargs'] : {},
  );
}
