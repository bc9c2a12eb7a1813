#!/usr/bin/env node
// Runs the TypeScript entry point through tsx: berth has no build step (decided once, issue 2).
import { register } from 'tsx/esm/api';
register();
await import('./main.ts');
