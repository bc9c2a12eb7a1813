import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { actionTable } from '../../pkg/apiserver/actions.ts';
import { OPERATIONS } from '../../pkg/ecsapi/ecsapi.ts';
import { AUTHORIZED_OPERATIONS } from '../../pkg/ecsapi/actions.ts';

const VERBS: Record<string, string> = {
  create: 'create',
  get: 'get',
  list: 'list, watch',
  write: 'update, patch',
  status: 'update, patch `/status`',
  delete: 'delete',
  logs: 'get `/log`',
};

describe('the policy documentation and the action tables agree', () => {
  it('the README lists every resource-API verb with the action it maps to', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const missing = actionTable()
      .map((r) => `| ${r.resource} | ${VERBS[r.verb]} | \`${r.action}\` |`)
      .filter((row) => !readme.includes(row));
    expect(missing, 'rows the README lacks').to.deep.equal([]);
  });

  it('every ECS operation has its IAM resources defined (none falls back to "*" unnoticed)', () => {
    expect(Object.keys(OPERATIONS).filter((op) => !AUTHORIZED_OPERATIONS.includes(op))).to.deep.equal([]);
  });
});
