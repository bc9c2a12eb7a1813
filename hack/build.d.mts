// Types of hack/build.mjs.
export const EXTERNAL: string[];
/** the binaries: cmd/NAME/main.ts */
export function entries(): string[];
export function build(): Promise<{ entries: string[]; inputs: number; ms: number }>;
