import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * An HTTP proxy for fault injection between a component and a real server (the apiserver,
 * or dockerd's unix socket): every request is forwarded unchanged, streams included, unless a
 * rule answers it itself (a refusal), holds it back first (a slow server), answers late
 * after forwarding (a call that times out on the client but happens on the server), or never
 * answers (a hung call).
 */
export type ProxyDecision =
  | undefined
  | { status: number; body?: unknown }
  /** forward it only after this long */
  | { delayMs: number }
  /** forward it at once, but hold the answer back this long */
  | { delayResponseMs: number }
  /** never forward it, never answer (a call that hangs) */
  | { hang: true };

export interface HttpProxy {
  /** http://127.0.0.1:PORT, or unix:///path for a socket proxy */
  url: string;
  /** requests seen, as "METHOD /path" */
  seen: string[];
  setRule(rule: (req: IncomingMessage) => ProxyDecision): void;
  close(): Promise<void>;
}

export async function startHttpProxy(target: { port: number } | { socketPath: string }, o: { listenSocket?: boolean } = {}): Promise<HttpProxy> {
  let rule: (req: IncomingMessage) => ProxyDecision = () => undefined;
  const seen: string[] = [];
  const open = new Set<{ destroy(): void }>();
  const forward = (req: IncomingMessage, res: ServerResponse, delayResponseMs = 0) => {
    const up = request({ ...target, ...('port' in target ? { host: '127.0.0.1' } : {}), method: req.method, path: req.url, headers: req.headers }, (ur) => {
      const send = () => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      };
      if (delayResponseMs) setTimeout(send, delayResponseMs);
      else send();
    });
    open.add(up);
    up.on('close', () => open.delete(up));
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  };
  const server: Server = createServer((req, res) => {
    open.add(res.socket!);
    seen.push(`${req.method} ${req.url}`);
    const d = rule(req);
    if (d && 'status' in d) {
      req.resume();
      res.writeHead(d.status, { 'Content-Type': 'application/json' }).end(JSON.stringify(d.body ?? { kind: 'Status', status: 'Failure', code: d.status, reason: 'InjectedFault', message: 'refused by the test proxy' }));
      return;
    }
    if (d && 'hang' in d) {
      req.resume();
      return;
    }
    if (d && 'delayMs' in d) {
      setTimeout(() => forward(req, res), d.delayMs);
      return;
    }
    forward(req, res, d && 'delayResponseMs' in d ? d.delayResponseMs : 0);
  });
  let dir: string | undefined;
  let url: string;
  if (o.listenSocket) {
    dir = mkdtempSync(join(tmpdir(), 'berth-proxy-'));
    const path = join(dir, 'docker.sock');
    await new Promise<void>((r) => server.listen(path, r));
    url = `unix://${path}`;
  } else {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }
  return {
    url,
    seen,
    setRule(r) {
      rule = r;
    },
    async close() {
      for (const s of open) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
