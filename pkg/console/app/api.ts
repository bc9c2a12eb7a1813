/** The console's only way to the cluster: the resource API, with the user's token. */

const TOKEN_KEY = 'berth.console.token';
const USER_KEY = 'berth.console.user';

export const session = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  get user(): string | null {
    return sessionStorage.getItem(USER_KEY);
  },
  set(token: string, user: string) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, user);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
  },
};

/** what the API answered when it refused: its Status message, shown to the user as is */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized = () => {};
export const whenUnauthorized = (fn: () => void) => (onUnauthorized = fn);

export const headers = (extra: Record<string, string> = {}): Record<string, string> => (session.token ? { Authorization: `Bearer ${session.token}`, ...extra } : extra);

export async function refusal(res: Response): Promise<ApiError> {
  const text = await res.text();
  let message = text || res.statusText;
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? message;
  } catch {
    // not a Status: the text as it came
  }
  if (res.status === 401) onUnauthorized();
  return new ApiError(res.status, message);
}

export async function request<T = unknown>(method: string, url: string, body?: unknown, contentType = 'application/merge-patch+json'): Promise<T> {
  const res = await fetch(url, { method, headers: headers(body === undefined ? {} : { 'Content-Type': contentType }), body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw await refusal(res);
  return (await res.json()) as T;
}

export const BASE = '/apis/berth.dev/v1';
export const resourcePath = (plural: string, ns?: string, name?: string) => `${BASE}${ns ? `/namespaces/${encodeURIComponent(ns)}` : ''}/${plural}${name ? `/${encodeURIComponent(name)}` : ''}`;

export interface Obj {
  metadata: { name: string; namespace?: string; resourceVersion?: string; creationTimestamp?: string; generation?: number };
  spec: any;
  status?: any;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads a streamed body line by line (watches and followed logs). */
export async function* lines(res: Response): AsyncGenerator<string> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/**
 * A live list of one kind: listed, then watched from the list's resourceVersion (no
 * polling); listed again when the watch ends or fails.
 */
export class Collection<T extends Obj = Obj> {
  items = new Map<string, T>();
  ready = false;
  error?: string;
  private readonly listeners = new Set<() => void>();
  private ctrl?: AbortController;
  private stopped = false;

  constructor(
    readonly plural: string,
    readonly ns?: string,
  ) {}

  get list(): T[] {
    return [...this.items.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }));
  }

  get(name: string): T | undefined {
    return this.items.get(`${this.ns ?? ''}/${name}`) ?? [...this.items.values()].find((o) => o.metadata.name === name);
  }

  onChange(fn: () => void): this {
    this.listeners.add(fn);
    return this;
  }

  start(): this {
    void this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.ctrl?.abort();
  }

  private key = (o: Obj) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
  private emit = () => this.listeners.forEach((fn) => fn());

  private async run() {
    const url = resourcePath(this.plural, this.ns);
    while (!this.stopped) {
      try {
        this.ctrl = new AbortController();
        const res = await fetch(url, { headers: headers(), signal: this.ctrl.signal });
        if (!res.ok) throw await refusal(res);
        const list = (await res.json()) as { metadata: { resourceVersion: string }; items: T[] };
        this.items = new Map(list.items.map((o) => [this.key(o), o]));
        this.ready = true;
        this.error = undefined;
        this.emit();
        const w = await fetch(`${url}?watch=true&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`, { headers: headers(), signal: this.ctrl.signal });
        if (!w.ok) throw await refusal(w);
        for await (const line of lines(w)) {
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as { type: string; object: T & { message?: string } };
          if (ev.type === 'ERROR') throw new Error(ev.object.message ?? 'the watch failed');
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'DELETED') this.items.delete(this.key(ev.object));
          else this.items.set(this.key(ev.object), ev.object);
          this.emit();
        }
      } catch (e) {
        if (this.stopped) return;
        this.error = (e as Error).message;
        this.emit();
        await sleep(1000);
      }
    }
  }
}
