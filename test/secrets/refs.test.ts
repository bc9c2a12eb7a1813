import { expect } from 'chai';
import { containerEnv } from '../../pkg/agent/runtime/translate.ts';
import { Keyring, newKeyLine } from '../../pkg/secrets/keyring.ts';
import { awsSecretName, berthSecretName, candidateNames, parseEnvFile, parseEnvFileRef, parseSecretRef, referencedNames, referencedValue } from '../../pkg/secrets/refs.ts';

describe('secret references, names and values (tables)', () => {
  const refs: Array<[string, ReturnType<typeof parseSecretRef>]> = [
    ['arn:aws:secretsmanager:us-east-1:123:secret:db', { name: 'db', source: 'asm' }],
    ['arn:aws:secretsmanager:us-east-1:123:secret:db:password::', { name: 'db', source: 'asm', jsonKey: 'password' }],
    ['arn:aws:secretsmanager:us-east-1:123:secret:db:password:AWSCURRENT:', { name: 'db', source: 'asm', jsonKey: 'password', versionStage: 'AWSCURRENT' }],
    ['arn:aws:secretsmanager:us-east-1:123:secret:db::AWSPREVIOUS:v1', { name: 'db', source: 'asm', versionStage: 'AWSPREVIOUS', versionId: 'v1' }],
    ['arn:aws:ssm:us-east-1:123:parameter/db', { name: 'db', source: 'ssm' }],
    ['arn:aws:ssm:us-east-1:123:parameter/prod/db', { name: '/prod/db', source: 'ssm' }],
    ['db-password', { name: 'db-password', source: 'name' }],
  ];
  for (const [from, want] of refs) it(`parses ${from}`, () => expect(parseSecretRef(from)).to.deep.equal(want));
  for (const bad of ['', 'arn:aws:kms:us-east-1:1:key/x', 'arn:aws:ssm:us-east-1:1:document/x', 'arn:aws:secretsmanager:us-east-1:1:secret', 'arn:x']) {
    it(`refuses "${bad}" with a message`, () => expect(parseSecretRef(bad)).to.be.a('string'));
  }

  it('maps AWS names to berth names and back, and tries a plain name as given', () => {
    for (const n of ['db', 'prod/db.password', 'a_b+c=d@e', '/x/y']) expect(awsSecretName(berthSecretName(n))).to.equal(n);
    expect(berthSecretName('prod/db')).to.equal('prod_2fdb');
    expect(candidateNames('db_pass')).to.deep.equal(['db_5fpass', 'db_pass']);
    expect(candidateNames('a/b')).to.deep.equal(['a_2fb']);
  });

  it('takes a JSON key from the secret string (a single `value` key is the string itself)', () => {
    expect(referencedValue({ value: 'plain' }, { name: 'x', source: 'asm' })).to.equal('plain');
    expect(referencedValue({ value: '{"u":"a","n":3}' }, { name: 'x', source: 'asm', jsonKey: 'n' })).to.equal('3');
    expect(referencedValue({ user: 'u', pw: 'p' }, { name: 'x', source: 'asm', jsonKey: 'pw' })).to.equal('p');
    expect(referencedValue({ user: 'u' }, { name: 'x', source: 'asm', jsonKey: 'pw' })).to.deep.equal({ error: 'the secret has no JSON key "pw"' });
    expect(referencedValue({ value: 'not json' }, { name: 'x', source: 'asm', jsonKey: 'pw' })).to.have.property('error');
  });

  it('reads env files as Docker does and merges as ECS does (environment over files, the first file wins, secrets last)', () => {
    expect(parseEnvFile('# c\n\nA=1\n  B=x=y\nnoequals\n')).to.deep.equal([['A', '1'], ['B', 'x=y']]);
    expect(parseEnvFileRef('arn:aws:s3:::bucket/dir/app.env')).to.equal('bucket/dir/app.env');
    expect(parseEnvFileRef('arn:aws:s3:::bucket/app.txt')).to.have.property('error');
    const env = containerEnv([{ name: 'B', value: 'env' }], { envFiles: [['A', 'f1'], ['B', 'f1'], ['A', 'f2']], secrets: [['S', 's']] });
    expect(env).to.deep.equal(['A=f1', 'B=env', 'S=s']);
  });

  it('lists what a task definition references (what its node may read)', () => {
    const names = referencedNames({
      containerDefinitions: [
        { secrets: [{ valueFrom: 'arn:aws:ssm:r:1:parameter/a/b' }], environmentFiles: [{ value: 'arn:aws:s3:::bk/e.env' }] },
        { repositoryCredentials: { credentialsParameter: 'arn:aws:secretsmanager:r:1:secret:reg' }, logConfiguration: { secretOptions: [{ valueFrom: 'lg' }] } },
      ],
    });
    expect([...names].sort()).to.deep.equal(['/a/b', 'bk/e.env', 'lg', 'reg']);
  });

  it('seals with the first key, opens with any, and binds a value to its secret and key', () => {
    const oldLine = newKeyLine('old');
    const old = Keyring.parse(oldLine);
    const k = Keyring.parse(newKeyLine('new') + oldLine);
    const sealed = old.encrypt('v', 'secrets/a/k');
    expect(k.decrypt(sealed, 'secrets/a/k')).to.equal('v');
    expect(k.encrypt('v', 'secrets/a/k')).to.match(/^berth:v1:new:/);
    expect(() => k.decrypt(sealed, 'secrets/b/k')).to.throw(/does not authenticate/);
    expect(() => Keyring.parse('k1:c2hvcnQ=\n')).to.throw(/32/);
  });
});

describe('IAM actions of secret requests on the resource API', () => {
  it('reading values is secretsmanager:GetSecretValue, not the metadata get', async () => {
    const { resourceApiAction } = await import('../../pkg/apiserver/actions.ts');
    const { Arns } = await import('../../pkg/api/arn.ts');
    const lookups = { latestRevision: () => undefined };
    const act = (subresource?: string) => resourceApiAction({ verb: 'get', resource: 'secrets', name: 'db', subresource, path: '/' }, 'u', new Arns(), lookups)?.action;
    expect(act()).to.equal('berth:GetSecret');
    expect(act('value')).to.equal('secretsmanager:GetSecretValue');
    expect(resourceApiAction({ verb: 'update', resource: 'secrets', subresource: 'reencrypt', path: '/' }, 'u', new Arns(), lookups)?.action).to.equal('berth:ReencryptSecrets');
  });
});
