import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../pkg/store/embedded.ts';
import { openStore } from '../../pkg/store/open.ts';
import { describeStoreConformance } from './conformance.ts';

let dir: string;
let store: EmbeddedStore;

describeStoreConformance(
  'embedded',
  async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-embedded-'));
    store = EmbeddedStore.open(dir);
    return { store };
  },
  async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  },
  { networked: false },
);

describe('embedded store durability', function () {
  this.timeout(60000);
  it('keeps every committed write across kill -9 of the writing process, and reopens', async () => {
    const d = await mkdtemp(join(tmpdir(), 'berth-kill-'));
    try {
      // a child process writes keys as fast as it can and prints each committed key
      const script = `
        import { openStore } from ${JSON.stringify(new URL('../../pkg/store/open.ts', import.meta.url).pathname)};
        const s = await openStore(${JSON.stringify('embedded:' + d)});
        for (let i = 0; ; i++) {
          await s.create('/k/' + String(i).padStart(8, '0'), String(i));
          process.stdout.write(i + '\\n');
        }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let acked = -1;
      let buf = '';
      child.stdout!.on('data', (d) => {
        buf += d;
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) acked = Number(l);
      });
      const deadline = Date.now() + 30000;
      while (acked < 500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(acked).to.be.at.least(500);
      const s = await openStore('embedded:' + d);
      const list = await s.list('/k/');
      // every acknowledged write is there, in order, with nothing missing before it
      expect(list.items.length).to.be.at.least(acked + 1);
      list.items.forEach((kv, i) => expect(kv.value).to.equal(String(i)));
      // and it is writable again, revisions continuing
      const rev = await s.currentRevision();
      const kv = await s.create('/k/after', 'x');
      expect(kv.modRevision).to.equal(rev + 1);
      await s.close();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
