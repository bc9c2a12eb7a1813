import { expect } from 'chai';
import { evaluate, parseQuery, QueryError, type QuerySubject } from '../../pkg/scheduler/query.ts';

const inst = (over: Partial<QuerySubject> = {}): QuerySubject => ({
  attributes: { 'ecs.instance-type': 't2.small', 'ecs.os-type': 'linux', 'ecs.availability-zone': 'us-east-1a', stack: 'prod', gpu: undefined },
  ec2InstanceId: 'i-0abc',
  agentConnected: true,
  agentVersion: '1.2.0',
  registeredAt: '2026-11-01T00:00:00Z',
  runningTasksCount: 3,
  taskGroups: new Map([['service:web', 2]]),
  ...over,
});

describe('scheduler: cluster query language', () => {
  const cases: Array<[string, boolean]> = [
    ['attribute:ecs.instance-type == t2.small', true],
    ['attribute:ecs.instance-type equals t2.micro', false],
    ['attribute:ecs.instance-type != t2.micro', true],
    ['attribute:ecs.availability-zone in [us-east-1a, us-east-1b]', true],
    ['attribute:ecs.availability-zone not in [us-east-1a]', false],
    ['attribute:ecs.availability-zone not_in [us-east-1c]', true],
    ['attribute:stack exists', true],
    ['attribute:gpu exists', true],
    ['attribute:missing exists', false],
    ['attribute:missing !exists', true],
    ['attribute:missing not_exists', true],
    ['attribute:ecs.instance-type =~ t2.*', true],
    ['attribute:ecs.instance-type matches m5.*', false],
    ['attribute:ecs.instance-type !~ m5.*', true],
    ['runningTasksCount < 4', true],
    ['runningTasksCount >= 4', false],
    ['runningTasksCount greater_than 2', true],
    ['agentConnected == true', true],
    ['ec2InstanceId in [i-0abc, i-0def]', true],
    ['task:group == service:web', true],
    ['task:group == service:db', false],
    ['task:group != service:web', false],
    ['not(task:group == service:db)', true],
    ['attribute:stack == prod and attribute:ecs.os-type == linux', true],
    ['attribute:stack == dev && attribute:ecs.os-type == linux', false],
    ['attribute:stack == dev or attribute:ecs.os-type == linux', true],
    ['attribute:stack == dev || (runningTasksCount < 4 and agentConnected == true)', true],
    ['!(attribute:stack == prod)', false],
    ['attribute:stack == "prod"', true],
    ['attribute:stack == dev or attribute:stack == qa and attribute:ecs.os-type == linux', false],
  ];
  for (const [q, want] of cases) {
    it(`${q} -> ${want}`, () => expect(evaluate(parseQuery(q), inst())).to.equal(want));
  }

  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['attribute:stack', /operator/],
    ['attribute:stack == ', /value/],
    ['color == red', /unknown subject "color"/],
    ['attribute:stack like prod', /unknown operator "like"/],
    ['attribute:stack in prod', /expected "\["/],
    ['(attribute:stack == prod', /expected "\)"/],
    ['attribute:stack == prod extra', /unexpected "extra"/],
    ['attribute:stack == "prod', /unterminated quote/],
  ];
  for (const [q, msg] of bad) {
    it(`rejects ${JSON.stringify(q)} saying ${msg}`, () => {
      expect(() => parseQuery(q)).to.throw(QueryError, msg);
    });
  }
});
