#!/usr/bin/env node
// Process entry of the agent (`node dist/agent/main.js --cluster-id … --hub-address …`); the
// `tgfed` CLI mounts the same command as `tgfed agent`.
import { agentCommand } from './cli/agent-command.js';

await agentCommand().parseAsync(process.argv);
