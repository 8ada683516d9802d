/**
 * HB_SCALE_PROFILE_DIR: a CPU profile of a scale child from its first measured step until it
 * exits (start-up left out), written there as <pid>.cpuprofile: where a fanout's time goes, on
 * the sending and on the receiving side.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';

const dir = process.env['HB_SCALE_PROFILE_DIR'];
let session: Promise<Session> | undefined;

/** Start profiling (once; nothing without HB_SCALE_PROFILE_DIR). */
export function startProfile(): void {
  session ??= dir
    ? (async () => {
        const s = new Session();
        s.connect();
        await s.post('Profiler.enable');
        await s.post('Profiler.start');
        return s;
      })()
    : undefined;
}

/** Write the profile, if one was started. */
export async function writeProfile(): Promise<void> {
  if (!session || !dir) return;
  const { profile } = await (await session).post('Profiler.stop');
  writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(profile));
}
