/**
 * Where `berth up` keeps its files (`~/.berth`, or $BERTH_HOME): only the paths, so that every
 * command can find the kubeconfig without loading what makes the files (files.ts).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface UpFiles {
  home: string;
  kubeconfig: string;
  awsCredentials: string;
  tokenFile: string;
  accessKeyFile: string;
  pkiDir: string;
  dataDir: string;
  dockerDir: string;
  agentDir: string;
  /** the audit log of the apiserver `up` runs (JSON lines) */
  auditLog: string;
  /** the key file secrets are encrypted with (made on the first run) */
  encryptionKeyFile: string;
}

export function upFiles(home = process.env.BERTH_HOME ?? join(homedir(), '.berth')): UpFiles {
  return {
    home,
    kubeconfig: process.env.BERTH_CONFIG ?? join(home, 'config'),
    awsCredentials: join(home, 'aws-credentials'),
    tokenFile: join(home, 'tokens.csv'),
    accessKeyFile: join(home, 'access-keys.csv'),
    pkiDir: join(home, 'pki'),
    dataDir: join(home, 'data'),
    dockerDir: join(home, 'docker'),
    agentDir: join(home, 'agent'),
    auditLog: join(home, 'audit.log'),
    encryptionKeyFile: join(home, 'pki', 'encryption-keys'),
  };
}
