import { describe, expect, it } from 'vitest';
import { agentCommand } from '../../../agent/cli/agent-command.js';
import { demoCommand } from '../../../hub/cli/demo-command.js';
import { hubCommand } from '../../../hub/cli/hub-command.js';
import {
  componentCommands,
  componentDescription,
  runTgfed,
} from '../../../hub/cli/tgfed-program.js';
import { workerCommand } from '../../../hub/cli/worker-command.js';
import { tgfedVersion } from '../../../shared/index.js';

async function tgfed(argv: readonly string[]) {
  let stdout = '';
  let stderr = '';
  let connects = 0;
  const code = await runTgfed(argv, {
    io: {
      stdout: { write: (chunk: string) => (stdout += chunk) },
      stderr: { write: (chunk: string) => (stderr += chunk) },
      readStdin: () => Promise.resolve(''),
      env: {},
      homeDir: '/nonexistent',
      now: () => 0,
    },
    connect: () => {
      connects++;
      throw new Error('no hub in this test');
    },
  });
  return { code, stdout, stderr, connects };
}

describe('tgfed', () => {
  it('lists the components with the descriptions of the real commands', () => {
    expect(componentDescription('agent')).toBe(agentCommand().description());
    expect(componentDescription('hub')).toBe(hubCommand().description());
    expect(componentDescription('worker')).toBe(workerCommand().description());
    expect(componentDescription('demo')).toBe(demoCommand().description());
  });

  it('loads only the invoked component, also for tgfed help <component>', async () => {
    const hasSettings = (commands: { options: readonly unknown[] }[]) =>
      commands.map((c) => c.options.length > 0);
    expect(hasSettings(await componentCommands(['hub', '--help']))).toEqual([
      false,
      true,
      false,
      false,
    ]);
    expect(hasSettings(await componentCommands(['help', 'agent']))).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect(hasSettings(await componentCommands(['demo']))).toEqual([false, false, false, true]);
    expect(hasSettings(await componentCommands(['get', 'clusters']))).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });

  it('shows help with every command and the exit codes, and exits 0', async () => {
    const run = await tgfed(['--help']);
    expect(run.code).toBe(0);
    for (const name of [
      'agent',
      'hub',
      'worker',
      'demo',
      'apply',
      'delete',
      'get',
      'status',
      'diff',
      'reconcile',
      'release',
    ]) {
      expect(run.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    }
    expect(run.stdout).toContain('Exit codes:\n  0  ok');
    expect(run.stdout).toContain('  4  unauthenticated, or the role does not allow the operation');
    expect((await tgfed(['--version'])).stdout).toBe(`${tgfedVersion()}\n`);
  });

  it('shows each admin command’s own help with its connection flags', async () => {
    for (const command of ['apply', 'delete', 'get', 'status', 'diff', 'reconcile', 'release']) {
      const run = await tgfed([command, '--help']);
      expect(run.code, command).toBe(0);
      expect(run.stdout, command).toMatch(new RegExp(`^Usage: tgfed ${command} `));
      expect(run.stdout, command).toContain('--hub <host:port>');
      expect(run.stdout, command).toContain('-o, --output <format>');
      expect(run.stdout, command).toContain('Exit codes:');
    }
    const hub = await tgfed(['hub', '--help']);
    expect(hub.stdout).toContain('--redis-url');
    expect(hub.stdout).not.toContain('Exit codes:');
  });

  it('answers usage errors with exit 2 and one line, before calling any hub', async () => {
    expect(await tgfed(['frob'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "tgfed: unknown command 'frob' (see tgfed --help)\n",
      connects: 0,
    });
    expect(await tgfed(['diff'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "tgfed diff: missing required argument 'arn' (see tgfed diff --help)\n",
      connects: 0,
    });
    expect(await tgfed(['apply', '--hub', 'h:1'])).toEqual({
      code: 2,
      stdout: '',
      stderr:
        "tgfed apply: required option '-f, --filename <file>' not specified (see tgfed apply --help)\n",
      connects: 0,
    });
    expect(await tgfed(['delete', 'binding', 'a', '-f', 'x.yaml', '--hub', 'h:1'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'tgfed delete: pass either -f <file> or binding <name...>, not both\n',
      connects: 0,
    });
    expect(await tgfed(['delete', 'clusters', 'east', '--hub', 'h:1'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'tgfed delete: only bindings can be deleted, not clusters\n',
      connects: 0,
    });
    // The kind is checked before the hub is resolved.
    expect(await tgfed(['get', 'pods'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^tgfed get: unknown kind "pods"/) as unknown,
      connects: 0,
    });
    expect((await tgfed([])).code).toBe(2);
  });
});
