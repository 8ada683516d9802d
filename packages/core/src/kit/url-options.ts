/**
 * A driver's options from its transport URL's query string, checked in one place: every
 * unknown, repeated or malformed option is collected, and the caller gets one ConfigError that
 * names each option, its value and the expected form (a typo must never fall back to a default).
 */
import { ConfigError } from '../errors.js';
import { maskUrl } from '../mask.js';

/** Parses one raw value: the value, or undefined when it is malformed. */
export type OptionParser<T> = (raw: string) => T | undefined;

export interface OptionSpec<T> {
  readonly parse: OptionParser<T>;
  /** The expected form, for the error ("a whole number >= 1"). */
  readonly expected: string;
  /** Never echo the value (passwords, keys). */
  readonly secret?: boolean;
}

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;

export const optionParsers = {
  bool: { parse: (raw) => (TRUE.test(raw) ? true : FALSE.test(raw) ? false : undefined), expected: 'a boolean (true/false, 1/0, yes/no, on/off)' } as OptionSpec<boolean>,
  text: { parse: (raw) => (raw === '' ? undefined : raw), expected: 'a non-empty string' } as OptionSpec<string>,
  intAtLeast: (min: number, what = `a whole number >= ${min}`): OptionSpec<number> => ({
    parse: (raw) => (/^\d+$/.test(raw) && Number(raw) >= min ? Number(raw) : undefined),
    expected: what,
  }),
  secondsAtLeast: (min: number): OptionSpec<number> => ({
    parse: (raw) => (/^\d+(\.\d+)?$/.test(raw) && Number(raw) >= min ? Number(raw) : undefined),
    expected: `a number of seconds >= ${min}`,
  }),
  oneOf: <T extends string>(...values: readonly T[]): OptionSpec<T> => ({
    parse: (raw) => (values as readonly string[]).includes(raw) ? (raw as T) : undefined,
    expected: `one of ${values.map((v) => `"${v}"`).join(', ')}`,
  }),
  list: { parse: (raw) => raw.split(/[\s,]+/).filter((s) => s !== ''), expected: 'a comma-separated list' } as OptionSpec<string[]>,
};

type Specs = Readonly<Record<string, OptionSpec<unknown>>>;
type Values<S extends Specs> = { [K in keyof S]?: S[K] extends OptionSpec<infer T> ? T : never };

/** The options read from a URL, plus the problems found so far (add your own, then `check()`). */
export class UrlOptions<S extends Specs> {
  readonly values: Values<S> = {};
  readonly problems: string[] = [];

  constructor(
    readonly url: URL,
    private readonly specs: S,
  ) {
    const seen = new Set<string>();
    for (const [key, raw] of url.searchParams) {
      // Own keys only: "?constructor=1" or "?__proto__=x" must be unknown options, not Object's.
      const spec = Object.hasOwn(specs, key) ? specs[key] : undefined;
      if (!spec) {
        this.problems.push(`unknown option "${key}"; expected one of: ${Object.keys(specs).join(', ')}`);
        continue;
      }
      if (seen.has(key)) {
        this.problems.push(`option "${key}" is given more than once`);
        continue;
      }
      seen.add(key);
      const v = spec.parse(raw);
      const shown = spec.secret ? `<${raw.length} characters, hidden>` : JSON.stringify(raw);
      if (v === undefined) this.problems.push(`option "${key}" has bad value ${shown}; expected ${spec.expected}`);
      else (this.values as Record<string, unknown>)[key] = v;
    }
  }

  /** The option's value, or `dflt` when the URL does not set it. */
  get<K extends keyof S & string>(key: K, dflt: NonNullable<Values<S>[K]>): NonNullable<Values<S>[K]> {
    const v = this.values[key];
    return v === undefined || v === null ? dflt : (v as NonNullable<Values<S>[K]>);
  }

  /** Throws one ConfigError for every problem, naming the URL with its credentials masked. */
  check(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems, `transport ${maskUrl(this.url.href)}`);
  }
}

export interface UrlHost {
  readonly host: string;
  readonly port: number | undefined;
  readonly username: string | undefined;
  readonly password: string | undefined;
}

/** `[user[:pass]@]host[:port]`, host possibly a bracketed IPv6 literal. */
function parseAuthorityEntry(entry: string): UrlHost | string {
  const at = entry.lastIndexOf('@');
  const userinfo = at >= 0 ? entry.slice(0, at) : undefined;
  const hostport = at >= 0 ? entry.slice(at + 1) : entry;
  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    if (end < 0) return `unterminated IPv6 literal in ${JSON.stringify(entry)}`;
    host = hostport.slice(1, end);
    const rest = hostport.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) return `junk after the IPv6 literal in ${JSON.stringify(entry)}`;
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = hostport.lastIndexOf(':');
    host = colon >= 0 ? hostport.slice(0, colon) : hostport;
    portText = colon >= 0 ? hostport.slice(colon + 1) : undefined;
  }
  if (host === '') return `no host in ${JSON.stringify(entry)}`;
  let port: number | undefined;
  if (portText !== undefined && portText !== '') {
    if (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      return `bad port ${JSON.stringify(portText)} in ${JSON.stringify(entry)} (expected 1-65535)`;
    }
    port = Number(portText);
  }
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    username = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    password = colon >= 0 ? userinfo.slice(colon + 1) : undefined;
  }
  return { host, port, username, password };
}

/** decodeURIComponent, or the text as it is when it is not valid percent-encoding. */
export function urlDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * The brokers named by one URL. oslo writes a failover list in the authority
 * (`rabbit://u:p@h1:5672,u:p@h2:5672/`); WHATWG URL parsing folds everything before the last
 * `@` into the password, so the authority is rebuilt from the decoded parts and split on `,`.
 * (A literal `,` or `@` in a password of such a list is ambiguous: use `?failover=` then.)
 */
export function urlHosts(url: URL): UrlHost[] | string {
  const user = urlDecode(url.username);
  const pass = urlDecode(url.password);
  const userinfo = user !== '' || pass !== '' ? `${user}${url.password !== '' ? `:${pass}` : ''}@` : '';
  const authority = `${userinfo}${urlDecode(url.host)}`;
  if (!authority.includes(',')) {
    return [
      {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? undefined : Number(url.port),
        username: user !== '' || pass !== '' ? user : undefined,
        password: url.password !== '' ? pass : undefined,
      },
    ];
  }
  const out: UrlHost[] = [];
  for (const entry of authority.split(',')) {
    const parsed = parseAuthorityEntry(entry.trim());
    if (typeof parsed === 'string') return parsed;
    out.push(parsed);
  }
  return out;
}

