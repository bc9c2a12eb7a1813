import type { Logger } from 'pino';
import type { Endpoints } from '../../api/kinds.ts';
import type { Client } from '../../client/client.ts';
import { Informer } from '../../client/informer.ts';
import type { ContainerRuntime } from '../runtime/runtime.ts';
import { DnsServer, readUpstreams } from './server.ts';
import { buildZone, type Zone } from './zone.ts';

export interface DiscoveryOptions {
  /** the node's client (it may list and watch its cluster's Endpoints) */
  client: Client;
  cluster: string;
  runtime: ContainerRuntime;
  /** listen address; empty: the runtime's bridge gateway */
  address: string;
  resolvConf: string;
  log: Logger;
  /** default 53 */
  port?: number;
}

/**
 * Service discovery on a host: a watch of the cluster's Endpoints, kept as a DNS zone, served
 * on an address the host's containers reach (the Docker bridge's gateway by default), which
 * the runtime then gives containers as their resolver. When no address can be had or bound,
 * the agent runs without it (containers keep Docker's resolvers) and says so.
 */
export class ServiceDiscovery {
  private informer?: Informer<Endpoints>;
  private server?: DnsServer;
  private zone?: Zone;
  private readonly log: Logger;
  address?: string;

  constructor(private readonly o: DiscoveryOptions) {
    this.log = o.log.child({ component: 'service-discovery' });
  }

  get port(): number | undefined {
    return this.server?.port;
  }

  /** questions answered from the zone, relayed, failed */
  get counts(): DnsServer['counts'] | undefined {
    return this.server?.counts;
  }

  /** Starts watching and serving; false (and a warning) when it cannot serve. */
  async start(): Promise<boolean> {
    const address = this.o.address || (await this.o.runtime.bridgeGateway?.().catch(() => undefined));
    if (!address) {
      this.log.warn('no address to serve service discovery DNS on (no Docker bridge gateway; set ECS_SERVICE_DISCOVERY_DNS_ADDRESS): containers keep Docker\'s resolvers');
      return false;
    }
    this.informer = new Informer<Endpoints>(this.o.client, 'Endpoints', { namespace: this.o.cluster, log: this.log, resyncMs: 60_000 });
    const dirty = () => (this.zone = undefined);
    this.informer.on({ add: dirty, update: dirty, delete: dirty });
    const server = new DnsServer({
      address,
      port: this.o.port,
      zone: () =>
        (this.zone ??= buildZone(this.informer!.list().map((e) => ({ cluster: e.metadata.namespace!, service: e.metadata.name, subsets: e.spec.subsets ?? [] })))),
      upstreams: () => readUpstreams(this.o.resolvConf, [address]),
      log: this.log,
    });
    try {
      await server.start();
    } catch (e) {
      this.log.warn({ address, err: (e as Error).message }, 'cannot serve service discovery DNS: containers keep Docker\'s resolvers');
      return false;
    }
    this.server = server;
    this.address = address;
    this.informer.start();
    // containers started before the first list would get NXDOMAIN for a while; an apiserver that refuses the list must not stop the agent
    let timer: NodeJS.Timeout | undefined;
    const synced = await Promise.race([this.informer.waitForSync().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
    clearTimeout(timer);
    if (!synced) this.log.warn('the cluster\'s Endpoints are not listed yet: berth.internal names answer NXDOMAIN until they are');
    this.o.runtime.setDnsServers?.([address]);
    return true;
  }

  async stop(): Promise<void> {
    this.informer?.stop();
    await this.server?.stop();
  }
}
