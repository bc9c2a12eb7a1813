#!/usr/bin/env node
// Runs the bundle in dist/ (npm run build) when it is fresh, else main.ts through tsx.
import { launch } from '../../hack/dist.mjs';
await launch('berth-controller-manager');
