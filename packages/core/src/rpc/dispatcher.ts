/**
 * oslo's RPCDispatcher: pick the first endpoint whose namespace and version fit the request
 * and that exposes the method. A compatible endpoint without the method → NoSuchMethod;
 * no compatible endpoint → UnsupportedVersion.
 */
import { NoSuchMethod, UnsupportedVersion } from '../errors.js';
import type { Context, RpcRequest } from '../message.js';
import { validateTarget, versionIsCompatible, type Target, type TargetFields } from '../target.js';

/**
 * Any object whose methods `(ctx, args) => result` are callable remotely; these optional
 * properties describe it.
 */
export interface Endpoint {
  /** Namespace and version this endpoint implements (default: no namespace, "1.0"). */
  readonly target?: TargetFields | undefined;
  /** With the `explicit` access policy, only these methods are callable. */
  readonly exposed?: readonly string[] | undefined;
  /** Errors that are part of the API: returned to the caller, not logged as server faults. */
  readonly expectedExceptions?: ReadonlyArray<abstract new (...args: never[]) => Error> | undefined;
}

export type AccessPolicy = 'default' | 'explicit';

/** Properties of an endpoint that describe it and are never methods. */
const RESERVED = new Set(['target', 'exposed', 'expectedExceptions', 'filterRule', 'constructor']);

type RemoteMethod = (this: Endpoint, ctx: Context, args: Record<string, unknown>) => unknown;

export class RpcDispatcher {
  private readonly entries: ReadonlyArray<{ endpoint: Endpoint; target: Target }>;

  constructor(
    endpoints: readonly object[],
    readonly accessPolicy: AccessPolicy,
  ) {
    this.entries = endpoints.map((e) => {
      const endpoint = e as Endpoint;
      return { endpoint, target: validateTarget(endpoint.target ?? {}, 'endpoint') };
    });
  }

  /** The method `name` of `endpoint` if the access policy lets it be called remotely. */
  method(endpoint: Endpoint, name: string): RemoteMethod | undefined {
    // Private by convention, described by us, or inherited from Object: never remote.
    if (name.startsWith('_') || RESERVED.has(name) || name in Object.prototype) return undefined;
    if (this.accessPolicy === 'explicit' && !endpoint.exposed?.includes(name)) return undefined;
    const fn: unknown = (endpoint as Record<string, unknown>)[name];
    return typeof fn === 'function' ? (fn as RemoteMethod) : undefined;
  }

  /** Find the handler for a request: throws NoSuchMethod or UnsupportedVersion. */
  resolve(request: RpcRequest): { endpoint: Endpoint; fn: RemoteMethod } {
    const version = request.version ?? '1.0';
    const namespace = request.namespace ?? null;
    let compatible = false;
    for (const { endpoint, target } of this.entries) {
      if (!target.acceptedNamespaces.some((ns) => (ns ?? null) === namespace)) continue;
      if (!versionIsCompatible(target.version ?? '1.0', version)) continue;
      const fn = this.method(endpoint, request.method);
      if (fn) return { endpoint, fn };
      compatible = true;
    }
    throw compatible ? new NoSuchMethod(request.method) : new UnsupportedVersion(version, request.method);
  }

  isExpected(endpoint: Endpoint | undefined, error: unknown): boolean {
    return endpoint?.expectedExceptions?.some((cls) => error instanceof cls) ?? false;
  }
}
