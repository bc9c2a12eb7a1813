import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_VARIABLES } from '../../pkg/agent/config.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe("the README's agent table", () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('### Environment variables'), readme.indexOf('## Benchmarks'));
  const rows = table.split('\n').filter((l) => l.startsWith('| `'));
  const says = (v: string) => rows.find((r) => r.split('|')[1].includes(`\`${v}\``));

  it('says for every variable of the ECS agent whether berth honours it, ignores it (why), or it does not apply', () => {
    // the variables of the ECS agent's configuration table (its README, kept as a fixture)
    const names = readFileSync(join(root, 'test', 'agent', 'fixtures', 'ecs-agent-variables.txt'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(names.length).to.be.greaterThan(80);
    expect(names.filter((v) => !says(v)), 'missing from the table').to.deep.equal([]);
    for (const v of names) expect(says(v)!.split('|')[2], v).to.match(/^\s*(honoured|ignored: \S|n\/a: \S)/);
  });

  it('every variable the agent reads is named in the README', () => {
    expect(AGENT_VARIABLES.filter((v) => !readme.includes(`\`${v}\``))).to.deep.equal([]);
  });
});
