// `npm run build:console`: bundles the web console into pkg/console/dist when its sources changed
// (hack/ensure-deps.sh runs it; the apiserver also builds a missing or stale bundle itself).
import { DIST_DIR, ensureBundle } from '../pkg/console/bundle.ts';

const b = await ensureBundle();
console.error(`berth: console bundle in ${DIST_DIR} (${[...b.files.keys()].join(', ')})`);
