import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Client } from '../client/client.ts';
import { daemonController } from './daemon/controller.ts';
import { SharedInformers } from './informers.ts';
import { gcController, instanceHealthController } from './instancehealth/controller.ts';
import { DEFAULT_HEALTH, type HealthConfig } from './instancehealth/plan.ts';
import { placementController } from './placement/placement.ts';
import { Controller, ControllerMetrics } from './runtime/controller.ts';
import { LeaderElector } from './runtime/leader.ts';
import { serviceController } from './service/controller.ts';
import { targetSetKeys, targetsController } from './targets/controller.ts';
import { endpointsController } from './endpoints/controller.ts';

export const ALL_CONTROLLERS = ['service', 'placement', 'daemon', 'instancehealth', 'gc', 'targets', 'endpoints'] as const;
export type ControllerName = (typeof ALL_CONTROLLERS)[number];

export interface ManagerOptions {
  client: Client;
  log: Logger;
  controllers?: ControllerName[];
  /** leader election on Lease objects, one per controller (default on) */
  leaderElect?: boolean;
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  health?: HealthConfig;
  retentionMs?: number;
  resyncMs?: number;
  /** how long a service task without health checks must run to count as healthy (ECS: 40 s) */
  healthyAfterMs?: number;
  /** a lease was lost (the controller has already stopped writing); berth-controller-manager exits here */
  onLostLease?: (controller: ControllerName, reason: string) => void;
}

/**
 * Runs the chosen controllers over one set of shared informers. With leader election each
 * controller runs only while this process holds its lease (`berth-controller-NAME` in the
 * `berth-system` namespace), so several controller-managers can run for availability.
 */
export class ControllerManager {
  readonly informers: SharedInformers;
  readonly metrics = new ControllerMetrics();
  readonly controllers = new Map<ControllerName, Controller>();
  private readonly electors: LeaderElector[] = [];
  readonly identity: string;

  constructor(private readonly o: ManagerOptions) {
    this.informers = new SharedInformers(o.client, o.log.child({ component: 'informers' }), o.resyncMs);
    this.identity = o.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`;
    const log = o.log;
    for (const name of o.controllers ?? ALL_CONTROLLERS) {
      const l = log.child({ controller: name });
      const c =
        name === 'service'
          ? serviceController(o.client, this.informers, l, this.metrics, { healthyAfterMs: o.healthyAfterMs })
          : name === 'placement'
            ? placementController(o.client, this.informers, l, this.metrics)
            : name === 'daemon'
              ? daemonController(o.client, this.informers, l, this.metrics)
              : name === 'instancehealth'
                ? instanceHealthController(o.client, this.informers, l, o.health ?? DEFAULT_HEALTH, this.metrics)
                : name === 'targets'
                  ? targetsController(o.client, this.informers, l, this.metrics)
                : name === 'endpoints'
                  ? endpointsController(o.client, this.informers, l, this.metrics)
                  : gcController(o.client, this.informers, l, o.retentionMs, this.metrics);
      this.controllers.set(name, c);
    }
  }

  /** Which controllers this process leads right now. */
  leading(): ControllerName[] {
    if (this.o.leaderElect === false) return [...this.controllers.keys()];
    return [...this.controllers.keys()].filter((_, i) => this.electors[i]?.isLeader);
  }

  async start(): Promise<void> {
    const inf = this.informers;
    // informers start at once (a standby keeps warm caches, so takeover is quick)
    // (the agents' heartbeat leases only where instance health runs: nothing else reads them)
    const leases = this.controllers.has('instancehealth') ? [inf.instanceLeases] : [];
    await inf.start(inf.taskDefinitions, inf.daemonTaskDefinitions, inf.instances, inf.tasks, inf.services, inf.daemons, inf.loadBalancers, inf.targetGroups, inf.endpoints, inf.secrets, ...leases);
    for (const [name, c] of this.controllers) {
      if (this.o.leaderElect === false) {
        void c.run();
        continue;
      }
      const el = new LeaderElector({
        client: this.o.client,
        name: `berth-controller-${name}`,
        identity: this.identity,
        leaseDurationMs: this.o.leaseDurationMs,
        renewDeadlineMs: this.o.renewDeadlineMs,
        retryPeriodMs: this.o.retryPeriodMs,
        log: this.o.log,
        onStartedLeading: (term) => {
          // the term's client: every write fenced by the lease, refused once it may have lapsed, aborted when it ends;
          // workers start once the caches reflect the store as of the acquisition (term.revision)
          void c.run(term, () => {
            // revisit everything: the previous leader may have left work half done
            if (name === 'service' || name === 'endpoints') for (const s of inf.services.list()) c.enqueue(`${s.metadata.namespace}/${s.metadata.name}`);
            if (name === 'daemon') {
              for (const d of inf.daemons.list()) c.enqueue(`${d.metadata.namespace}/${d.metadata.name}`);
              for (const s of inf.services.list()) if (s.spec.schedulingStrategy === 'DAEMON') c.enqueue(`service:${s.metadata.namespace}/${s.metadata.name}`);
            }
            if (name === 'targets') for (const k of targetSetKeys(inf)) c.enqueue(k);
            if (name === 'placement' || name === 'instancehealth' || name === 'gc') {
              const nss = new Set([...inf.instances.list(), ...inf.services.list(), ...inf.daemons.list()].map((o) => o.metadata.namespace!));
              for (const ns of nss) c.enqueue(ns);
            }
          });
        },
        onStoppedLeading: async (reason) => {
          // not draining: no new reconcile starts, the ones in flight are aborted with the term
          await c.stop();
          if (!this.stopping) this.o.onLostLease?.(name, reason);
        },
      });
      this.electors.push(el);
      el.start();
    }
  }

  private stopping = false;

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.electors.map((e) => e.stop()));
    await Promise.all([...this.controllers.values()].map((c) => c.stop()));
    this.informers.stop();
  }
}
