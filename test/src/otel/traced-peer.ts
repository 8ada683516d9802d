/**
 * A traced hybridbus process for otel-trace.test.ts: the OTel SDK registered, instrumentTracing()
 * on, and on one transport (argv[2] JSON { url, topic, inner, notifyTopic }):
 * - an RPC server on `topic` (server "peer1") with add, fail (a ValueError), nested (calls `add`
 *   on `inner`, served here too) and tick (a cast: reported to the parent);
 * - a notification listener on `notifyTopic` (info: reported to the parent).
 * Every span it records goes to the parent over IPC as { kind: 'span', span }, as it ends;
 * { kind: 'ready' } once everything listens; { kind: 'exit' } from the parent stops it.
 */
import { Bus, remoteError, type Context } from 'hybridbus';
import { instrumentTracing } from '@hybridbus/observability';
import { RecordingExporter, registerSdk } from './sdk.js';
import { recordingLogger } from '../util.js';

const { url, topic, inner, notifyTopic } = JSON.parse(process.argv[2] as string) as { url: string; topic: string; inner: string; notifyTopic: string };
const send = (m: unknown): void => void process.send?.(m);
const provider = registerSdk(new RecordingExporter((span) => send({ kind: 'span', span }), 'peer'));
instrumentTracing();

const bus = await Bus.create({ transports: { default: url } }, { logger: recordingLogger() });
const innerClient = bus.rpcClient({ topic: inner }, { timeout: 30_000 });
const add = (_c: Context, a: { a: number; b: number }): number => a.a + a.b;
const servers = [
  bus.rpcServer({ topic, server: 'peer1' }, [
    {
      add,
      fail: () => {
        throw remoteError('ValueError', 'boom', { module: 'builtins' });
      },
      // Made while the server span is current: the nested call's span is its child.
      nested: (c: Context, a: { a: number; b: number }) => innerClient.call<number>(c, 'add', a),
      tick: (_c: Context, a: { n: number }) => send({ kind: 'tick', n: a.n }),
    },
  ]),
  bus.rpcServer({ topic: inner, server: 'peer1' }, [{ add }]),
];
for (const s of servers) await s.start();
const listener = bus.notificationListener([{ topic: notifyTopic }], [{ info: (_c: Context, _p: string, eventType: string) => send({ kind: 'notified', eventType }) }]);
await listener.start();
send({ kind: 'ready' });

process.on('message', (m: { kind?: string }) => {
  if (m.kind !== 'exit') return;
  void (async () => {
    await listener.stop();
    for (const s of servers) await s.stop();
    await bus.close();
    await provider.shutdown();
    process.exit(0);
  })();
});
