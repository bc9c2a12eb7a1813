import { expect } from 'chai';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
  TagResourceCommand,
  UpdateSecretCommand,
} from '@aws-sdk/client-secrets-manager';
import { DeleteParameterCommand, DeleteParametersCommand, DescribeParametersCommand, GetParameterCommand, GetParametersByPathCommand, GetParametersCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Keyring, newKeyLine } from '../../pkg/secrets/keyring.ts';
import { startEcsServer, thrown, type EcsTestServer } from './support.ts';

describe('Secrets Manager and SSM faces with the AWS SDK (same port, SigV4, the Secret kind behind them)', function () {
  this.timeout(30_000);
  let s: EcsTestServer;
  const clients: Array<{ destroy(): void }> = [];
  const sm = (key = s.admin) => {
    const c = new SecretsManagerClient({ endpoint: s.api.url, region: 'us-east-1', credentials: key, maxAttempts: 1 });
    clients.push(c);
    return c;
  };
  const ssm = (key = s.admin) => {
    const c = new SSMClient({ endpoint: s.api.url, region: 'us-east-1', credentials: key, maxAttempts: 1 });
    clients.push(c);
    return c;
  };
  before(async () => {
    s = await startEcsServer({ keyring: Keyring.parse(newKeyLine('k1')) });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await s?.stop();
  });

  it('creates, reads, changes, describes, lists and tags a secret', async () => {
    const c = await sm().send(new CreateSecretCommand({ Name: 'prod/db', SecretString: '{"username":"app","password":"sdk-pw-41c0"}', Description: 'the db', Tags: [{ Key: 'team', Value: 'a' }] }));
    expect(c.ARN).to.equal('arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db');
    expect(c.Name).to.equal('prod/db');
    const dup = await thrown(() => sm().send(new CreateSecretCommand({ Name: 'prod/db', SecretString: 'x' })));
    expect(dup.name).to.equal('ResourceExistsException');
    const g = await sm().send(new GetSecretValueCommand({ SecretId: c.ARN }));
    expect(g.SecretString).to.equal('{"username":"app","password":"sdk-pw-41c0"}');
    expect(g.VersionId).to.equal(c.VersionId);
    const p = await sm().send(new PutSecretValueCommand({ SecretId: 'prod/db', SecretString: 'rotated-7d1e' }));
    expect(p.VersionId).not.to.equal(c.VersionId);
    expect((await sm().send(new GetSecretValueCommand({ SecretId: 'prod/db' }))).SecretString).to.equal('rotated-7d1e');
    await sm().send(new UpdateSecretCommand({ SecretId: 'prod/db', Description: 'changed' }));
    await sm().send(new TagResourceCommand({ SecretId: 'prod/db', Tags: [{ Key: 'env', Value: 'prod' }] }));
    const d = await sm().send(new DescribeSecretCommand({ SecretId: 'prod/db' }));
    expect(d.Description).to.equal('changed');
    expect(d.Tags).to.deep.equal([{ Key: 'team', Value: 'a' }, { Key: 'env', Value: 'prod' }]);
    expect(Object.values(d.VersionIdsToStages ?? {})).to.deep.equal([['AWSCURRENT']]);
    const l = await sm().send(new ListSecretsCommand({}));
    expect(l.SecretList?.map((x) => x.Name)).to.deep.equal(['prod/db']);
    // the same secret on the resource API: berth's name for prod/db, no value
    const r = await s.api.call('GET', '/apis/berth.dev/v1/secrets/prod_2fdb');
    expect(r.status).to.equal(200);
    expect(JSON.stringify(r.body)).not.to.contain('rotated-7d1e');
    const missing = await thrown(() => sm().send(new GetSecretValueCommand({ SecretId: 'nope' })));
    expect(missing.name).to.equal('ResourceNotFoundException');
  });

  it('deletes with a recovery window (restorable) or at once', async () => {
    await sm().send(new CreateSecretCommand({ Name: 'tmp', SecretString: 'v' }));
    const del = await sm().send(new DeleteSecretCommand({ SecretId: 'tmp', RecoveryWindowInDays: 7 }));
    expect(del.DeletionDate!.getTime()).to.be.greaterThan(Date.now() + 6 * 86_400_000);
    expect((await thrown(() => sm().send(new GetSecretValueCommand({ SecretId: 'tmp' })))).name).to.equal('InvalidRequestException');
    expect((await sm().send(new DescribeSecretCommand({ SecretId: 'tmp' }))).DeletedDate).to.be.instanceOf(Date);
    await sm().send(new RestoreSecretCommand({ SecretId: 'tmp' }));
    expect((await sm().send(new GetSecretValueCommand({ SecretId: 'tmp' }))).SecretString).to.equal('v');
    await sm().send(new DeleteSecretCommand({ SecretId: 'tmp', ForceDeleteWithoutRecovery: true }));
    expect((await thrown(() => sm().send(new DescribeSecretCommand({ SecretId: 'tmp' })))).name).to.equal('ResourceNotFoundException');
  });

  it('puts and gets SSM parameters (String, SecureString), by name, names and path, and deletes them', async () => {
    expect((await ssm().send(new PutParameterCommand({ Name: '/app/mode', Value: 'blue', Type: 'String' }))).Version).to.equal(1);
    await ssm().send(new PutParameterCommand({ Name: '/app/db/pw', Value: 'ssm-pw-22aa', Type: 'SecureString' }));
    const exists = await thrown(() => ssm().send(new PutParameterCommand({ Name: '/app/mode', Value: 'green', Type: 'String' })));
    expect(exists.name).to.equal('ParameterAlreadyExists');
    expect((await ssm().send(new PutParameterCommand({ Name: '/app/mode', Value: 'green', Type: 'String', Overwrite: true }))).Version).to.equal(2);
    const one = await ssm().send(new GetParameterCommand({ Name: '/app/mode' }));
    expect(one.Parameter).to.include({ Name: '/app/mode', Value: 'green', Type: 'String', Version: 2, ARN: 'arn:aws:ssm:us-east-1:000000000000:parameter/app/mode' });
    const hidden = await ssm().send(new GetParameterCommand({ Name: '/app/db/pw' }));
    expect(hidden.Parameter?.Value).not.to.contain('ssm-pw');
    expect((await ssm().send(new GetParameterCommand({ Name: '/app/db/pw', WithDecryption: true }))).Parameter?.Value).to.equal('ssm-pw-22aa');
    const many = await ssm().send(new GetParametersCommand({ Names: ['/app/mode', '/nope'], WithDecryption: true }));
    expect(many.Parameters?.map((p) => p.Name)).to.deep.equal(['/app/mode']);
    expect(many.InvalidParameters).to.deep.equal(['/nope']);
    const flat = await ssm().send(new GetParametersByPathCommand({ Path: '/app' }));
    expect(flat.Parameters?.map((p) => p.Name)).to.deep.equal(['/app/mode']);
    const deep = await ssm().send(new GetParametersByPathCommand({ Path: '/app', Recursive: true, WithDecryption: true }));
    expect(deep.Parameters?.map((p) => p.Name).sort()).to.deep.equal(['/app/db/pw', '/app/mode']);
    const desc = await ssm().send(new DescribeParametersCommand({}));
    expect(desc.Parameters?.map((p) => p.Name).sort()).to.deep.equal(['/app/db/pw', '/app/mode']);
    await ssm().send(new DeleteParameterCommand({ Name: '/app/mode' }));
    expect((await thrown(() => ssm().send(new GetParameterCommand({ Name: '/app/mode' })))).name).to.equal('ParameterNotFound');
    const dd = await ssm().send(new DeleteParametersCommand({ Names: ['/app/db/pw', '/gone'] }));
    expect(dd.DeletedParameters).to.deep.equal(['/app/db/pw']);
    expect(dd.InvalidParameters).to.deep.equal(['/gone']);
  });

  it('lets a viewer describe and list, never read a value or write (AccessDeniedException)', async () => {
    await sm().send(new CreateSecretCommand({ Name: 'viewed', SecretString: 'no-viewer-f00d' }));
    expect((await sm(s.viewer).send(new DescribeSecretCommand({ SecretId: 'viewed' }))).Name).to.equal('viewed');
    expect((await sm(s.viewer).send(new ListSecretsCommand({}))).SecretList?.length).to.be.greaterThan(0);
    for (const cmd of [new GetSecretValueCommand({ SecretId: 'viewed' }), new PutSecretValueCommand({ SecretId: 'viewed', SecretString: 'x' })]) {
      const e = await thrown(() => sm(s.viewer).send(cmd as never));
      expect(e.name).to.equal('AccessDeniedException');
      expect(e.message).not.to.contain('no-viewer-f00d');
    }
    await ssm().send(new PutParameterCommand({ Name: 'plainparam', Value: 'p', Type: 'SecureString' }));
    expect((await thrown(() => ssm(s.viewer).send(new GetParameterCommand({ Name: 'plainparam', WithDecryption: true })))).name).to.equal('AccessDeniedException');
  });
});
