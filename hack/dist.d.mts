// Types of hack/dist.mjs (plain JavaScript: it runs before tsx or the bundle is loaded).
export const ROOT: string;
export const DIST: string;
export const MANIFEST: string;
export const BUILD_FILES: string[];
/** undefined when ROOT/dist (or root/dist) is fresh (for `entry`, when given), else why not */
export function staleReason(entry?: string, root?: string): string | undefined;
/** runs one binary: its bundle when fresh, else cmd/ENTRY/main.ts through tsx */
export function launch(entry: string, opts?: { sourceMaps?: boolean }): Promise<void>;
