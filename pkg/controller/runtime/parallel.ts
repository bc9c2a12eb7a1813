/** Runs `fn` over `items` with at most `limit` calls in flight; the first error rejects. */
export async function inParallel<T>(items: T[], fn: (t: T) => Promise<void>, limit = 32): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}
