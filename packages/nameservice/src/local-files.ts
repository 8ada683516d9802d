/**
 * The local name service's file names: `<encoded key>@<hash of the record>.json`, reversible
 * for the key and safe on any file system (see local.ts).
 */
import { createHash } from 'node:crypto';

const SUFFIX = '.json';
const MAX_ENCODED_KEY = 160; // keeps file names well under the usual 255-byte limit

/**
 * The key as a file-name part: [A-Za-z0-9_-] kept, every other UTF-8 byte as %XX (so '.', '@' and
 * '/' never appear and decodeURIComponent reverses it); very long keys become "=" + a hash.
 */
export function encodeKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out.length <= MAX_ENCODED_KEY ? out : `=${sha256(key).slice(0, 40)}`;
}

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

export const fileNameOf = (key: string, member: string): string => `${encodeKey(key)}@${sha256(member).slice(0, 24)}${SUFFIX}`;

/** The encoded-key part of a record file name, or undefined for anything else (temp files, strays). */
export function encodedKeyOf(name: string): string | undefined {
  if (name.startsWith('.') || !name.endsWith(SUFFIX)) return undefined;
  const at = name.lastIndexOf('@');
  return at > 0 ? name.slice(0, at) : undefined;
}
