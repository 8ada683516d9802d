/**
 * LocalNameService: the embedded default for a single host, no server needed.
 *
 * The registry is a directory with one small JSON file per (key, record), named
 * `<encoded key>@<hash of the record>.json`. Registering writes it atomically (temp file + rename);
 * the owner refreshes its mtime every ttl/3; a file whose mtime is older than the TTL belongs to a
 * dead process and is ignored, and deleted by whoever notices (each instance also sweeps every
 * ttl/3, so expiry is reported as a change too). Change notification: instances in the same process
 * on the same directory hear each other at once; other processes are heard through fs.watch (create,
 * rename and delete only: a refresh is not a change), or by polling the directory if fs.watch is
 * unavailable. A change may be reported more than once (in-process and again by fs.watch).
 *
 * The default directory (in the shared temp dir) is removed when the last instance of a process
 * closes and it is empty, so that a run leaves nothing behind; another process still using it
 * creates it again before its next write, reads a missing directory as "no records", and its
 * refresh tick re-watches a directory that was removed and created again.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { ConfigError } from '@hybridbus/core';

import { encodedKeyOf, encodeKey, fileNameOf } from './local-files.js';
import { BaseNameService, errorMessage, toHostRecord, type Registration, type SeenRecord } from './base.js';
import type { NameServiceOptions } from './types.js';

export interface LocalNameServiceOptions extends Partial<NameServiceOptions> {
  /** Registry directory (created if missing); default defaultLocalDir(). */
  readonly dir?: string | undefined;
  /** false: poll the directory instead of using fs.watch (the fallback anyway when fs.watch fails). */
  readonly watch?: boolean | undefined;
  /** Directory poll interval when polling, ms (default 500). */
  readonly pollMs?: number | undefined;
}

/** `<tmpdir>/hybridbus-ns-<uid>`: private to the user, shared by all of the user's processes. */
export function defaultLocalDir(): string {
  const uid = process.getuid?.() ?? os.userInfo().username;
  return path.join(os.tmpdir(), `hybridbus-ns-${uid}`);
}

// Same-process instances on one directory, by real path: they notify each other directly.
const sameProcess = new Map<string, Set<(key: string) => void>>();

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

export class LocalNameService extends BaseNameService {
  readonly kind = 'local';
  readonly dir: string;
  private readonly dirId: string;
  /** Whether dir is the default one (removed on close when empty), and so checked for ownership. */
  private readonly isDefaultDir: boolean;
  /** The inode fs.watch watches: a directory removed and created again needs a new watch. */
  private watchedIno: number | undefined;
  private readonly pollMs: number;
  private readonly timer: NodeJS.Timeout;
  private watcher: fs.FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polledNames: Set<string> | undefined;
  private polling = false;
  private readonly onSameProcessChange = (key: string): void => this.changed(key);

  constructor(options: LocalNameServiceOptions = {}) {
    super(options);
    this.dir = path.resolve(options.dir ?? defaultLocalDir());
    this.pollMs = options.pollMs ?? 500;
    this.isDefaultDir = options.dir === undefined;
    prepareDir(this.dir, this.isDefaultDir);
    this.dirId = fs.realpathSync(this.dir);

    let peers = sameProcess.get(this.dirId);
    if (!peers) sameProcess.set(this.dirId, (peers = new Set()));
    peers.add(this.onSameProcessChange);

    if (options.watch !== false) this.watch();
    else this.startPolling();
    this.timer = setInterval(() => void this.tick(), Math.max(10, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  protected async fetch(key: string): Promise<readonly SeenRecord[]> {
    const encoded = encodeKey(key);
    const names = (await this.names()).filter((n) => encodedKeyOf(n) === encoded);
    const read = await Promise.all(names.map((n) => this.readRecordFile(n)));
    return read.filter((r) => r !== undefined && r.key === key).map((r) => r!.seen);
  }

  protected async fetchAll(): Promise<ReadonlyMap<string, readonly SeenRecord[]>> {
    const names = (await this.names()).filter((n) => encodedKeyOf(n) !== undefined);
    const all = new Map<string, SeenRecord[]>();
    for (const r of await Promise.all(names.map((n) => this.readRecordFile(n)))) {
      if (!r) continue;
      const list = all.get(r.key);
      if (list) list.push(r.seen);
      else all.set(r.key, [r.seen]);
    }
    return all;
  }

  protected write(regs: readonly Registration[]): Promise<void> {
    return this.serial(async () => {
      for (const reg of regs) {
        await this.writeRecordFile(reg);
        this.announce(reg.key);
      }
    });
  }

  protected remove(regs: readonly Registration[]): Promise<void> {
    return this.serial(async () => {
      for (const reg of regs) {
        try {
          await fsp.unlink(path.join(this.dir, fileNameOf(reg.key, reg.member)));
        } catch (err) {
          if (!isMissing(err)) throw err;
        }
        this.announce(reg.key);
      }
    });
  }

  protected async shutdown(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.pollTimer);
    this.watcher?.close();
    this.watcher = undefined;
    const peers = sameProcess.get(this.dirId);
    peers?.delete(this.onSameProcessChange);
    if (peers?.size === 0) sameProcess.delete(this.dirId);
    await this.drained();
    // The last user of the default directory in this process leaves nothing behind: rmdir fails
    // (and is ignored) while any record or temp file of any process is in it.
    if (this.isDefaultDir && !sameProcess.has(this.dirId)) await fsp.rmdir(this.dir).catch(() => undefined);
  }

  /** The directory's entries; a directory removed by another process's close() holds no records. */
  private async names(): Promise<string[]> {
    try {
      return await fsp.readdir(this.dir);
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
  }

  // -- internals -----------------------------------------------------------

  /** Tells the instances of this process at once; other processes hear it from the file system. */
  private announce(key: string): void {
    for (const fn of [...(sameProcess.get(this.dirId) ?? [])]) fn(key);
  }

  private async writeRecordFile(reg: Registration): Promise<void> {
    const tmp = path.join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const body = `${JSON.stringify({ key: reg.key, record: reg.record })}\n`;
    try {
      try {
        await fsp.writeFile(tmp, body);
      } catch (err) {
        if (!isMissing(err)) throw err;
        // Removed by another process's close() (it was empty then): create it again, checked as at start.
        prepareDir(this.dir, this.isDefaultDir);
        await fsp.writeFile(tmp, body);
      }
      // Our clock, not the file system's coarser one: forget() compares registration times with Date.now().
      const now = Date.now() / 1000;
      await fsp.utimes(tmp, now, now);
      await fsp.rename(tmp, path.join(this.dir, fileNameOf(reg.key, reg.member)));
    } catch (err) {
      await fsp.unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  private async readRecordFile(name: string): Promise<{ key: string; seen: SeenRecord } | undefined> {
    const file = path.join(this.dir, name);
    try {
      const st = await fsp.stat(file);
      if (Date.now() - st.mtimeMs > this.ttlMs) {
        await this.prune(name);
        return undefined;
      }
      const parsed: unknown = JSON.parse(await fsp.readFile(file, 'utf8'));
      const { key, record } = (parsed ?? {}) as { key?: unknown; record?: unknown };
      const checked = toHostRecord(record);
      if (typeof key !== 'string' || typeof checked === 'string') return undefined;
      return { key, seen: { record: checked, refreshedAt: Math.round(st.mtimeMs) } };
    } catch (err) {
      if (!isMissing(err)) this.logger.debug({ err: errorMessage(err), file }, 'name service: unreadable record file skipped');
      return undefined;
    }
  }

  /** Deletes an expired record file, unless its owner refreshed it meanwhile. */
  private async prune(name: string): Promise<void> {
    const file = path.join(this.dir, name);
    try {
      const st = await fsp.stat(file);
      if (Date.now() - st.mtimeMs <= this.ttlMs) return;
      await fsp.unlink(file);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    const key = this.keyOfName(name);
    if (key !== undefined) this.announce(key);
  }

  /** Every ttl/3: refresh our records (rewriting any someone pruned), then sweep out expired ones. */
  private tick(): Promise<void> {
    return this.serial(async () => {
      if (this.closed) return;
      const now = Date.now() / 1000;
      try {
        for (const reg of this.allRegistrations()) {
          const file = path.join(this.dir, fileNameOf(reg.key, reg.member));
          try {
            await fsp.utimes(file, now, now);
          } catch (err) {
            if (!isMissing(err)) throw err;
            if (!this.isRegistered(reg)) continue; // unregistered while we were busy
            await this.writeRecordFile(reg);
            this.announce(reg.key);
          }
        }
        await this.sweep();
        await this.rewatchIfReplaced();
        this.noteBackendOk();
      } catch (err) {
        this.noteBackendError(err, 'refresh');
      }
    });
  }

  /** A watched directory that was removed (and maybe created again) is watched anew. */
  private async rewatchIfReplaced(): Promise<void> {
    if (!this.watcher || this.closed) return;
    const st = await fsp.stat(this.dir).catch(() => undefined);
    if (st === undefined || st.ino === this.watchedIno) return;
    this.watcher.close();
    this.watcher = undefined;
    this.watch();
    this.changedAll(); // what happened in between was not heard
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const name of await this.names()) {
      if (encodedKeyOf(name) !== undefined) {
        const st = await fsp.stat(path.join(this.dir, name)).catch(() => undefined);
        if (st && now - st.mtimeMs > this.ttlMs) await this.prune(name);
      } else if (name.startsWith('.tmp-')) {
        // left behind by a writer that died between write and rename
        const file = path.join(this.dir, name);
        const st = await fsp.stat(file).catch(() => undefined);
        if (st && now - st.mtimeMs > this.ttlMs) await fsp.unlink(file).catch(() => undefined);
      }
    }
  }

  /** The key a record file belongs to; hashed (very long) keys are recognised only if this instance knows them. */
  private keyOfName(name: string): string | undefined {
    const encoded = encodedKeyOf(name);
    if (encoded === undefined) return undefined;
    if (!encoded.startsWith('=')) {
      try {
        return decodeURIComponent(encoded);
      } catch {
        return undefined;
      }
    }
    for (const key of this.knownKeys()) if (encodeKey(key) === encoded) return key;
    return undefined;
  }

  private onFileEvent(name: string | null): void {
    if (name === null) return this.changedAll();
    const key = this.keyOfName(name);
    if (key !== undefined) this.changed(key);
  }

  private watch(): void {
    try {
      const watcher = fs.watch(this.dir, { persistent: false }, (event, name) => {
        // 'change' is a refresh (mtime) or a temp file being written; records appear and go by rename/unlink.
        if (event === 'rename') this.onFileEvent(name === null ? null : String(name));
      });
      watcher.on('error', (err) => {
        this.logger.warn({ err: errorMessage(err), dir: this.dir }, 'name service: fs.watch failed; polling the directory instead');
        watcher.close();
        if (this.watcher === watcher) this.watcher = undefined;
        if (!this.closed) this.startPolling();
      });
      this.watcher = watcher;
      this.watchedIno = fs.statSync(this.dir, { throwIfNoEntry: false })?.ino;
    } catch (err) {
      this.logger.warn({ err: errorMessage(err), dir: this.dir }, 'name service: fs.watch unavailable; polling the directory instead');
      this.startPolling();
    }
  }

  private startPolling(): void {
    if (this.pollTimer) return;
    void this.poll();
    this.pollTimer = setInterval(() => void this.poll(), this.pollMs);
    this.pollTimer.unref();
  }

  /** Reports record files that appeared or disappeared since the last poll. */
  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      const names = new Set((await this.names()).filter((n) => encodedKeyOf(n) !== undefined));
      const before = this.polledNames;
      this.polledNames = names;
      if (!before) return;
      for (const n of names) if (!before.has(n)) this.onFileEvent(n);
      for (const n of before) if (!names.has(n)) this.onFileEvent(n);
    } catch (err) {
      this.logger.debug({ err: errorMessage(err), dir: this.dir }, 'name service: directory poll failed');
    } finally {
      this.polling = false;
    }
  }
}

/** Creates the registry directory; the default one (in a shared tmp dir) must also be ours and private. */
function prepareDir(dir: string, isDefault: boolean): void {
  const fail = (why: string): never => {
    throw new ConfigError([
      `matchmaker: local registry directory ${JSON.stringify(dir)} ${why}; expected a directory this user can write` +
        (isDefault ? ' (and, for the default one, owned by this user and not writable by others), or local:/some/other/dir' : ''),
    ]);
  };
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    fail(`cannot be created (${errorMessage(err)})`);
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) fail('is not a directory');
  if (isDefault) {
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) fail(`is owned by uid ${st.uid}, not ${uid}`);
    if ((st.mode & 0o022) !== 0) fail(`is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`);
  }
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    fail(`is not usable (${errorMessage(err)})`);
  }
}
