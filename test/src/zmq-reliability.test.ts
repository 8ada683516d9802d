/**
 * zmq-direct's delivery promises under the shapes that broke them: a busy server answering a
 * cast and a call packed in one message, refused CURVE clients retrying, acked casts whose
 * server dies while it still holds them, and inputs chosen to exhaust a server's memory.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as zmq from 'zeromq';
import { AuthenticationFailed, Bus, type ConfigInput, type Context } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import { curveKeyPair, FRAME_VERSION, type ZmqDriver } from '@hybridbus/zmq-direct';
import { freshTopic, tempDir } from './util.js';
import { startChild, type ChildServer } from './zmq/children.js';

const buses: Bus[] = [];
const kids: ChildServer[] = [];
after(async () => {
  await Promise.allSettled(buses.map((b) => b.close()));
  await Promise.allSettled(kids.map((k) => k.kill()));
});

const url = (dir: string, extra = ''): string => `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0${extra}`;
const cfg = (u: string): ConfigInput => ({ transports: { default: u } });
const bus = async (u: string): Promise<Bus> => {
  const b = await Bus.create(cfg(u));
  buses.push(b);
  return b;
};
const driver = (b: Bus): ZmqDriver => b.transport('default') as ZmqDriver;

/** A record as the library's client writes it: kind byte, then JSON. */
const record = (kind: 's' | 'c' | 'f' | 'n', body: Record<string, unknown>): string => kind + JSON.stringify(body);
const request = (method: string, args: Record<string, unknown>, uniqueId: string): Record<string, unknown> => ({ method, args, _unique_id: uniqueId });

describe('a busy server answers everything', () => {
  test('an acked cast and a call packed in one message, 20,000 times: every reply and every ack comes back', async () => {
    const dir = tempDir('hb-zmq-rel-');
    const topic = freshTopic();
    const server = await bus(url(dir));
    let casts = 0;
    await server.rpcServer({ topic, server: 's' }, [{ echo: (_c: Context, a: Record<string, unknown>) => a, note: () => void casts++ }]).start();
    const address = await driver(server).address();
    const key = `openstack/${topic}`;

    const dealer = new zmq.Dealer({ linger: 0 });
    dealer.connect(`tcp://${address}`);
    const n = 20_000;
    const replies = new Set<string>();
    const acks = new Set<string>();
    const done = (async () => {
      for await (const [version, ...frames] of dealer) {
        assert.ok(version?.equals(FRAME_VERSION));
        for (const f of frames) {
          for (const r of f.toString().split('\n')) {
            const body = JSON.parse(r.slice(1)) as { i: string };
            if (r[0] === 'r') replies.add(body.i);
            else if (r[0] === 'k') acks.add(body.i);
          }
        }
        if (replies.size === n && acks.size === n) return;
      }
    })();
    for (let i = 0; i < n; i++) {
      const cast = record('s', { i: `a${i}`, k: key, m: request('note', {}, `u-a${i}`) });
      const call = record('c', { i: `c${i}`, k: key, m: request('echo', { i }, `u-c${i}`) });
      await dealer.send([FRAME_VERSION, `${cast}\n${call}`]);
    }
    const deadline = setTimeout(() => dealer.close(), 60_000);
    await done.catch(() => undefined);
    clearTimeout(deadline);
    dealer.close();
    assert.equal(replies.size, n, `replies: ${replies.size} of ${n}`);
    assert.equal(acks.size, n, `acks: ${acks.size} of ${n}`);
    assert.equal(casts, n);
  });
});
