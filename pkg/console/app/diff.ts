/** A side-by-side line diff (longest common subsequence), for two task definition revisions. */

export interface DiffRow {
  left?: string;
  right?: string;
  /** same: on both sides; del: only on the left; add: only on the right; change: a left line replaced by a right one */
  op: 'same' | 'del' | 'add' | 'change';
}

export function diffLines(a: string[], b: string[]): DiffRow[] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: the common subsequence's length of a[i..] and b[j..]
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const rows: DiffRow[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) rows.push({ left: a[i++], right: b[j++], op: 'same' });
    else if (j < m && (i >= n || lcs[i][j + 1] >= lcs[i + 1][j])) rows.push({ right: b[j++], op: 'add' });
    else rows.push({ left: a[i++], op: 'del' });
  }
  // the lines removed and added between two common ones, side by side: one row each
  const out: DiffRow[] = [];
  for (let k = 0; k < rows.length; ) {
    if (rows[k].op === 'same') {
      out.push(rows[k++]);
      continue;
    }
    const dels: string[] = [];
    const adds: string[] = [];
    for (; k < rows.length && rows[k].op !== 'same'; k++) {
      if (rows[k].op === 'del') dels.push(rows[k].left!);
      else adds.push(rows[k].right!);
    }
    for (let x = 0; x < Math.max(dels.length, adds.length); x++) {
      out.push(x >= dels.length ? { right: adds[x], op: 'add' } : x >= adds.length ? { left: dels[x], op: 'del' } : { left: dels[x], right: adds[x], op: 'change' });
    }
  }
  return out;
}
