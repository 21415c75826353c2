// One operator process, with the roles its config names: the ingest on every
// replica; the controller and the status aggregator on the elected leader
// only (or always, with leader election off). /metrics, /healthz, /readyz.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import type { OperatorConfig } from './config.js';
import { TraceController } from './controller/controller.js';
import { IngestMetrics } from './ingest/metrics.js';
import { ClusterNodeConfigs } from './ingest/node_configs.js';
import { PodMetadataDirectory } from './ingest/pod_directory.js';
import { StreamPublisher, natsAuthFromEnv } from './ingest/publisher.js';
import { IngestServer } from './ingest/server.js';
import { AppliedConfigReader, AppliedConfigWriter } from './ingest/applied.js';
import { LeaderElector } from './leader/lease.js';
import { LeaderTerms } from './leader/terms.js';
import { SharedInformers } from './informers.js';
import type { RoleStarter } from './leader/terms.js';
import { StatusAggregator } from './status/aggregator.js';

export interface RunningOperator {
  /** host:port the ingest listens on, when it runs. */
  ingestPort?: number;
  metricsPort: number;
  isLeader(): boolean;
  /**
   * Settles with the error if the leader roles could not start in a term (after runOperator
   * returned): the caller decides what then (the command exits, for its Deployment to restart it).
   */
  failed: Promise<Error>;
  stop(): Promise<void>;
}

const splitHostPort = (hp: string): [string, number] => {
  const at = hp.lastIndexOf(':');
  return [hp.slice(0, at), Number(hp.slice(at + 1))];
};

export interface RunOptions {
  /** This replica in the leader election (default: $POD_NAME, else host and pid). */
  identity?: string;
}

export async function runOperator(config: OperatorConfig, kubeConfig: k8s.KubeConfig, log: Logger, options: RunOptions = {}): Promise<RunningOperator> {
  const metrics = new IngestMetrics();
  const leaderGauge = new Gauge({ name: 'irqtrace_operator_leader', help: '1 while this replica leads (runs the controller and the status aggregator)', registers: [metrics.registry] });
  const stops: (() => Promise<void>)[] = [];
  const roles = new Set(config.roles);
  const identity = options.identity ?? process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
  let ingestPort: number | undefined;
  // One list and watch of IrqTraces and of Nodes for every role of this process.
  const informers = new SharedInformers(kubeConfig, log);
  stops.push(() => informers.stop());

  if (roles.has('ingest')) {
    const publisher = await StreamPublisher.connect(
      config.nats.servers,
      { maxAgeMs: config.nats.maxAgeHours * 3600_000, maxBytes: config.nats.maxBytes, duplicateWindowMs: config.nats.duplicateWindowMinutes * 60_000 },
      log,
      'irqtrace-ingest',
      natsAuthFromEnv(),
    );
    const configs = new ClusterNodeConfigs(kubeConfig, log, informers);
    const pods = new PodMetadataDirectory(kubeConfig, log);
    await Promise.all([configs.start(), pods.start()]);
    const t = config.ingest.tls;
    const applied = new AppliedConfigWriter(publisher.nc, log);
    const server = new IngestServer({
      publisher,
      applied,
      configs,
      pods,
      metrics,
      log,
      name: identity,
      maxPending: config.ingest.maxPendingPerAgent,
      ...(t ? { tls: { cert: readFileSync(t.cert), key: readFileSync(t.key), ...(t.ca ? { ca: readFileSync(t.ca) } : {}), requireClientCert: t.requireClientCert } } : {}),
    });
    const [host, port] = splitHostPort(config.ingest.listen);
    ingestPort = await server.listen(host, port);
    log.info({ listen: `${host}:${ingestPort}`, tls: Boolean(t) }, 'ingest listening');
    stops.push(async () => {
      await server.close();
      applied.stop();
      await Promise.all([configs.stop(), pods.stop()]);
      await publisher.close();
    });
  }

  // The leader's roles, started and stopped with each term of leadership.
  const roleStarters: RoleStarter[] = [];
  if (roles.has('controller')) {
    roleStarters.push(async (signal) => {
      const applied = await AppliedConfigReader.connect(config.nats.servers, log, natsAuthFromEnv());
      const controller = new TraceController({
        kubeConfig,
        log,
        informers,
        applied,
        unloadTimeoutMs: config.unloadTimeoutSeconds * 1000,
        agents: {
          namespace: config.namespace,
          image: config.agents.image,
          imagePullPolicy: config.agents.imagePullPolicy,
          ingestAddress: config.agents.ingestAddress,
          metricsPort: config.agents.metricsPort,
          hostNetwork: config.agents.hostNetwork,
          podSecurityLabel: config.agents.podSecurityLabel,
          ...(config.agents.tlsSecret ? { tlsSecret: config.agents.tlsSecret } : {}),
          ...(config.agents.tlsServerName ? { tlsServerName: config.agents.tlsServerName } : {}),
          ...(config.agents.priorityClassName ? { priorityClassName: config.agents.priorityClassName } : {}),
          ...(config.agents.resources ? { resources: config.agents.resources } : {}),
          ...(config.agents.tolerations ? { tolerations: config.agents.tolerations } : {}),
        },
      });
      try {
        await controller.start(signal);
      } catch (err) {
        await applied.stop();
        throw err;
      }
      return { stop: async () => { await controller.stop(); await applied.stop(); } };
    });
  }
  if (roles.has('status')) {
    roleStarters.push(async (signal) => {
      const aggregator = new StatusAggregator({ servers: config.nats.servers, kubeConfig, log, informers, statusIntervalMs: config.statusIntervalMs, registry: metrics.registry, auth: natsAuthFromEnv() });
      await aggregator.start(signal);
      return aggregator;
    });
  }
  let fail: (err: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  const terms = new LeaderTerms(roleStarters, log, {
    onLeading: (leading) => { leaderGauge.set(leading ? 1 : 0); },
    onFailed: (err) => {
      log.error({ err: String(err) }, 'could not start the leader roles');
      fail(err instanceof Error ? err : new Error(String(err)));
    },
  });
  const leaderRoles = roleStarters.length > 0;
  const le = config.leaderElection;
  if (leaderRoles && le.enabled) {
    const elector = new LeaderElector(kubeConfig, {
      namespace: config.namespace,
      name: le.leaseName,
      identity,
      log,
      leaseDurationMs: le.leaseDurationSeconds * 1000,
      renewDeadlineMs: le.renewDeadlineSeconds * 1000,
      retryPeriodMs: le.retryPeriodSeconds * 1000,
      onStartedLeading: () => { terms.begin(); },
      onStoppedLeading: () => { terms.end(); },
    });
    elector.start();
    stops.push(async () => { await terms.stop(); await elector.stop(); });
  } else if (leaderRoles) {
    terms.begin();
    stops.push(() => terms.stop());
  }

  const [mhost, mport] = splitHostPort(config.metrics.listen);
  const http = await serve(metrics, mhost, mport, () => (roles.has('ingest') && ingestPort === undefined ? 'ingest not listening' : undefined));
  const address = http.address();
  stops.push(() => new Promise<void>((resolve) => { http.close(() => { resolve(); }); }));
  return {
    ...(ingestPort === undefined ? {} : { ingestPort }),
    metricsPort: typeof address === 'object' && address ? address.port : mport,
    isLeader: () => terms.leading,
    failed,
    stop: async () => { for (const stop of stops.reverse()) await stop(); },
  };
}

function serve(metrics: IngestMetrics, host: string, port: number, notReady: () => string | undefined): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(await metrics.registry.metrics());
      } else if (req.url === '/healthz') {
        res.writeHead(200).end('ok\n');
      } else if (req.url === '/readyz') {
        const why = notReady();
        res.writeHead(why ? 503 : 200).end(`${why ?? 'ready'}\n`);
      } else {
        res.writeHead(404).end();
      }
    })();
  });
  return new Promise((resolve) => { server.listen(port, host, () => { resolve(server); }); });
}
