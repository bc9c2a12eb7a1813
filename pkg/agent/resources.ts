/**
 * The resources an agent registers with (the ECS Developer Guide, the ECS agent's README): 1024
 * CPU units per core, memory in MiB less ECS_RESERVED_MEMORY, and the reserved TCP/UDP ports.
 * Pure given the host facts.
 */
import os from 'node:os';
import type { AgentConfig } from './config.ts';

export interface HostFacts {
  cpus: number;
  /** bytes */
  totalMemory: number;
}

export interface RegisteredResources {
  cpu: number;
  /** MiB */
  memory: number;
  ports: number[];
  portsUdp: number[];
}

export const hostFacts = (): HostFacts => ({ cpus: os.cpus().length, totalMemory: os.totalmem() });

export function registeredResources(cfg: Pick<AgentConfig, 'reservedMemory' | 'reservedPorts' | 'reservedPortsUdp'>, host: HostFacts = hostFacts()): RegisteredResources {
  return {
    cpu: host.cpus * 1024,
    memory: Math.max(0, Math.floor(host.totalMemory / (1024 * 1024)) - cfg.reservedMemory),
    ports: [...new Set(cfg.reservedPorts)].sort((a, b) => a - b),
    portsUdp: [...new Set(cfg.reservedPortsUdp)].sort((a, b) => a - b),
  };
}
