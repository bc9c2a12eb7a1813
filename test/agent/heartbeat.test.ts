import { expect } from 'chai';
import { shouldWriteInstanceStatus } from '../../pkg/agent/agent.ts';

describe('agent heartbeats: when a heartbeat writes the instance status besides renewing the lease (table)', () => {
  const A = JSON.stringify({ agentConnected: true, versionInfo: { agentVersion: '0.1.0' } });
  const B = JSON.stringify({ agentConnected: true, logs: { endpoint: 'http://10.0.0.5:4000', token: 't' }, versionInfo: { agentVersion: '0.1.0' } });
  const rows: Array<[string, string | undefined, string, boolean | undefined, boolean]> = [
    ['the first heartbeat after a start (it brings the logs endpoint and token)', undefined, B, undefined, true],
    ['the first heartbeat, whatever the lease says', undefined, A, true, true],
    ['a renewal, nothing changed, the instance connected', A, A, true, false],
    ['a renewal whose answer says nothing of the instance', A, A, undefined, false],
    ['the instance recorded disconnected: written connected again', A, A, false, true],
    ['what the agent reports changed (a new logs endpoint, versions)', A, B, true, true],
  ];
  for (const [what, written, want, connected, expected] of rows) {
    it(`${what}: ${expected ? 'writes' : 'does not write'}`, () => {
      expect(shouldWriteInstanceStatus(written, want, connected)).to.equal(expected);
    });
  }
});
