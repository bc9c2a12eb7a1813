import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

// A proxy in front of the apiserver that records every request and can hold or delay some (leadership tests).

/** One request that went through the proxy, and how it ended. */
export interface ProxiedRequest {
  method: string;
  path: string;
  /** when it arrived at the proxy (epoch ms) */
  at: number;
  /** when its answer was complete (undefined while held or streaming) */
  doneAt?: number;
  status?: number;
  /** the resourceVersion of the object a successful write returned */
  resourceVersion?: string;
  /** the answer's body, for writes that are not streamed */
  body?: string;
  /** the request's headers (lower case) */
  headers: Record<string, string | string[] | undefined>;
  held: boolean;
}

export interface HttpProxy {
  url: string;
  requests: ProxiedRequest[];
  /** requests matching `pred` from now on are held (not forwarded, not answered) until `release` */
  hold(pred: (method: string, path: string) => boolean): void;
  /** requests matching `pred` are forwarded only after `ms` */
  delay(pred: (method: string, path: string) => boolean, ms: number): void;
  /** forward the held requests and stop holding */
  release(): void;
  /** streamed answers (watches) of requests matching `pred` stop flowing: what arrives is buffered, nothing is lost */
  pause(pred: (method: string, path: string) => boolean): void;
  /** let the paused streams flow again (what was buffered first) */
  resume(): void;
  close(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of an apiserver that can hold (or delay) chosen requests,
 * e.g. a controller-manager's Lease renewals while everything else goes through, and that
 * records every request with its outcome (for a history of who wrote what, when).
 * Responses are streamed through (watches work).
 */
export async function startHttpProxy(target: string): Promise<HttpProxy> {
  const t = new URL(target);
  const requests: ProxiedRequest[] = [];
  let holdPred: ((m: string, p: string) => boolean) | undefined;
  const delays: Array<{ pred: (m: string, p: string) => boolean; ms: number }> = [];
  const held: Array<() => void> = [];
  let pausePred: ((m: string, p: string) => boolean) | undefined;
  const paused = new Set<{ flush: () => void }>();
  const sockets = new Set<Socket>();
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, rec: ProxiedRequest) => {
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      rec.status = ur.statusCode;
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      const streaming = /[?&]watch=(1|true)/.test(req.url ?? '');
      const chunks: Buffer[] = [];
      const buffered: Buffer[] = [];
      const gate = {
        flush: () => {
          for (const c of buffered.splice(0)) res.write(c);
        },
      };
      ur.on('data', (c: Buffer) => {
        if (!streaming) chunks.push(c);
        if (streaming && pausePred?.(rec.method, rec.path)) {
          buffered.push(c);
          paused.add(gate);
          return;
        }
        gate.flush();
        res.write(c);
      });
      ur.on('end', () => {
        rec.doneAt = Date.now();
        if (!streaming && rec.method !== 'GET') rec.body = Buffer.concat(chunks).toString('utf8');
        if (!streaming && rec.method !== 'GET' && (rec.status ?? 0) < 300) {
          try {
            rec.resourceVersion = JSON.parse(rec.body!)?.metadata?.resourceVersion;
          } catch {
            /* not an object */
          }
        }
        gate.flush();
        res.end();
      });
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    up.end(body);
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0];
      const method = req.method ?? 'GET';
      const rec: ProxiedRequest = { method, path, at: Date.now(), headers: req.headers, held: false };
      requests.push(rec);
      const go = () => forward(req, res, Buffer.concat(chunks), rec);
      if (holdPred?.(method, path)) {
        rec.held = true;
        held.push(go);
        return;
      }
      const d = delays.find((x) => x.pred(method, path));
      if (d) setTimeout(go, d.ms);
      else go();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    hold(pred) {
      holdPred = pred;
    },
    delay(pred, ms) {
      delays.push({ pred, ms });
    },
    release() {
      holdPred = undefined;
      for (const go of held.splice(0)) go();
    },
    pause(pred) {
      pausePred = pred;
    },
    resume() {
      pausePred = undefined;
      for (const g of paused) g.flush();
      paused.clear();
    },
    close() {
      holdPred = undefined;
      held.length = 0;
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
