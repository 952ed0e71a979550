#!/usr/bin/env node
// Process entry of a worker (`node dist/hub/worker-main.js --redis-url …`); the `tgfed` CLI
// mounts the same command as `tgfed worker`.
import { workerCommand } from './cli/worker-command.js';

await workerCommand().parseAsync(process.argv);
