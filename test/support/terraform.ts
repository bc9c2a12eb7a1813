import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the machine image keeps hashicorp/aws (a filesystem mirror: no registry is reached). */
export const TF_PLUGIN_MIRROR = '/opt/tf-plugins';
export const AWS_PROVIDER_VERSION = '5.100.0';

export const terraformAvailable = () => existsSync(join(TF_PLUGIN_MIRROR, 'registry.terraform.io/hashicorp/aws', AWS_PROVIDER_VERSION));

export interface TfResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A Terraform working directory whose CLI config installs hashicorp/aws from the filesystem
 * mirror only (init works offline), with a provider block pointing the ECS endpoint at berth
 * and skipping what needs AWS itself (STS, the metadata service, region validation).
 */
export interface TfDir {
  dir: string;
  /** writes main.tf: the provider block, then `resources` */
  write(resources: string): Promise<void>;
  run(args: string[], o?: { debugLog?: boolean }): Promise<TfResult>;
  /** run, failing with terraform's output unless it exits 0 (or one of `ok`) */
  must(args: string[], ok?: number[]): Promise<TfResult>;
  remove(): Promise<void>;
}


export async function terraformDir(o: { ecsEndpoint: string; accessKeyId: string; secretAccessKey: string; region?: string }): Promise<TfDir> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-tf-'));
  const cliConfig = join(dir, 'cli.tfrc');
  await writeFile(
    cliConfig,
    `provider_installation {\n  filesystem_mirror {\n    path    = "${TF_PLUGIN_MIRROR}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n`,
  );
  const provider = `terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "${AWS_PROVIDER_VERSION}" }
  }
}
provider "aws" {
  region                      = "${o.region ?? 'us-east-1'}"
  access_key                  = "${o.accessKeyId}"
  secret_key                  = "${o.secretAccessKey}"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    ecs = "${o.ecsEndpoint}"
  }
}
`;
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    TF_CLI_CONFIG_FILE: cliConfig,
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const run = (args: string[], r: { debugLog?: boolean } = {}) =>
    new Promise<TfResult>((resolve) => {
      const e = r.debugLog ? { ...env, TF_LOG: 'DEBUG', TF_LOG_PATH: join(dir, 'debug.log') } : env;
      execFile('terraform', [...args, '-no-color'], { cwd: dir, env: e, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  return {
    dir,
    write: (resources) => writeFile(join(dir, 'main.tf'), provider + resources),
    run,
    async must(args, ok = [0]) {
      const t0 = Date.now();
      const r = await run(args);
      if (process.env.BERTH_TF_TIMING) console.log(`terraform ${args[0]}: ${Date.now() - t0} ms`);
      if (!ok.includes(r.code)) throw new Error(`terraform ${args.join(' ')} exited ${r.code}:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
      return r;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
