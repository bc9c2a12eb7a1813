/**
 * ECS's cluster query language, as `memberOf` placement constraints and ListContainerInstances
 * filters use it:
 *
 *   attribute:ecs.instance-type == t2.small
 *   attribute:ecs.availability-zone in [us-east-1a, us-east-1b]
 *   attribute:stack exists and not(attribute:ecs.os-type == windows)
 *   ec2InstanceId != i-0abc or (runningTasksCount < 4 && agentConnected == true)
 *   task:group == service:web            (the instance runs a task of that group)
 *   attribute:ecs.instance-type =~ t2.*  (wildcard `*` match)
 *
 * Subjects: `attribute:NAME`, `agentConnected`, `agentVersion`, `ec2InstanceId`,
 * `registeredAt`, `runningTasksCount`, `task:group`. Operators (symbol or word): `==
 * equals`, `!= not_equals`, `> greater_than`, `>= greater_than_equal`, `< less_than`,
 * `<= less_than_equal`, `=~ matches`, `!~ not_matches`, `in`, `not_in` (also `not in`),
 * `exists`, `!exists not_exists`; `and &&`, `or ||`, `not !`, parentheses.
 */
export type Expr =
  | { op: 'and' | 'or'; left: Expr; right: Expr }
  | { op: 'not'; expr: Expr }
  | { op: 'cmp'; subject: string; cmp: Cmp; values: string[] };

export type Cmp = '==' | '!=' | '>' | '>=' | '<' | '<=' | '=~' | '!~' | 'in' | 'not_in' | 'exists' | 'not_exists';

export class QueryError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

const WORD_OPS: Record<string, Cmp> = {
  equals: '==',
  not_equals: '!=',
  greater_than: '>',
  greater_than_equal: '>=',
  less_than: '<',
  less_than_equal: '<=',
  matches: '=~',
  not_matches: '!~',
  in: 'in',
  not_in: 'not_in',
  exists: 'exists',
  not_exists: 'not_exists',
};
const SYMBOL_OPS = ['==', '!=', '>=', '<=', '=~', '!~', '!exists', '>', '<'];

interface Tok {
  t: 'word' | 'sym' | 'str';
  v: string;
  pos: number;
}

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new QueryError(`unterminated quote starting at ${i + 1}`, i);
      out.push({ t: 'str', v: src.slice(i + 1, end), pos: i });
      i = end + 1;
      continue;
    }
    if ('()[],'.includes(c)) {
      out.push({ t: 'sym', v: c, pos: i });
      i++;
      continue;
    }
    if (src.startsWith('&&', i) || src.startsWith('||', i)) {
      out.push({ t: 'sym', v: src.slice(i, i + 2), pos: i });
      i += 2;
      continue;
    }
    const sym = SYMBOL_OPS.find((s) => src.startsWith(s, i));
    if (sym) {
      out.push({ t: 'sym', v: sym, pos: i });
      i += sym.length;
      continue;
    }
    if (c === '!') {
      out.push({ t: 'sym', v: '!', pos: i });
      i++;
      continue;
    }
    let j = i;
    while (j < src.length && !/[\s()[\],]/.test(src[j]) && !src.startsWith('==', j) && !src.startsWith('!=', j) && !src.startsWith('=~', j) && !src.startsWith('!~', j) && !'<>'.includes(src[j]) && !src.startsWith('&&', j) && !src.startsWith('||', j)) j++;
    if (j === i) throw new QueryError(`unexpected "${c}" at ${i + 1}`, i);
    out.push({ t: 'word', v: src.slice(i, j), pos: i });
    i = j;
  }
  return out;
}

const SUBJECTS = ['agentConnected', 'agentVersion', 'ec2InstanceId', 'registeredAt', 'runningTasksCount', 'task:group'];

export function parseQuery(src: string): Expr {
  if (!src.trim()) throw new QueryError('the expression is empty', 0);
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p];
  const at = () => (toks[p] ? toks[p].pos + 1 : src.length + 1);
  const isWord = (w: string) => peek()?.t === 'word' && peek().v.toLowerCase() === w;
  const isSym = (s: string) => peek()?.t === 'sym' && peek().v === s;

  const parseOr = (): Expr => {
    let left = parseAnd();
    while (isWord('or') || isSym('||')) {
      p++;
      left = { op: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): Expr => {
    let left = parseUnary();
    while (isWord('and') || isSym('&&')) {
      p++;
      left = { op: 'and', left, right: parseUnary() };
    }
    return left;
  };
  const parseUnary = (): Expr => {
    if ((isWord('not') && toks[p + 1]?.v === '(') || isSym('!')) {
      p++;
      return { op: 'not', expr: parseUnary() };
    }
    if (isSym('(')) {
      p++;
      const e = parseOr();
      if (!isSym(')')) throw new QueryError(`expected ")" at ${at()}`, at());
      p++;
      return e;
    }
    return parseCmp();
  };
  const value = (): string => {
    const t = peek();
    if (!t || (t.t === 'sym' && t.v !== '*')) throw new QueryError(`expected a value at ${at()}`, at());
    p++;
    return t.v;
  };
  const parseCmp = (): Expr => {
    const s = peek();
    if (!s || s.t !== 'word') throw new QueryError(`expected a subject such as attribute:NAME at ${at()}`, at());
    const subject = s.v;
    if (!subject.startsWith('attribute:') && !SUBJECTS.includes(subject)) {
      throw new QueryError(`unknown subject "${subject}" at ${s.pos + 1}: use attribute:NAME, ${SUBJECTS.join(', ')}`, s.pos);
    }
    if (subject === 'attribute:') throw new QueryError(`attribute: needs a name at ${s.pos + 1}`, s.pos);
    p++;
    const o = peek();
    if (!o) throw new QueryError(`expected an operator after "${subject}"`, at());
    let cmp: Cmp | undefined;
    if (o.t === 'sym' && o.v === '!exists') cmp = 'not_exists';
    else if (o.t === 'sym' && SYMBOL_OPS.includes(o.v)) cmp = o.v as Cmp;
    else if (o.t === 'word' && o.v.toLowerCase() === 'not' && toks[p + 1]?.t === 'word' && toks[p + 1].v.toLowerCase() === 'in') {
      p++;
      cmp = 'not_in';
    } else if (o.t === 'word') cmp = WORD_OPS[o.v.toLowerCase()];
    if (!cmp) throw new QueryError(`unknown operator "${o.v}" at ${o.pos + 1}`, o.pos);
    p++;
    if (cmp === 'exists' || cmp === 'not_exists') return { op: 'cmp', subject, cmp, values: [] };
    if (cmp === 'in' || cmp === 'not_in') {
      if (!isSym('[')) throw new QueryError(`expected "[" after ${cmp} at ${at()}`, at());
      p++;
      const values: string[] = [];
      while (!isSym(']')) {
        values.push(value());
        if (isSym(',')) p++;
        else if (!isSym(']')) throw new QueryError(`expected "," or "]" at ${at()}`, at());
      }
      p++;
      return { op: 'cmp', subject, cmp, values };
    }
    return { op: 'cmp', subject, cmp, values: [value()] };
  };

  const e = parseOr();
  if (p < toks.length) throw new QueryError(`unexpected "${toks[p].v}" at ${toks[p].pos + 1}`, toks[p].pos);
  return e;
}

/** What an expression is evaluated against: one container instance. */
export interface QuerySubject {
  attributes: Record<string, string | undefined>;
  ec2InstanceId?: string;
  agentConnected: boolean;
  agentVersion?: string;
  registeredAt?: string;
  runningTasksCount: number;
  /** groups of the instance's live tasks */
  taskGroups: ReadonlySet<string> | ReadonlyMap<string, number>;
}

const wildcard = (pattern: string) => new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);

function compare(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (a !== '' && b !== '' && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function test(cmp: Cmp, v: string | undefined, values: string[]): boolean {
  switch (cmp) {
    case 'exists':
      return v !== undefined;
    case 'not_exists':
      return v === undefined;
    case '==':
      return v !== undefined && v === values[0];
    case '!=':
      return v !== values[0];
    case 'in':
      return v !== undefined && values.includes(v);
    case 'not_in':
      return v === undefined || !values.includes(v);
    case '=~':
      return v !== undefined && wildcard(values[0]).test(v);
    case '!~':
      return v === undefined || !wildcard(values[0]).test(v);
    default: {
      if (v === undefined) return false;
      const d = compare(v, values[0]);
      return cmp === '>' ? d > 0 : cmp === '>=' ? d >= 0 : cmp === '<' ? d < 0 : d <= 0;
    }
  }
}

export function evaluate(e: Expr, s: QuerySubject): boolean {
  switch (e.op) {
    case 'and':
      return evaluate(e.left, s) && evaluate(e.right, s);
    case 'or':
      return evaluate(e.left, s) || evaluate(e.right, s);
    case 'not':
      return !evaluate(e.expr, s);
    case 'cmp': {
      if (e.subject === 'task:group') {
        const groups = [...s.taskGroups.keys()];
        if (e.cmp === 'exists') return groups.length > 0;
        if (e.cmp === 'not_exists') return groups.length === 0;
        // negative operators hold when NO task group matches; positive when one does
        const negative = e.cmp === '!=' || e.cmp === 'not_in' || e.cmp === '!~';
        const positive: Cmp = e.cmp === '!=' ? '==' : e.cmp === 'not_in' ? 'in' : e.cmp === '!~' ? '=~' : e.cmp;
        const any = groups.some((g) => test(positive, g, e.values));
        return negative ? !any : any;
      }
      let v: string | undefined;
      if (e.subject.startsWith('attribute:')) {
        const name = e.subject.slice('attribute:'.length);
        v = name in s.attributes ? (s.attributes[name] ?? '') : undefined;
      } else if (e.subject === 'agentConnected') v = String(s.agentConnected);
      else if (e.subject === 'agentVersion') v = s.agentVersion;
      else if (e.subject === 'ec2InstanceId') v = s.ec2InstanceId;
      else if (e.subject === 'registeredAt') v = s.registeredAt;
      else if (e.subject === 'runningTasksCount') v = String(s.runningTasksCount);
      return test(e.cmp, v, e.values);
    }
  }
}
