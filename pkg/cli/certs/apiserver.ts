import type { IO } from '../commands.ts';
import { caIn, issueCertificate } from '../../tls/ca.ts';
import { daysOf, listOf, report, type CommonFlags, type SubCommand } from './certs.ts';

/** `berth certs apiserver --dir D --names ...`: the serving certificate every apiserver (and the load balancer's name) presents. */
export function addApiserverCommand(sub: SubCommand, io: IO): void {
  sub('apiserver', 'the apiservers\' serving certificate: DIR/apiserver.crt and DIR/apiserver.key, for --tls-cert-file/--tls-private-key-file')
    .requiredOption('--names <list>', 'every name clients use: the load balancer\'s DNS name and address, each apiserver\'s address (comma-separated)')
    .option('--ca <dir>', 'the CA\'s directory (default: --dir)')
    .action(async (o: CommonFlags & { names: string; ca?: string }) => {
      const r = await issueCertificate({ ca: caIn(o.ca ?? o.dir), dir: o.dir, base: 'apiserver', role: 'server', commonName: 'berth-apiserver', names: listOf(o.names), days: daysOf(o), force: o.force });
      report(io, r, 'the apiserver serving certificate');
    });
}
