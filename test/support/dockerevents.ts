/**
 * Test support: a host's Docker events as the test sees them (its own stream on the host's
 * dockerd), to act at the moment something happens (kill the agent the instant its first
 * container is created), and cheap container events in bulk (no berth labels) to overflow
 * what Docker replays to a reconnecting subscriber (its last 256 events): a container sent
 * SIGWINCH, which a `sleep` as PID 1 ignores, one `kill` event a signal.
 */
import type Docker from 'dockerode';

export interface DockerEvent {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
}

export interface EventWatch {
  /** resolves with the first event (seen since the watch opened) that matches */
  next(match: (e: DockerEvent) => boolean, timeoutMs?: number, what?: string): Promise<DockerEvent>;
  seen: DockerEvent[];
  close(): void;
}

export async function watchEvents(docker: Docker, filters: Record<string, string[]> = { type: ['container'] }): Promise<EventWatch> {
  const stream = (await docker.getEvents({ filters } as never)) as unknown as NodeJS.ReadableStream & { destroy(): void };
  const seen: DockerEvent[] = [];
  let waiters: Array<{ match: (e: DockerEvent) => boolean; resolve: (e: DockerEvent) => void }> = [];
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!line) continue;
      let e: DockerEvent;
      try {
        e = JSON.parse(line) as DockerEvent;
      } catch {
        continue;
      }
      seen.push(e);
      const hit = waiters.filter((w) => w.match(e));
      waiters = waiters.filter((w) => !hit.includes(w));
      for (const w of hit) w.resolve(e);
    }
  });
  stream.on('error', () => undefined);
  return {
    seen,
    next(match, timeoutMs = 120_000, what = 'a Docker event') {
      const old = seen.find(match);
      if (old) return Promise.resolve(old);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
    close() {
      stream.destroy();
    },
  };
}

/**
 * Makes at least `events` container events on a dockerd (throw-away busybox containers sent
 * SIGWINCH), `parallel` containers at a time. Resolves with the number made.
 */
export async function containerNoise(docker: Docker, events: number, parallel = 3): Promise<number> {
  let made = 0;
  const one = async (rounds: number) => {
    const c = await docker.createContainer({ Image: 'busybox', Cmd: ['sleep', '3600'], Labels: { 'test.berth.dev/noise': 'true' }, HostConfig: { AutoRemove: false } });
    made++; // create
    await c.start();
    made++; // start
    for (let i = 0; i < rounds; i++) {
      await c.kill({ signal: 'SIGWINCH' });
      made++;
    }
    await c.remove({ force: true });
    made += 3; // kill, die, destroy
  };
  const rounds = Math.ceil(Math.max(0, events / parallel - 5));
  await Promise.all(Array.from({ length: parallel }, () => one(rounds)));
  return made;
}
