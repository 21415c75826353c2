// `irqtrace agent`: the node agent as a service (DaemonSet pod, or systemd
// unit on a machine outside Kubernetes). `list` and `clear` are store_cmd.ts.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { ConfigError } from '../config/kernel_config.js';
import { loadAgentConfig } from '../config/file.js';
import type { AgentFileConfig } from '../config/file.js';
import { AgentMetrics, serveMetrics } from '../daemon/metrics.js';
import { NodeAgent } from '../daemon/node_agent.js';
import { EventStore } from '../daemon/store.js';
import { backendOptionsOf } from './host_options.js';
import type { HostOptions } from './host_options.js';

export interface AgentCommandOptions extends HostOptions {
  config?: string;
  node?: string;
  ingest?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  spool?: string;
  store?: string;
  metricsPort?: string;
  metricsHost: string;
  localSocket: string;
}

import { DEFAULT_STORE } from './defaults.js';

export { DEFAULT_STORE };

export async function runAgent(o: AgentCommandOptions): Promise<number> {
  const log = pino({ base: { component: 'irqtrace-agent' } });
  let file: AgentFileConfig = { traces: [] };
  try {
    if (o.config) file = loadAgentConfig(o.config);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'bad configuration');
    process.stderr.write(`irqtrace: ${(err as Error).message}\n`);
    return 2;
  }
  const address = o.ingest ?? file.ingest?.address;
  const read = (path: string | undefined) => (path ? readFileSync(path) : undefined);
  let tls;
  try {
    const ca = read(o.tlsCa ?? file.ingest?.ca);
    const cert = read(o.tlsCert ?? file.ingest?.cert);
    const key = read(o.tlsKey ?? file.ingest?.key);
    const serverName = o.tlsServerName ?? file.ingest?.serverName;
    tls = ca || cert ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(serverName ? { serverName } : {}) } : undefined;
  } catch (err) {
    process.stderr.write(`irqtrace: TLS files: ${(err as Error).message}\n`);
    return 2;
  }
  const metrics = new AgentMetrics();
  const storePath = o.store ?? file.store ?? (address ? undefined : DEFAULT_STORE);
  const agent = new NodeAgent({
    node: o.node ?? file.node ?? process.env.NODE_NAME ?? hostname(),
    log,
    metrics,
    ...(address ? { ingest: { address, ...(tls ? { tls } : {}) } } : { traces: file.traces }),
    ...(storePath ? { store: new EventStore(storePath) } : {}),
    ...((o.spool ?? file.spool) ? { spoolDir: o.spool ?? file.spool } : {}),
    backend: backendOptionsOf(o),
    proc: o.proc,
    cgroupRoot: o.cgroupRoot,
    podLogs: o.podLogs,
    ...(o.localSocket ? { localSocket: o.localSocket } : {}),
  });
  const port = o.metricsPort !== undefined ? Number(o.metricsPort) : file.metricsPort;
  const server = port !== undefined ? await serveMetrics(metrics, port, () => agent.ready(), o.metricsHost) : undefined;
  await agent.start();
  log.info({ ingest: address ?? null, store: storePath ?? null, metricsPort: port ?? null }, 'agent started');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({}, 'stopping: detaching and unloading what this agent loaded');
  await agent.stop();
  server?.close();
  return 0;
}

export { ConfigError };
