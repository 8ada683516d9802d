import { InvalidTarget } from './errors.js';

/** The fields of a Target, as in oslo.messaging. All optional; each role requires some. */
export interface TargetFields {
  /** Scope of topics; drivers with exchanges use it (default: config `controlExchange`). */
  readonly exchange?: string | undefined;
  readonly topic?: string | undefined;
  /** One server of the topic, or (in a listener) this server's name. */
  readonly server?: string | undefined;
  /** Deliver a cast to every server of the topic. */
  readonly fanout?: boolean | undefined;
  /** Endpoint namespace; a request matches only endpoints with the same one. */
  readonly namespace?: string | null | undefined;
  /** "X.Y" (or "X.Y.Z"): the API version a client asks for or an endpoint implements. */
  readonly version?: string | undefined;
  /** Extra namespaces an endpoint also answers to, for renames. */
  readonly legacyNamespaces?: readonly string[] | undefined;
}

/** Who uses a target decides what it must hold (oslo's rules). */
export type TargetRole = 'rpc-client' | 'rpc-call' | 'rpc-server' | 'notifier' | 'listener' | 'endpoint';

const NAME = /^[^\s\0/#*]+$/;
const VERSION = /^\d+\.\d+(\.\d+)?$/;

export class Target implements TargetFields {
  readonly exchange: string | undefined;
  readonly topic: string | undefined;
  readonly server: string | undefined;
  readonly fanout: boolean | undefined;
  readonly namespace: string | null | undefined;
  readonly version: string | undefined;
  readonly legacyNamespaces: readonly string[];

  constructor(fields: TargetFields = {}) {
    this.exchange = fields.exchange;
    this.topic = fields.topic;
    this.server = fields.server;
    this.fanout = fields.fanout;
    this.namespace = fields.namespace;
    this.version = fields.version;
    this.legacyNamespaces = Object.freeze([...(fields.legacyNamespaces ?? [])]);
    Object.freeze(this);
  }

  static from(fields: TargetFields | Target): Target {
    return fields instanceof Target ? fields : new Target(fields);
  }

  /** A copy with some fields replaced (`undefined` keeps the current value). */
  with(overrides: TargetFields): Target {
    const merged: Record<string, unknown> = { ...(this as TargetFields) };
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
    return new Target(merged as TargetFields);
  }

  /** Namespaces an endpoint with this target accepts. */
  get acceptedNamespaces(): ReadonlyArray<string | null | undefined> {
    return [this.namespace, ...this.legacyNamespaces];
  }

  toString(): string {
    const parts = Object.entries(this)
      .filter(([k, v]) => v !== undefined && !(k === 'legacyNamespaces' && (v as unknown[]).length === 0))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
    return `<Target ${parts.join(', ')}>`;
  }
}

function checkName(target: Target, field: 'exchange' | 'topic' | 'server', value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new InvalidTarget(
      `${target}: ${field} must be a non-empty string without whitespace, NUL, "/", "#" or "*", got ${JSON.stringify(value)}`,
      target,
    );
  }
}

/** Throws InvalidTarget unless `target` is complete and well-formed for `role`. Returns it. */
export function validateTarget(fields: TargetFields | Target, role: TargetRole): Target {
  const target = Target.from(fields);
  checkName(target, 'exchange', target.exchange);
  checkName(target, 'topic', target.topic);
  checkName(target, 'server', target.server);
  if (target.version !== undefined && (typeof target.version !== 'string' || !VERSION.test(target.version))) {
    throw new InvalidTarget(`${target}: version must look like "1.0" or "1.2.3", got ${JSON.stringify(target.version)}`, target);
  }
  if (target.namespace !== undefined && target.namespace !== null && typeof target.namespace !== 'string') {
    throw new InvalidTarget(`${target}: namespace must be a string or null`, target);
  }
  const need = (field: 'topic' | 'server'): void => {
    if (target[field] === undefined) throw new InvalidTarget(`${target}: a ${role} target requires a ${field}`, target);
  };
  switch (role) {
    case 'rpc-client':
    case 'notifier':
    case 'listener':
      need('topic');
      break;
    case 'rpc-call':
      need('topic');
      if (target.fanout) throw new InvalidTarget(`${target}: a call cannot be used with fanout`, target);
      break;
    case 'rpc-server':
      need('topic');
      need('server');
      if (target.fanout) throw new InvalidTarget(`${target}: a server target cannot set fanout`, target);
      break;
    case 'endpoint':
      if (target.topic !== undefined || target.server !== undefined || target.fanout !== undefined) {
        throw new InvalidTarget(`${target}: an endpoint target holds only namespace, version and legacyNamespaces`, target);
      }
      break;
  }
  return target;
}

// A server sees the same few versions on every request: parse each once (bounded, as
// versions come from the wire).
const parsedVersions = new Map<string, readonly [number, number, number]>();
function parseVersion(v: string): readonly [number, number, number] {
  let parsed = parsedVersions.get(v);
  if (!parsed) {
    const [major = 0, minor = 0, rev = 0] = v.split('.').map(Number);
    parsed = [major, minor, rev];
    if (parsedVersions.size >= 1000) parsedVersions.clear();
    parsedVersions.set(v, parsed);
  }
  return parsed;
}

/**
 * oslo's version_is_compatible: an implementation of `implemented` can serve a request for
 * `requested` when the majors match and the requested minor (then revision) is not newer.
 */
export function versionIsCompatible(implemented: string, requested: string): boolean {
  const [iMaj, iMin, iRev] = parseVersion(implemented);
  const [rMaj, rMin, rRev] = parseVersion(requested);
  if (iMaj !== rMaj) return false;
  if (rMin > iMin) return false;
  return !(rMin === iMin && rRev > iRev);
}
