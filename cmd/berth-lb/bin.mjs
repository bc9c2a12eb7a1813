#!/usr/bin/env node
// Runs the TypeScript entry point through tsx: berth has no build step (a decision, not an omission).
import { register } from 'tsx/esm/api';
register();
await import('./main.ts');
