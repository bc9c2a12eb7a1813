import { execFile, spawn, type ChildProcess } from 'node:child_process';

/** The kubectl to test with: $BERTH_KUBECTL, else the one on PATH (1.32 on this image). */
export const KUBECTL = process.env.BERTH_KUBECTL ?? 'kubectl';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real kubectl with KUBECONFIG set (the gcloud dispatcher refuses flags before the verb). */
export function kubectl(kubeconfig: string, args: string[], input?: string, env: Record<string, string> = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(KUBECTL, args, { env: { ...process.env, ...env, KUBECONFIG: kubeconfig }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Starts a long-running kubectl (get -w); the caller kills it by pid. */
export function kubectlSpawn(kubeconfig: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(KUBECTL, args, { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, output: () => out };
}
