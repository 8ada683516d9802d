/**
 * A TCP proxy in front of a broker that a test can stall (what the broker sends stops reaching
 * the client, as on a dying link) and cut (every connection through it is dropped).
 */
import net from 'node:net';

export class CuttableProxy {
  private readonly open = new Set<net.Socket>();
  private readonly server: net.Server;
  private stalled = false;

  constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      client.on('data', (b) => upstream.write(b));
      upstream.on('data', (b) => void (this.stalled || client.write(b)));
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        this.open.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => (this.open.delete(a), b.destroy()));
      }
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  /** Stop passing the broker's bytes on (they are dropped, not held). */
  stall(): void {
    this.stalled = true;
  }

  /** Drop every connection; new ones are forwarded again. */
  cut(): void {
    this.stalled = false;
    for (const s of this.open) s.destroy();
  }

  close(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
