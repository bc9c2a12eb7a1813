import { createServer, connect, type Socket, type Server } from 'node:net';

/** A loopback TCP proxy whose connections can all be cut at once, to test reconnects. */
export interface TcpProxy {
  port: number;
  /** destroy every open connection (new ones are still accepted) */
  cut(): void;
  /** send new connections to another port (a load balancer failing over); existing ones stay */
  setTarget(port: number): void;
  /** cut every connection and refuse new ones until `release()` (the target is unreachable) */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

/**
 * `delayMs`: what the target sends reaches the client that much later, in order (a slow
 * link: an apiserver whose etcd connection lags sees every watch event late).
 */
export async function startTcpProxy(targetPort: number, o: { delayMs?: number } = {}): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let target = targetPort;
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    if (o.delayMs) upstream.on('data', (chunk) => void setTimeout(() => !client.destroyed && client.write(chunk), o.delayMs));
    else upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    setTarget(port: number) {
      target = port;
    },
    hold() {
      refusing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    release() {
      refusing = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
