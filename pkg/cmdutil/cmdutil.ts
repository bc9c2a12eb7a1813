import { isBerthError } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';

/**
 * Runs a command's main: a BerthError (bad flag, bad variable) is one clear line and exit 2;
 * anything else is logged with its stack and exit 1.
 */
export function runMain(name: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (isBerthError(e)) process.stderr.write(`${name}: ${e.message}\n`);
    else process.stderr.write(`${name}: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(isBerthError(e) ? 2 : 1);
  });
}

/** Calls `stop` once on SIGTERM/SIGINT, then exits; a second signal exits at once. */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    stop().then(
      () => process.exit(0),
      (e) => {
        log.error({ err: (e as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

/** Is this host a loopback address (dev mode may listen only there)? */
export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);
