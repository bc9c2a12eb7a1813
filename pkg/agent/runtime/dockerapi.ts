/**
 * The thin layer of Docker calls (the ECS agent's agent/dockerclient/dockerapi): every call
 * has a deadline (ECS's per-call timeouts, agent/dockerclient/timeout.go), failures come back
 * as RuntimeErrors named as ECS names them, with `uncertain` set when the call may have
 * happened anyway (review D5); stops retry with backoff (1 s .. 5 s, x1.3, 5 times)
 * and pulls retry with backoff (1.1 s .. 5 s, x2, 5 times) under an inactivity timeout
 * (ECS_IMAGE_PULL_INACTIVITY_TIMEOUT) and an overall one (ECS_IMAGE_PULL_TIMEOUT) (D10).
 *
 * Events: ONE stream per DockerApi, opened once however many subscribe (the open is
 * single-flight), on a client of its own without any inactivity timeout (a quiet stream is not a dead one), filtered
 * to the ECS agent's allowlist of container events; reopened with backoff on EOF or error
 * with `since` the last event, and every (re)connect emits a `resync` so subscribers re-list
 * (Docker keeps only 256 past events). close() ends it for good (D8).
 */
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { RuntimeError } from '../../errors/errors.ts';
import { silentLogger } from '../../log/log.ts';
import { Backoff, PULL_ATTEMPTS, PULL_BACKOFF, retry, STOP_ATTEMPTS, STOP_BACKOFF, type BackoffOptions } from '../backoff.ts';
import type { RegistryAuth, RuntimeEvent } from './runtime.ts';
import { EVENT_ALLOWLIST, imageRef, parseEventLine, type DockerInspect } from './translate.ts';

/** Per-call deadlines (ms). Defaults: the ECS agent's. */
export interface DockerTimeouts {
  ping: number;
  version: number;
  inspect: number;
  list: number;
  /** ECS_CONTAINER_CREATE_TIMEOUT */
  create: number;
  /** ECS_CONTAINER_START_TIMEOUT */
  start: number;
  /** added to the stop's own grace period (ECS stopContainerTimeoutBuffer) */
  stopBuffer: number;
  remove: number;
  volume: number;
  network: number;
  image: number;
  /** loading the namespace image (ECS LoadImageTimeout) */
  load: number;
  /** waiting for a helper container to finish */
  wait: number;
  /** ECS_IMAGE_PULL_TIMEOUT */
  pull: number;
  /** ECS_IMAGE_PULL_INACTIVITY_TIMEOUT */
  pullInactivity: number;
}

export const ECS_TIMEOUTS: DockerTimeouts = {
  ping: 5_000,
  version: 10_000,
  inspect: 30_000,
  list: 10 * 60_000,
  create: 4 * 60_000,
  start: 3 * 60_000,
  stopBuffer: 2 * 60_000,
  remove: 5 * 60_000,
  volume: 5 * 60_000,
  network: 5 * 60_000,
  image: 3 * 60_000,
  load: 2 * 60_000,
  wait: 60_000,
  pull: 2 * 3600_000,
  pullInactivity: 60_000,
};

export interface DockerApiOptions {
  /** DOCKER_HOST */
  host: string;
  timeouts?: Partial<DockerTimeouts>;
  logger?: Logger;
  stopBackoff?: BackoffOptions;
  stopAttempts?: number;
  pullBackoff?: BackoffOptions;
  pullAttempts?: number;
  /** event-stream reconnect backoff (default 500 ms .. 30 s) */
  reconnect?: BackoffOptions;
  /** server-side event filter by label, e.g. the cluster's */
  eventLabels?: string[];
}

export function dockerOpts(host: string): Docker.DockerOptions {
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host.startsWith('/')) return { socketPath: host };
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port || 2375), protocol: 'http' };
}

type DockerErr = Error & { statusCode?: number; code?: string; name: string; json?: { message?: string } };

const UNCERTAIN_CODES = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNABORTED']);

/** Options with an abort signal: dockerode reads `abortSignal` from any options object (its types do not say so). */
const signed = <T extends object>(o: T, abortSignal: AbortSignal): T => ({ ...o, abortSignal });

/** Docker's own message, not dockerode's "(HTTP code 500) server error - " prefix. */
function messageOf(e: DockerErr): string {
  return e.json?.message ?? e.message.replace(/^\(HTTP code \d+\) [^-]+- /, '');
}

export class DockerApi {
  readonly docker: Docker;
  /** a separate client for long streams (events, followed logs) */
  readonly streamDocker: Docker;
  readonly timeouts: DockerTimeouts;
  private readonly log: Logger;
  private readonly emitter = new EventEmitter();
  private stream?: Readable;
  private opening?: Promise<void>;
  private streamAbort?: AbortController;
  private closed = false;
  private lastEventNano = 0;
  private readonly reconnect: Backoff;
  private reconnectTimer?: NodeJS.Timeout;
  /** streams opened (tests prove there is one) */
  streamsOpened = 0;

  constructor(private readonly o: DockerApiOptions) {
    this.docker = new Docker(dockerOpts(o.host));
    this.streamDocker = new Docker(dockerOpts(o.host));
    this.timeouts = { ...ECS_TIMEOUTS, ...o.timeouts };
    this.log = (o.logger ?? silentLogger()).child({ component: 'dockerapi' });
    this.emitter.setMaxListeners(0);
    this.reconnect = new Backoff(o.reconnect ?? { minMs: 500, maxMs: 30_000, multiplier: 2, jitter: 0.2 });
    this.traced = this.log.isLevelEnabled('debug');
  }

  /** debug logging on: every call logs its duration */
  private readonly traced: boolean;

  /**
   * Run one call under a deadline. An abort past the deadline is a DockerTimeoutError (uncertain);
   * a dropped connection is uncertain too; Docker's own answers keep their status code.
   */
  async call<T>(what: string, errorName: string, ms: number, fn: (signal: AbortSignal) => Promise<T>, subject?: { kind: string; name: string }): Promise<T> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, ms);
    timer.unref?.();
    const late = () => new RuntimeError('DockerTimeoutError', `${what}: no answer from Docker within ${ms} ms`, { uncertain: true, ...subject });
    const deadline = new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(late()), { once: true }));
    deadline.catch(() => undefined);
    const t0 = this.traced ? performance.now() : 0;
    try {
      // calls without abort support still end at the deadline (the request is left to finish)
      return await Promise.race([fn(ac.signal), deadline]);
    } catch (e) {
      if (e instanceof RuntimeError) throw e;
      const err = e as DockerErr;
      if (timedOut || err.name === 'AbortError') throw late();
      const uncertain = err.code !== undefined && UNCERTAIN_CODES.has(err.code);
      throw new RuntimeError(errorName, `${what}: ${messageOf(err)}`, { statusCode: err.statusCode, uncertain, ...subject });
    } finally {
      clearTimeout(timer);
      // the start-path profile (bench:docker --profile) reads these
      if (this.traced) this.log.debug({ call: errorName.replace(/^Cannot|Error$/g, ''), what, ms: Math.round((performance.now() - t0) * 10) / 10 }, 'docker call');
    }
  }

  /** A plain GET with an abort signal (dockerode's types offer none for ping, version, info). */
  private get<T>(path: string, abortSignal: AbortSignal): Promise<T> {
    return new Promise((resolve, reject) =>
      this.docker.modem.dial({ path, method: 'GET', abortSignal, statusCodes: { 200: true, 500: 'server error' } }, (err, data) =>
        err ? reject(err) : resolve(data as T),
      ),
    );
  }

  async ping(): Promise<boolean> {
    try {
      await this.call('ping', 'CannotPingDockerError', this.timeouts.ping, (abortSignal) => this.get('/_ping', abortSignal));
      return true;
    } catch {
      return false;
    }
  }

  version(): Promise<{ Version?: string; ApiVersion?: string }> {
    return this.call('version', 'CannotGetDockerVersionError', this.timeouts.version, (abortSignal) => this.get('/version', abortSignal));
  }

  info(): Promise<{ CgroupDriver?: string; CgroupVersion?: string; OperatingSystem?: string }> {
    return this.call('info', 'CannotGetDockerInfoError', this.timeouts.version, (abortSignal) => this.get('/info', abortSignal));
  }

  /** undefined when Docker has no such container */
  async inspectContainer(id: string): Promise<DockerInspect | undefined> {
    return absentOn404(this.call(
      `inspect ${id}`,
      'CannotInspectContainerError',
      this.timeouts.inspect,
      (abortSignal) => this.docker.getContainer(id).inspect({ abortSignal }),
      { kind: 'Container', name: id },
    ));
  }

  listContainers(filters: Record<string, string[]>): Promise<Docker.ContainerInfo[]> {
    return this.call(
      'list containers',
      'CannotListContainersError',
      this.timeouts.list,
      (abortSignal) => this.docker.listContainers({ all: true, filters, abortSignal }),
    );
  }

  /** Create; 'exists' when the name is taken (the idempotency check: reconcile by name). */
  async createContainer(body: Docker.ContainerCreateOptions): Promise<{ id?: string; exists: boolean }> {
    try {
      const c = await this.call(
        `create ${body.name ?? ''}`,
        'CannotCreateContainerError',
        this.timeouts.create,
        (abortSignal) => this.docker.createContainer(signed(body, abortSignal)),
        { kind: 'Container', name: body.name ?? '' },
      );
      return { id: c.id, exists: false };
    } catch (e) {
      if (e instanceof RuntimeError && e.statusCode === 409) return { exists: true };
      throw e;
    }
  }

  async startContainer(id: string): Promise<void> {
    try {
      await this.call(
        `start ${id}`,
        'CannotStartContainerError',
        this.timeouts.start,
        (abortSignal) => this.docker.getContainer(id).start({ abortSignal }),
        { kind: 'Container', name: id },
      );
    } catch (e) {
      if (e instanceof RuntimeError && e.statusCode === 304) return;
      throw e;
    }
  }

  /**
   * Stop with a grace period; the call's deadline is the grace period plus ECS's buffer.
   * Failures are retried with backoff (ECS stopDockerContainer: every CannotStopContainerError
   * but "no such container" is retriable); 304 and 404 are success.
   */
  async stopContainer(id: string, graceMs: number): Promise<void> {
    const t = Math.max(0, Math.ceil(graceMs / 1000));
    await retry(
      async () => {
        try {
          await this.call(
            `stop ${id}`,
            'CannotStopContainerError',
            t * 1000 + this.timeouts.stopBuffer,
            (abortSignal) => this.docker.getContainer(id).stop({ t, abortSignal }),
            { kind: 'Container', name: id },
          );
        } catch (e) {
          if (e instanceof RuntimeError && (e.statusCode === 304 || e.statusCode === 404)) return;
          throw e;
        }
      },
      {
        attempts: this.o.stopAttempts ?? STOP_ATTEMPTS,
        backoff: this.o.stopBackoff ?? STOP_BACKOFF,
        retryable: (e) => e instanceof RuntimeError,
        onRetry: (e, n, ms) => this.log.warn({ container: id, attempt: n, retryInMs: ms, err: (e as Error).message }, 'error stopping container, retrying'),
      },
    );
  }

  /** Force-remove with its anonymous volumes (ECS RemoveVolumes: true); gone already is success. */
  async removeContainer(id: string): Promise<void> {
    try {
      await this.call(
        `remove ${id}`,
        'CannotRemoveContainerError',
        this.timeouts.remove,
        (abortSignal) => this.docker.getContainer(id).remove({ force: true, v: true, abortSignal }),
        { kind: 'Container', name: id },
      );
    } catch (e) {
      if (e instanceof RuntimeError && e.statusCode === 404) return;
      if (e instanceof RuntimeError && e.statusCode === 409 && /already in progress/i.test(e.message)) return;
      throw e;
    }
  }

  /** Wait for a container to stop running; its exit code. */
  async waitContainer(id: string, ms = this.timeouts.wait): Promise<number> {
    const r = await this.call(
      `wait ${id}`,
      'CannotWaitContainerError',
      ms,
      (abortSignal) => this.docker.getContainer(id).wait({ condition: 'not-running', abortSignal }),
      { kind: 'Container', name: id },
    );
    return (r as { StatusCode?: number }).StatusCode ?? -1;
  }

  async logs(id: string, opts: { follow: boolean; tail: number | 'all'; timestamps: boolean }): Promise<Buffer | NodeJS.ReadableStream> {
    const client = opts.follow ? this.streamDocker : this.docker;
    const body = { stdout: true, stderr: true, ...opts };
    if (opts.follow) return (await client.getContainer(id).logs(body as never)) as unknown as NodeJS.ReadableStream;
    return this.call(
      `logs ${id}`,
      'CannotGetContainerLogsError',
      this.timeouts.inspect,
      (abortSignal) => client.getContainer(id).logs({ ...body, abortSignal } as never) as unknown as Promise<Buffer>,
    );
  }

  // ---- images ----

  async inspectImage(ref: string): Promise<Docker.ImageInspectInfo | undefined> {
    return absentOn404(this.call(
      `inspect image ${ref}`,
      'CannotInspectImageError',
      this.timeouts.inspect,
      () => this.docker.getImage(ref).inspect(),
      { kind: 'Image', name: ref },
    ));
  }

  listImages(): Promise<Docker.ImageInfo[]> {
    return this.call('list images', 'CannotListImagesError', this.timeouts.list, (abortSignal) => this.docker.listImages({ abortSignal }));
  }

  async removeImage(ref: string): Promise<void> {
    await absentOn404(this.call(
      `remove image ${ref}`,
      'CannotRemoveImageError',
      this.timeouts.image,
      (abortSignal) => this.docker.getImage(ref).remove({ abortSignal }),
      { kind: 'Image', name: ref },
    ));
  }

  /**
   * Pull with retries (ECS: 5, 1.1 s .. 5 s, x2). Each attempt is aborted when the progress
   * stream stays silent for the inactivity timeout; all of it is bounded by the pull timeout.
   * Every progress object is scanned for `error`.
   */
  async pull(image: string, auth?: RegistryAuth): Promise<void> {
    const ref = imageRef(image);
    const overall = new AbortController();
    const timer = setTimeout(() => overall.abort(), this.timeouts.pull);
    timer.unref?.();
    try {
      await retry(() => this.pullOnce(ref, auth, overall.signal), {
        attempts: overall.signal.aborted ? 1 : (this.o.pullAttempts ?? PULL_ATTEMPTS),
        backoff: this.o.pullBackoff ?? PULL_BACKOFF,
        retryable: () => !overall.signal.aborted,
        onRetry: (e, n, ms) => this.log.warn({ image: ref, attempt: n, retryInMs: ms, err: (e as Error).message }, 'pull failed, retrying'),
      });
    } catch (e) {
      if (overall.signal.aborted) {
        throw new RuntimeError('DockerTimeoutError', `pull of ${ref} did not finish within ${this.timeouts.pull} ms (ECS_IMAGE_PULL_TIMEOUT)`, { uncertain: false, kind: 'Image', name: ref });
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async pullOnce(ref: string, auth: RegistryAuth | undefined, overall: AbortSignal): Promise<void> {
    const ac = new AbortController();
    const onOverall = () => ac.abort();
    overall.addEventListener('abort', onOverall, { once: true });
    let idle: NodeJS.Timeout | undefined;
    let inactive = false;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        inactive = true;
        ac.abort();
      }, this.timeouts.pullInactivity);
      idle.unref?.();
    };
    const fail = (m: string) => new RuntimeError('CannotPullContainerError', m, { uncertain: false, kind: 'Image', name: ref });
    const silent = () => fail(`no pull progress within ${this.timeouts.pullInactivity} ms (ECS_IMAGE_PULL_INACTIVITY_TIMEOUT)`);
    try {
      touch();
      let stream: Readable;
      try {
        stream = (await this.docker.pull(ref, { ...(auth ? { authconfig: auth } : {}), abortSignal: ac.signal })) as Readable;
      } catch (e) {
        if (inactive) throw silent();
        throw fail(messageOf(e as DockerErr));
      }
      await new Promise<void>((resolve, reject) => {
        let buf = '';
        stream.on('data', (chunk: Buffer) => {
          touch();
          buf += chunk.toString('utf8');
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            try {
              const ev = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
              if (ev.error || ev.errorDetail) {
                reject(fail(ev.error ?? ev.errorDetail?.message ?? 'pull failed'));
                stream.destroy();
              }
            } catch {
              /* not JSON: progress noise */
            }
          }
        });
        stream.on('end', () => resolve());
        stream.on('error', (e: Error) => reject(inactive ? silent() : fail(e.message)));
        stream.on('close', () => resolve());
      });
    } finally {
      clearTimeout(idle);
      overall.removeEventListener('abort', onOverall);
    }
  }

  /** `docker import` of a rootfs tar (the namespace image). */
  async importImage(tarPath: string, repo: string, tag: string, changes: string[]): Promise<void> {
    await this.call(`import ${repo}:${tag}`, 'CannotLoadImageError', this.timeouts.load, async (abortSignal) => {
      const stream = (await this.docker.importImage(tarPath, { repo, tag, changes, abortSignal } as never)) as unknown as NodeJS.ReadableStream;
      await new Promise<void>((resolve, reject) =>
        this.docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) => {
          const bad = res?.find((r) => r.error);
          if (err || bad) reject(err ?? new Error(bad!.error));
          else resolve();
        }),
      );
    });
  }

  async tagImage(ref: string, repo: string, tag: string): Promise<void> {
    await this.call(`tag ${ref}`, 'CannotTagImageError', this.timeouts.image, (abortSignal) => this.docker.getImage(ref).tag({ repo, tag, abortSignal }));
  }

  // ---- networks and volumes ----

  listNetworks(filters: Record<string, string[]>): Promise<Docker.NetworkInspectInfo[]> {
    return this.call('list networks', 'CannotListNetworksError', this.timeouts.network, (abortSignal) => this.docker.listNetworks({ filters, abortSignal }));
  }

  async inspectNetwork(name: string): Promise<Docker.NetworkInspectInfo | undefined> {
    return (await absentOn404(this.call(
      `inspect network ${name}`,
      'CannotInspectNetworkError',
      this.timeouts.network,
      () => this.docker.getNetwork(name).inspect(),
    ))) as Docker.NetworkInspectInfo | undefined;
  }

  /** Create; false when a network of that name exists already. */
  async createNetwork(body: Docker.NetworkCreateOptions): Promise<boolean> {
    try {
      await this.call(
        `create network ${body.Name}`,
        'CannotCreateNetworkError',
        this.timeouts.network,
        (abortSignal) => this.docker.createNetwork(signed(body, abortSignal)),
      );
      return true;
    } catch (e) {
      if (e instanceof RuntimeError && e.statusCode === 409) return false;
      throw e;
    }
  }

  async connectNetwork(network: string, container: string): Promise<void> {
    try {
      await this.call(
        `connect ${container} to ${network}`,
        'CannotConnectNetworkError',
        this.timeouts.network,
        (abortSignal) => this.docker.getNetwork(network).connect(signed({ Container: container }, abortSignal)),
      );
    } catch (e) {
      if (e instanceof RuntimeError && /already exists|endpoint with name|is already attached/i.test(e.message)) return;
      throw e;
    }
  }

  async removeNetwork(name: string): Promise<void> {
    await absentOn404(this.call(
      `remove network ${name}`,
      'CannotRemoveNetworkError',
      this.timeouts.network,
      (abortSignal) => this.docker.getNetwork(name).remove({ abortSignal }),
    ));
  }

  async inspectVolume(name: string): Promise<Docker.VolumeInspectInfo | undefined> {
    return absentOn404(this.call(
      `inspect volume ${name}`,
      'CannotInspectVolumeError',
      this.timeouts.volume,
      (abortSignal) => this.docker.getVolume(name).inspect({ abortSignal }),
    ));
  }

  async createVolume(body: { Name: string; Driver: string; DriverOpts: Record<string, string>; Labels: Record<string, string> }): Promise<void> {
    await this.call(
      `create volume ${body.Name}`,
      'CannotCreateVolumeError',
      this.timeouts.volume,
      (abortSignal) => this.docker.createVolume(signed(body, abortSignal)),
    );
  }

  async listVolumes(labels: string[]): Promise<Array<{ Name: string; Labels?: Record<string, string> }>> {
    const r = await this.call(
      'list volumes',
      'CannotListVolumesError',
      this.timeouts.volume,
      (abortSignal) => this.docker.listVolumes({ filters: { label: labels }, abortSignal }),
    );
    return (r.Volumes ?? []) as Array<{ Name: string; Labels?: Record<string, string> }>;
  }

  async removeVolume(name: string): Promise<void> {
    await absentOn404(this.call(
      `remove volume ${name}`,
      'CannotRemoveVolumeError',
      this.timeouts.volume,
      (abortSignal) => this.docker.getVolume(name).remove({ abortSignal }),
    ));
  }

  // ---- events ----

  /** Subscribe to container events; the one stream opens with the first subscriber. */
  subscribe(fn: (e: RuntimeEvent) => void): () => void {
    this.emitter.on('event', fn);
    this.ensureStream();
    return () => this.emitter.off('event', fn);
  }

  private ensureStream(): void {
    if (this.closed || this.stream || this.opening || this.reconnectTimer) return;
    this.opening = this.openStream().finally(() => {
      this.opening = undefined;
    });
  }

  private async openStream(): Promise<void> {
    const since = this.lastEventNano ? Math.floor(this.lastEventNano / 1e9) : undefined;
    const ac = new AbortController();
    this.streamAbort = ac;
    let stream: Readable;
    try {
      const filters: Record<string, string[]> = { type: ['container'], event: [...EVENT_ALLOWLIST] };
      if (this.o.eventLabels?.length) filters.label = this.o.eventLabels;
      this.streamsOpened++;
      stream = (await this.streamDocker.getEvents({ since, filters, abortSignal: ac.signal } as never)) as unknown as Readable;
    } catch (e) {
      if (this.closed) return;
      this.log.warn({ err: (e as Error).message }, 'cannot open the docker event stream, retrying');
      this.scheduleReopen();
      return;
    }
    if (this.closed) {
      stream.destroy();
      return;
    }
    this.stream = stream;
    this.reconnect.reset();
    let buf = '';
    stream.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const ev = parseEventLine(line);
        if (!ev) continue;
        if (ev.timeNano) this.lastEventNano = ev.timeNano;
        const { timeNano: _t, ...e } = ev;
        this.emitter.emit('event', e);
      }
    });
    const reopen = (why: string) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      if (this.closed) return;
      this.log.info({ why }, 'docker event stream ended, reconnecting');
      this.scheduleReopen();
    };
    stream.on('end', () => reopen('eof'));
    stream.on('close', () => reopen('close'));
    stream.on('error', (e: Error) => reopen(e.message));
    // events are a hint: on every (re)connect re-list and let the engine reconcile
    this.emitter.emit('event', { action: 'resync', id: '', labels: {}, time: new Date() } satisfies RuntimeEvent);
  }

  private scheduleReopen(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.ensureStream();
    }, this.reconnect.next());
    this.reconnectTimer.unref?.();
  }

  /** Drop the event stream (tests use this to prove reconnects). */
  dropEventStream(): void {
    this.stream?.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.streamAbort?.abort();
    await this.opening?.catch(() => undefined);
    this.stream?.destroy();
    this.stream = undefined;
    this.emitter.removeAllListeners();
  }
}

/**
 * What a Docker call answered, or undefined when the object does not exist (404): gone is what
 * a remove wants, and absent is what an inspect reports.
 */
async function absentOn404<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof RuntimeError && e.statusCode === 404) return undefined;
    throw e;
  }
}
