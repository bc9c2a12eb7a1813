/** A side-by-side line diff (longest common subsequence), for two task definition revisions. */

export interface DiffRow {
  left?: string;
  right?: string;
  /** same: on both sides; del: only on the left; add: only on the right */
  op: 'same' | 'del' | 'add';
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
  return rows;
}
