import type { IO } from '../commands.ts';
import { createCa } from '../../tls/ca.ts';
import { daysOf, report, type CommonFlags, type SubCommand } from './certs.ts';

/** `berth certs ca --dir D`: the berth CA (D/ca.crt, D/ca.key) that signs every other certificate. */
export function addCaCommand(sub: SubCommand, io: IO): void {
  sub('ca', 'a new certificate authority: DIR/ca.crt (give it to every agent, controller-manager and user) and DIR/ca.key (keep it off the hosts)')
    .option('--common-name <cn>', 'the CA\'s name', 'berth-ca')
    .action(async (o: CommonFlags & { commonName: string }) => {
      report(io, await createCa({ dir: o.dir, commonName: o.commonName, days: daysOf(o) ?? 3650, force: o.force }), 'the CA');
    });
}
