/**
 * The one rule for showing a URL (or text that may hold URLs: an error message, a JSON value):
 * the password of every `scheme://user:password@host` becomes `user:***`, including `:pw@`
 * (redis://:pw@host) and each `user:pw@host` of oslo's comma-separated host list, and the value
 * of every query option named like a secret (`password`, `sentinelPassword`, `curve_secret_key`,
 * `token`) becomes `***`. Everything else is left as it was, so the message still says which
 * host, user and options it is about. Config errors, `check-config`, the demo, the CLI's errors,
 * the bench and the drivers' errors all show URLs through it.
 */

// `scheme://` and its authority: up to the path, query, fragment, whitespace, a quote or a backslash
// (a JSON-escaped quote), so a URL inside a JSON string inside a message is found too.
const AUTHORITY = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#"'`\\]*)/gi;
// A query option whose name says it is a secret.
const SECRET_OPTION = /([?&;][\w.-]*?(?:password|passwd|secret|token)[\w.-]*=)[^&#\s"'`\\]*/gi;

/** A placeholder in a form shown as help ("<password>", "..."), not a secret: left as it is. */
const PLACEHOLDER = /^(<[\w-]*>|\.\.\.|\*\*\*)$/;

/** One host entry's userinfo: up to its last '@' (a password with a raw '@' is still hidden). */
const maskEntry = (entry: string): string =>
  entry.replace(/^([^:@]*):(.*)@/, (all, user: string, password: string) => (PLACEHOLDER.test(password) ? all : `${user}:***@`));

/**
 * `text` with the passwords of the URLs in it masked. Hosts are split on ',' as oslo splits its
 * host list, so a password must be percent-encoded (as a URL requires anyway) to contain one.
 */
export function maskSecrets(text: string): string {
  return text
    .replace(AUTHORITY, (_all, scheme: string, authority: string) => scheme + authority.split(',').map(maskEntry).join(','))
    .replace(SECRET_OPTION, (all, name: string) => (PLACEHOLDER.test(all.slice(name.length)) ? all : `${name}***`));
}

/** A URL as it may be shown: `maskSecrets` of one URL. */
export const maskUrl = (url: string): string => maskSecrets(url);
