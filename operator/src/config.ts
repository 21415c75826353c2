// The operator's configuration (the Helm chart renders it into a ConfigMap):
// one TypeBox schema gives the type, the defaults and the error messages,
// which name the field (`agents.image: Expected string`).
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse } from 'yaml';

const Role = Type.Union([Type.Literal('controller'), Type.Literal('ingest'), Type.Literal('status')]);
const HostPort = Type.String({ pattern: '^[^\\s:]+:[0-9]{1,5}$', description: 'host:port' });

export const OperatorConfig = Type.Object(
  {
    /** Where the agent DaemonSet, the Lease and the operator live. */
    namespace: Type.String({ default: 'irqtrace-system', minLength: 1 }),
    roles: Type.Array(Role, { default: ['controller', 'ingest', 'status'], minItems: 1, uniqueItems: true }),
    leaderElection: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        leaseName: Type.String({ default: 'irqtrace-operator' }),
        // client-go's defaults: a standby takes over at most this long after the leader's last renewal.
        leaseDurationSeconds: Type.Integer({ default: 15, minimum: 1 }),
        /** A leader that could not renew for this long stops leading. */
        renewDeadlineSeconds: Type.Integer({ default: 10, minimum: 1 }),
        retryPeriodSeconds: Type.Number({ default: 2, exclusiveMinimum: 0 }),
      },
      { default: {} },
    ),
    nats: Type.Object(
      {
        servers: Type.Array(Type.String({ pattern: '^(nats|tls)://' }), { default: ['nats://irqtrace-nats:4222'], minItems: 1 }),
        maxAgeHours: Type.Number({ default: 168, exclusiveMinimum: 0 }),
        maxBytes: Type.Integer({ default: 1024 ** 3, minimum: 1024 * 1024 }),
        duplicateWindowMinutes: Type.Number({ default: 10, exclusiveMinimum: 0 }),
      },
      { default: {} },
    ),
    ingest: Type.Object(
      {
        // The chart sets 0.0.0.0:9443 in the pod; alone, the operator listens on loopback only.
        listen: Type.String({ ...HostPort, default: '127.0.0.1:9443' }),
        tls: Type.Optional(
          Type.Object({ cert: Type.String(), key: Type.String(), ca: Type.Optional(Type.String()), requireClientCert: Type.Boolean({ default: true }) }),
        ),
        maxPendingPerAgent: Type.Integer({ default: 32, minimum: 1 }),
      },
      { default: {} },
    ),
    agents: Type.Object(
      {
        image: Type.String({ default: 'ghcr.io/irqtrace/agent:0.1.0' }),
        imagePullPolicy: Type.Union([Type.Literal('Always'), Type.Literal('IfNotPresent'), Type.Literal('Never')], { default: 'IfNotPresent' }),
        ingestAddress: Type.String({ default: 'irqtrace-ingest.irqtrace-system.svc:9443' }),
        tlsSecret: Type.Optional(Type.String()),
        tlsServerName: Type.Optional(Type.String()),
        priorityClassName: Type.Optional(Type.String()),
        resources: Type.Optional(
          Type.Object({
            requests: Type.Optional(Type.Record(Type.String(), Type.String())),
            limits: Type.Optional(Type.Record(Type.String(), Type.String())),
          }),
        ),
        /** Default: every taint tolerated (control-plane and dedicated nodes are traced too). */
        tolerations: Type.Optional(
          Type.Array(
            Type.Object({
              key: Type.Optional(Type.String()),
              operator: Type.Optional(Type.Union([Type.Literal('Exists'), Type.Literal('Equal')])),
              value: Type.Optional(Type.String()),
              effect: Type.Optional(Type.Union([Type.Literal('NoSchedule'), Type.Literal('PreferNoSchedule'), Type.Literal('NoExecute')])),
              tolerationSeconds: Type.Optional(Type.Integer()),
            }),
          ),
        ),
        metricsPort: Type.Integer({ default: 9101, minimum: 1, maximum: 65535 }),
        /**
         * Agents in the node's network namespace: for clusters where pods cannot
         * reach the ingest's Service (no kube-proxy), with ingestAddress on the node.
         */
        hostNetwork: Type.Boolean({ default: false }),
        /**
         * Label the operator's namespace pod-security.kubernetes.io/enforce=privileged
         * before the agents are created: they need the host (PID, paths, BPF, modules),
         * which a cluster default of baseline refuses. false: the admin labels it.
         */
        podSecurityLabel: Type.Boolean({ default: true }),
      },
      { default: {} },
    ),
    metrics: Type.Object({ listen: HostPort }, { default: { listen: '127.0.0.1:9102' } }),
    statusIntervalMs: Type.Integer({ default: 2000, minimum: 100 }),
    /** How long a deleted IrqTrace waits for its nodes to confirm they stopped tracing it. */
    unloadTimeoutSeconds: Type.Integer({ default: 120, minimum: 1 }),
  },
  { additionalProperties: false },
);

export type OperatorConfig = Static<typeof OperatorConfig>;

export class OperatorConfigError extends Error {}

/** The config from YAML text (empty: all defaults); throws naming the first bad fields. */
export function parseOperatorConfig(text: string): OperatorConfig {
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (err) {
    throw new OperatorConfigError(`not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`);
  }
  const value = Value.Default(OperatorConfig, Value.Clone(raw));
  const errors = [...Value.Errors(OperatorConfig, value)].slice(0, 3);
  if (errors.length) {
    const field = (path: string) => path.split('/').slice(1).map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i ? `.${p}` : p)).join('') || '(top)';
    throw new OperatorConfigError(errors.map((e) => `${field(e.path)}: ${e.message}`).join('; '));
  }
  const config = value as OperatorConfig;
  const le = config.leaderElection;
  // As client-go insists: a leader gives up before its lease can expire, and retries before it must give up.
  if (le.renewDeadlineSeconds >= le.leaseDurationSeconds) throw new OperatorConfigError(`leaderElection.renewDeadlineSeconds: ${le.renewDeadlineSeconds} must be less than leaseDurationSeconds (${le.leaseDurationSeconds})`);
  if (le.retryPeriodSeconds >= le.renewDeadlineSeconds) throw new OperatorConfigError(`leaderElection.retryPeriodSeconds: ${le.retryPeriodSeconds} must be less than renewDeadlineSeconds (${le.renewDeadlineSeconds})`);
  return config;
}
