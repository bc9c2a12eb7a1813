import { createServer, type Server } from 'node:http';
import { expect } from 'chai';
import { Client } from '../../pkg/client/client.ts';
import { Informer } from '../../pkg/client/informer.ts';
import { eventually } from '../support/fleet.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A scripted apiserver for one kind: a list answers at the revision `answer` picks (or a 504,
 * "Too large resource version", as a lagging watch cache does); a watch stays quiet until
 * the client goes. Records when each list came.
 */
async function laggingServer(answer: (q: URLSearchParams) => number | 'Timeout') {
  const lists: number[] = [];
  const srv: Server = createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    if (q.get('watch')) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      return; // quiet until the client aborts
    }
    lists.push(Date.now());
    const a = answer(q);
    if (a === 'Timeout') {
      res.writeHead(504, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Timeout', code: 504, message: 'Too large resource version' }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'TaskList', apiVersion: 'berth.dev/v1', metadata: { resourceVersion: String(a) }, items: [] }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  const close = async () => {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  };
  return { url, lists, close };
}

describe('informer: a relist that answers older than a syncTo wants', function () {
  this.timeout(60_000);

  it('R3-9: backs off (capped exponential) while the server keeps answering older than wanted, and catches up once it can', async () => {
    let current = 100; // the server's latest revision; one NotOlderThan a later one is a 504
    const s = await laggingServer((q) => (q.get('resourceVersion') && Number(q.get('resourceVersion')) > current ? 'Timeout' : current));
    const client = new Client({ server: s.url, token: 'x' });
    const inf = new Informer(client, 'Task');
    inf.start();
    await inf.waitForSync();
    current = 120;
    const ac = new AbortController();
    const p = inf.syncTo(150, ac.signal);
    await sleep(300);
    ac.abort(); // the term that wanted 150 ended; the informer still wants it, but must not spin
    await p;
    const from = s.lists.length;
    await sleep(3000);
    const during = s.lists.length - from;
    // at 100 ms a round (a 504 then a list of the latest) that is ~60 lists in 3 s; backing off, a handful
    expect(during, `lists in 3 s while the server lags (${during})`).to.be.at.most(8);
    const gaps = s.lists.slice(1).map((t, i) => t - s.lists[i]);
    expect(Math.max(...gaps), 'the wait between lists grew').to.be.at.least(700);
    // the server catches up: the informer gets there within the cap (5 s) and a sync to it resolves
    current = 150;
    await eventually(() => inf.resourceVersion === '150', 20_000, 'the informer reached 150');
    await inf.syncTo(150); // resolves at once now
    inf.stop();
    client.close();
    await s.close();
  });
});
