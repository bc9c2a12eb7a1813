import type { IO } from '../commands.ts';
import { caIn, issueCertificate } from '../../tls/ca.ts';
import { daysOf, listOf, report, type CommonFlags, type SubCommand } from './certs.ts';

/** `berth certs client --name berth-apiserver`: a client certificate (the apiservers' for etcd: --etcd-certfile). */
export function addClientCommand(sub: SubCommand, io: IO): void {
  sub('client', 'a client certificate: DIR/NAME.crt and DIR/NAME.key (e.g. --name berth-apiserver for --etcd-certfile/--etcd-keyfile)')
    .requiredOption('--name <cn>', 'the identity (CN), also the file name')
    .option('--groups <list>', 'organizations (O=) of the subject, comma-separated')
    .option('--ca <dir>', 'the CA\'s directory (default: --dir)')
    .action(async (o: CommonFlags & { name: string; groups?: string; ca?: string }) => {
      const r = await issueCertificate({ ca: caIn(o.ca ?? o.dir), dir: o.dir, base: o.name, role: 'client', commonName: o.name, organizations: listOf(o.groups), days: daysOf(o), force: o.force });
      report(io, r, `the client certificate of ${o.name}`);
    });
}
