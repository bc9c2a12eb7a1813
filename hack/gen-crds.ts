// Writes crds/<plural>.berth.dev.yaml, one CustomResourceDefinition per kind, generated
// from the zod schemas (pkg/api). `npm run gen:crds`; test/api/crds.test.ts fails when stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { renderCrds } from '../pkg/api/crds.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'crds');
mkdirSync(dir, { recursive: true });
for (const [file, text] of renderCrds()) {
  writeFileSync(join(dir, file), text);
  console.log(`wrote crds/${file}`);
}
