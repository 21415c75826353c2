// The IrqTrace API, once: these TypeBox schemas are both the TypeScript types
// the operator works with (Static<>) and the OpenAPI schema of the CRD
// (api/crd.ts), with the CEL rules the API server enforces. A bad spec is
// refused at `kubectl apply`, with the field named, before any node sees it.
import { Type } from '@sinclair/typebox';
import type { Static, TSchema } from '@sinclair/typebox';
import { LIMITS, durationText } from '@irqtrace/proto/limits';

// Kubernetes takes a subset of JSON Schema: no const or anyOf of literals, no
// patternProperties. These two build what it takes, typed as TypeBox would.
function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string; default?: T[number] } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

function StringMap<V extends TSchema>(value: V, options: { maxProperties?: number } = {}) {
  return Type.Unsafe<Record<string, Static<V>>>({ type: 'object', additionalProperties: value, ...options });
}

/** An int64 (nanoseconds, counts). */
const Int64 = (options: { description?: string } = {}) => Type.Integer({ format: 'int64', ...options });

/** A CEL rule on a schema node (x-kubernetes-validations). */
export interface CelRule {
  rule: string;
  message: string;
  /** A CEL string expression for the message (it can show the value); message is the fallback. */
  messageExpression?: string;
  /** Where the error points, relative to the node (e.g. ".irqs"). */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

const cel = (...rules: CelRule[]) => ({ 'x-kubernetes-validations': rules });

// Go/CEL duration syntax (what `duration()` in CEL parses): 500us, 1.5ms, 2s, 1h30m.
const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$';

/** A duration string with CEL bounds: the pattern says what a duration is, the rule how long. */
function Duration(description: string, min: string, max: string, options: { default?: string } = {}) {
  return Type.String({
    description: `${description} A duration: 500us, 1.5ms, 2s, 1h30m; from ${min} to ${max}.`,
    pattern: DURATION_PATTERN,
    maxLength: 32,
    ...options,
    ...cel({
      // Only a well-formed value is measured (the pattern reports a malformed one).
      rule: `!self.matches(r'${DURATION_PATTERN}') || (duration(self) >= duration('${min}') && duration(self) <= duration('${max}'))`,
      message: `must be from ${min} to ${max}`,
      messageExpression: `'must be from ${min} to ${max}, not ' + self`,
    }),
  });
}

/** A Kubernetes label key or value, as metav1.LabelSelector takes them. */
const LabelKey = Type.String({
  pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$',
  maxLength: 317,
  description: 'A label key: an optional DNS-subdomain prefix and /, then a name of at most 63 characters.',
});
const LabelValue = Type.String({
  pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$',
  maxLength: 63,
  description: 'A label value: at most 63 characters, alphanumeric at both ends.',
});

export const NodeSelector = Type.Object(
  {
    matchLabels: Type.Optional(StringMap(LabelValue, { maxProperties: 32 })),
    matchExpressions: Type.Optional(
      Type.Array(
        Type.Object(
          {
            key: LabelKey,
            operator: StringEnum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: Type.Optional(Type.Array(LabelValue, { maxItems: 64 })),
          },
          cel(
            {
              rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
              message: 'In and NotIn need values; Exists and DoesNotExist take none',
              fieldPath: '.values',
            },
          ),
        ),
        { maxItems: 16 },
      ),
    ),
  },
  {
    description: 'The nodes to trace, by their labels (a metav1.LabelSelector). Empty or absent: every node.',
    ...cel({
      rule: `!has(self.matchLabels) || self.matchLabels.all(k, k.matches(r'${LabelKey.pattern}'))`,
      message: 'every matchLabels key must be a valid label key',
      fieldPath: '.matchLabels',
    }),
  },
);

const IRQ_NAME_PATTERN = '^[A-Za-z0-9_.:@/+-]+\\*?$';

export const Target = Type.Object(
  {
    all: Type.Optional(
      Type.Boolean({ description: 'Interrupts off on every CPU (irqs-off sections, and softirqs-off with softirqs: true), and every IRQ line masked with disable_irq().' }),
    ),
    irqs: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0, maximum: 65535 }), {
        description: 'IRQ lines (numbers, as in /proc/interrupts) to watch being masked with disable_irq()..enable_irq().',
        maxItems: 256,
        'x-kubernetes-list-type': 'set',
      }),
    ),
    irqNames: Type.Optional(
      Type.Array(Type.String({ pattern: IRQ_NAME_PATTERN, maxLength: 64 }), {
        description: 'IRQ lines by the action name in /proc/interrupts (e.g. nvme0q1, eth0-TxRx-*), resolved on each node; a trailing * matches a prefix.',
        maxItems: 64,
        'x-kubernetes-list-type': 'set',
      }),
    ),
  },
  {
    description: 'What to watch: all: true, or IRQ lines by number or name.',
    ...cel({
      rule: '(has(self.all) && self.all) != ((has(self.irqs) && size(self.irqs) > 0) || (has(self.irqNames) && size(self.irqNames) > 0))',
      message: 'set all: true, or list irqs and/or irqNames, not both and not neither',
    }),
  },
);

export const IrqTraceSpec = Type.Object(
  {
    nodeSelector: Type.Optional(NodeSelector),
    target: Target,
    threshold: Type.Optional(
      Duration('Sections at least this long are violations; shorter ones only count in histograms.', durationText(LIMITS.thresholdNs.min), durationText(LIMITS.thresholdNs.max), {
        default: durationText(LIMITS.thresholdNs.default),
      }),
    ),
    method: Type.Optional(
      StringEnum(['auto', 'exact', 'hybrid', 'sampled'], {
        description:
          'exact: every section, both ends exact, via the preemptirq tracepoints (kernels with CONFIG_TRACE_IRQFLAGS). ' +
          'hybrid: stock x86 kernels: sampled, with each end exact where it is hookable (a section opened by an irq-saving lock function is exact at the start; one ended by an unlock or by the sampler\'s late interrupt, at the end; the scheduler\'s and an interrupt handler\'s, at both; the eBPF backend hooks only interrupts, and samples the rest); each event says which of its ends are exact. ' +
          'sampled: per-CPU hrtimers (any kernel): a lower bound, the start within one samplePeriod, the end exact. ' +
          'auto: exact where the node can, else hybrid where it can, else sampled.',
        default: 'auto',
      }),
    ),
    backend: Type.Optional(
      StringEnum(['auto', 'kmod', 'ebpf'], {
        description: 'kmod: the irqtrace kernel module; ebpf: the eBPF programs; auto: the module, else eBPF.',
        default: 'auto',
      }),
    ),
    samplePeriod: Type.Optional(
      Duration(
        'The sampling period of the sampled method: the error bound of what it measures (each section is measured up to one period short). A section is sure to be recorded once it is threshold + samplePeriod long; a shorter one over the threshold is caught on some occasions, in proportion to its length.',
        durationText(LIMITS.periodNs.min),
        durationText(LIMITS.periodNs.max),
        { default: durationText(LIMITS.periodNs.default) },
      ),
    ),
    softirqs: Type.Optional(Type.Boolean({ description: 'Also trace sections with softirqs (bottom halves) off.', default: false })),
    stacks: Type.Optional(Type.Boolean({ description: 'Record the kernel stack of each violation.', default: true })),
    duration: Type.Optional(Duration('Stop tracing this long after the trace was created; absent: until deleted.', '1s', '8760h')),
  },
  cel(
    {
      rule: "!has(self.softirqs) || !self.softirqs || (has(self.target.all) && self.target.all)",
      message: 'softirqs needs target.all: true (softirqs-off sections are per CPU, not per IRQ line)',
      fieldPath: '.softirqs',
    },
    {
      rule: "!has(self.softirqs) || !self.softirqs || !has(self.backend) || self.backend != 'ebpf'",
      message: 'softirqs needs the kernel module (backend kmod or auto): the eBPF backend cannot measure softirqs off',
      fieldPath: '.softirqs',
    },
  ),
);

const Condition = Type.Object({
  type: Type.String({ maxLength: 64 }),
  status: StringEnum(['True', 'False', 'Unknown']),
  reason: Type.String({ maxLength: 128 }),
  message: Type.String({ maxLength: 1024 }),
  lastTransitionTime: Type.String({ format: 'date-time' }),
  observedGeneration: Type.Optional(Int64()),
});

/** Who did it: the last or worst violation on a node. */
export const Violation = Type.Object({
  time: Type.String({ format: 'date-time' }),
  kind: Type.String({ description: 'irqs_off, softirqs_off or irq_line' }),
  durationNs: Int64(),
  method: Type.Optional(Type.String({ description: 'How the section was measured: exact, hybrid or sampled' })),
  ends: Type.Optional(
    Type.String({ description: 'How exact its start and end are: exact, or within ±the error bound (a sampled start is up to one samplePeriod early): exact/exact, ±1.00ms/exact' }),
  ),
  cpu: Type.Optional(Type.Integer()),
  irq: Type.Optional(Type.Integer()),
  context: Type.Optional(Type.String({ description: 'The interrupt code the section belongs to (irq 24 handler (nvme0q1), hrtimer tick_sched_timer, softirq NET_RX); absent: the task\'s. comm and pid then name the task it interrupted, and no pod is given.' })),
  comm: Type.Optional(Type.String()),
  pid: Type.Optional(Type.Integer()),
  pod: Type.Optional(Type.String({ description: 'namespace/name, when the task is in a pod' })),
  node: Type.Optional(Type.String()),
  topFrames: Type.Optional(Type.Array(Type.String(), { maxItems: 4 })),
});

export const NodeStatus = Type.Object({
  name: Type.String(),
  backend: Type.Optional(Type.String()),
  method: Type.Optional(Type.String()),
  phase: Type.Optional(Type.String({ description: 'Running, Failed (with message), NotReporting' })),
  message: Type.Optional(Type.String({ maxLength: 512 })),
  violations: Int64(),
  maxDurationNs: Int64(),
  lost: Type.Optional(Int64({ description: 'Sections or events lost on the way, any stage' })),
  hypervisorStalls: Type.Optional(Int64({ description: "Sampled sections over the threshold that were the host's (the vCPU's steal clock ran for at least half of each): not violations" })),
  lastSeen: Type.Optional(Type.String({ format: 'date-time' })),
  lastViolation: Type.Optional(Violation),
});

/** Most nodes listed in status.nodes: the object stays far below etcd's limit at any cluster size. */
export const MAX_STATUS_NODES = 50;
/** Worst offenders listed in status.worst. */
export const MAX_WORST = 5;

export const IrqTraceStatus = Type.Object({
  observedGeneration: Type.Optional(Int64()),
  conditions: Type.Optional(Type.Array(Condition, { maxItems: 8, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })),
  targetSummary: Type.Optional(Type.String({ description: 'The target in words, for kubectl get: all, irq 24,25, irq nvme0q*' })),
  nodesSummary: Type.Optional(Type.String({ description: 'reporting/targeted, for kubectl get' })),
  nodesTargeted: Type.Optional(Type.Integer()),
  nodesReporting: Type.Optional(Type.Integer()),
  violations: Type.Optional(Int64()),
  maxDurationNs: Type.Optional(Int64()),
  worst: Type.Optional(Type.String({ description: 'The longest section, in words (for kubectl get)' })),
  lost: Type.Optional(Int64()),
  hypervisorStalls: Type.Optional(Int64({ description: "Sections over the threshold that were the host's, on every node: not violations" })),
  worstOffenders: Type.Optional(Type.Array(Violation, { maxItems: MAX_WORST })),
  nodes: Type.Optional(Type.Array(NodeStatus, { maxItems: MAX_STATUS_NODES, description: `Nodes with violations or problems, worst first; at most ${MAX_STATUS_NODES}.` })),
  nodesOmitted: Type.Optional(Type.Integer({ description: 'Nodes with violations or problems not listed in nodes' })),
});

export type IrqTraceSpec = Static<typeof IrqTraceSpec>;
export type IrqTraceStatus = Static<typeof IrqTraceStatus>;
export type NodeStatus = Static<typeof NodeStatus>;
export type Violation = Static<typeof Violation>;
export type NodeSelector = Static<typeof NodeSelector>;

export interface IrqTrace {
  apiVersion: string;
  kind: string;
  metadata: { name: string; generation?: number; uid?: string; resourceVersion?: string; creationTimestamp?: string; deletionTimestamp?: string; finalizers?: string[] };
  spec: IrqTraceSpec;
  status?: IrqTraceStatus;
}

/** The schemas as TSchema, for the CRD builder. */
export const schemas: Record<'spec' | 'status', TSchema> = { spec: IrqTraceSpec, status: IrqTraceStatus };
