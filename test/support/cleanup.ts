/**
 * Test support: a cleanup registry. Whatever a fixture creates (a process, a namespace, a
 * link, a directory) it registers here at once, so that a failure half way through still
 * removes everything: `run()` undoes in reverse order, each step on its own (one failing
 * step does not skip the rest), and a process exit runs the synchronous ones.
 */
export type CleanupStep = { what: string; undo: () => void | Promise<void>; sync?: () => void };

export class Cleanup {
  private steps: CleanupStep[] = [];
  private readonly onExit = () => {
    for (const s of [...this.steps].reverse()) {
      try {
        s.sync?.();
      } catch {
        /* best effort on the way out */
      }
    }
  };

  constructor() {
    process.once('exit', this.onExit);
  }

  /** `sync` (optional) is what a dying process can still do: kill by pid, delete a namespace. */
  add(what: string, undo: () => void | Promise<void>, sync?: () => void): void {
    this.steps.push({ what, undo, sync });
  }

  /** Undo everything, newest first; returns the steps that failed (and why). */
  async run(): Promise<string[]> {
    const failed: string[] = [];
    while (this.steps.length) {
      const s = this.steps.pop()!;
      try {
        await s.undo();
      } catch (e) {
        failed.push(`${s.what}: ${(e as Error).message}`);
      }
    }
    process.removeListener('exit', this.onExit);
    return failed;
  }
}
