import type { IO } from '../commands.ts';
import { caIn, issueCertificate } from '../../tls/ca.ts';
import { daysOf, listOf, report, type CommonFlags, type SubCommand } from './certs.ts';

/** `berth certs etcd --member etcd-1 --names ...`: one member's certificate, for clients and for its peers. */
export function addEtcdCommand(sub: SubCommand, io: IO): void {
  sub('etcd', 'an etcd member\'s certificate: DIR/MEMBER.crt and DIR/MEMBER.key, for both --cert-file and --peer-cert-file (server and client use)')
    .requiredOption('--member <name>', 'the member\'s name (ETCD_NAME), also the file name')
    .requiredOption('--names <list>', 'the member\'s addresses and DNS names (comma-separated)')
    .option('--ca <dir>', 'the CA\'s directory (default: --dir)')
    .action(async (o: CommonFlags & { member: string; names: string; ca?: string }) => {
      const r = await issueCertificate({ ca: caIn(o.ca ?? o.dir), dir: o.dir, base: o.member, role: 'peer', commonName: o.member, names: listOf(o.names), days: daysOf(o), force: o.force });
      report(io, r, `the etcd member certificate of ${o.member}`);
    });
}
