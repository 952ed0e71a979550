#!/usr/bin/env node
// Process entry of the hub (`node dist/hub/main.js --redis-url … --clusters-file …`); the `tgfed`
// CLI mounts the same command as `tgfed hub`.
import { hubCommand } from './cli/hub-command.js';

await hubCommand().parseAsync(process.argv);
