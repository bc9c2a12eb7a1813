/**
 * Test support: a recording HTTPS proxy between one client (a controller-manager) and the
 * load balancer. It terminates TLS with a certificate of the berth CA (so the client still
 * verifies its server against the CA) and opens a new TLS connection upstream for every
 * request, recording method, path, status and time. Watches stream through unchanged. A
 * fault test reads from it which writes a given process made, and when.
 */
import { readFileSync } from 'node:fs';
import { createServer, request as httpsRequest, Agent } from 'node:https';

export interface RecordedRequest {
  method: string;
  path: string;
  /** when the request's headers arrived (ms since epoch) */
  at: number;
  status?: number;
}

export interface RecordingProxy {
  url: string;
  requests: RecordedRequest[];
  /** successful (2xx) requests that change state */
  writesSince(t: number): RecordedRequest[];
  close(): Promise<void>;
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export async function startRecordingProxy(o: { host: string; certFile: string; keyFile: string; upstream: string; caPem: string }): Promise<RecordingProxy> {
  const requests: RecordedRequest[] = [];
  const up = new URL(o.upstream);
  const agent = new Agent({ ca: o.caPem, keepAlive: true, maxSockets: 256 });
  const srv = createServer({ cert: readFileSync(o.certFile), key: readFileSync(o.keyFile) }, (req, res) => {
    const rec: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', at: Date.now() };
    requests.push(rec);
    const fwd = httpsRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host }, agent }, (ures) => {
      rec.status = ures.statusCode;
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      ures.pipe(res);
      res.on('close', () => ures.destroy());
    });
    fwd.on('error', (e) => {
      rec.status = 502;
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' }).end(e.message);
      else res.destroy();
    });
    req.pipe(fwd);
    req.on('aborted', () => fwd.destroy());
  });
  await new Promise<void>((resolve) => srv.listen(0, o.host, () => resolve()));
  const port = (srv.address() as { port: number }).port;
  return {
    url: `https://${o.host}:${port}`,
    requests,
    writesSince: (t) => requests.filter((r) => r.at >= t && WRITES.has(r.method) && r.status !== undefined && r.status >= 200 && r.status < 300),
    async close() {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
      agent.destroy();
    },
  };
}
