// The container images (images/*.Dockerfile) built with buildah from Debian,
// on a local stand-in for the Node.js base image (images/build-test-base.sh:
// no registry here), with chroot isolation. Then looked into: the operator
// runs as non-root and answers; the agent has its CLI, the eBPF loader (all
// libraries found), the module's source and the tools to build and load it.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../test/lib/paths.js';
import { run } from '../../test/lib/process.js';

const S = ['--storage-driver', 'vfs'];

async function buildah(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run('buildah', [...S, ...args], { timeoutMs, cwd: repoRoot });
  if (r.code !== 0) throw new Error(`buildah ${args.join(' ')}: ${(r.stderr || r.stdout).slice(-3000)}`);
  return r.stdout;
}

async function build(dockerfile: string, tag: string, base: string): Promise<void> {
  // No layer cache: with the vfs driver every layer is a full copy (gigabytes a build).
  await buildah(['bud', '--isolation', 'chroot', '--layers=false', '--build-arg', `NODE_IMAGE=${base}`, '--build-arg', `RUNTIME_IMAGE=${base}`, '-f', join('images', dockerfile), '-t', tag, '.'], 900_000);
}

/** Runs a command in a fresh container of the image; its stdout. */
async function inImage(image: string, command: string[], user?: string): Promise<string> {
  const c = (await buildah(['from', '--quiet', image])).trim();
  try {
    return await buildah(['run', '--isolation', 'chroot', ...(user ? ['--user', user] : []), c, '--', ...command]);
  } finally {
    await buildah(['rm', c]);
  }
}

let base = '';

// The built images are removed afterwards (the base stays: it is the cache).
afterAll(async () => {
  await buildah(['rm', '--all']);
  for (const image of ['localhost/irqtrace/operator:test', 'localhost/irqtrace/agent:test']) await run('buildah', [...S, 'rmi', '-f', image]);
  await run('buildah', [...S, 'rmi', '--prune']);
});

describe('the container images', () => {
  it('builds the operator image: non-root, answers, entrypoint as the chart expects', async () => {
    const made = await run(join(repoRoot, 'images', 'build-test-base.sh'), [], { timeoutMs: 600_000 });
    if (made.code !== 0) throw new Error(`build-test-base.sh: ${made.stderr}`);
    base = made.stdout.trim().split('\n').at(-1) ?? '';
    await build('operator.Dockerfile', 'localhost/irqtrace/operator:test', base);
    const config = JSON.parse(await buildah(['inspect', '--type', 'image', 'localhost/irqtrace/operator:test'])) as { OCIv1: { config: { User: string; Entrypoint: string[]; Cmd: string[] } } };
    expect(config.OCIv1.config).toMatchObject({ User: '65532:65532', Entrypoint: ['/nodejs/bin/node', '/opt/irqtrace/operator/dist/main.js'], Cmd: ['run', '--config', '/etc/irqtrace/operator.yaml'] });
    const crd = await inImage('localhost/irqtrace/operator:test', ['/nodejs/bin/node', '/opt/irqtrace/operator/dist/main.js', 'crd'], '65532:65532');
    expect(crd).toMatch(/^apiVersion: apiextensions\.k8s\.io\/v1\nkind: CustomResourceDefinition\n/);
  });

  it('builds the agent image with the loader, the module source and what building it needs', async () => {
    await build('agent.Dockerfile', 'localhost/irqtrace/agent:test', base);
    const help = await inImage('localhost/irqtrace/agent:test', ['node', '/opt/irqtrace/agent/dist/cli/main.js', '--help']);
    expect(help).toMatch(/^Usage: irqtrace /);
    const tools = await inImage('localhost/irqtrace/agent:test', ['sh', '-c', 'for x in insmod rmmod gcc make; do command -v $x >/dev/null || echo "missing $x"; done; ldd /usr/lib/irqtrace/irqtrace-bpf | grep "not found"; test -f /usr/lib/irqtrace/kmod/Makefile || echo "no kmod source"; echo "int f(void) { return 0; }" | gcc -O2 -x c -c -o /tmp/t.o - || echo "gcc cannot compile"; echo "loader=$IRQTRACE_BPF_LOADER"']);
    expect(tools.trim()).toBe('loader=/usr/lib/irqtrace/irqtrace-bpf');
    // The init container's command.
    expect(await inImage('localhost/irqtrace/agent:test', ['node', '/opt/irqtrace/agent/dist/cli/main.js', 'driver', 'load', '--help'])).toMatch(/--cache <dir>/);
  });
});
