import { describe, expect, it } from 'vitest';
import { irqtrace, toBigInt, toLong, PROTOCOL_VERSION } from '@irqtrace/proto';

const v1 = irqtrace.v1;

// `never` keeps T inferred from decode (the class), not from encode's looser
// interface parameter.
function roundTrip<T>(type: { encode(m: never): { finish(): Uint8Array }; decode(b: Uint8Array): T }, message: T): T {
  return type.decode(type.encode(message as never).finish());
}

const kernelAddress = 0xffffffffc0a01234n;
const monotonicAfterYearsUp = 2n ** 62n + 123n;

describe('the agent -> ingest protocol', () => {
  it('carries a hello with the node identity and capabilities', () => {
    const hello = v1.AgentMessage.create({
      hello: {
        node: 'worker-1.example.internal',
        bootId: '6f1b5e0a-1d2c-4c43-9a8a-2b0c3d4e5f60',
        kernelRelease: '6.1.0-56-amd64',
        agentVersion: '0.1.0',
        protocolVersion: PROTOCOL_VERSION,
        lastAckedSeq: toLong(41n),
        capabilities: { irqTracepoints: false, kprobes: true, bpf: true, btf: true, kmodLoadable: true },
      },
    });
    const back = roundTrip(v1.AgentMessage, hello);
    expect(back.body).toBe('hello');
    expect(back.hello?.node).toBe('worker-1.example.internal');
    expect(toBigInt(back.hello?.lastAckedSeq)).toBe(41n);
    expect(back.hello?.capabilities?.kprobes).toBe(true);
    expect(back.hello?.capabilities?.irqTracepoints).toBe(false);
  });

  it('keeps every 64-bit field exact above 2^53', () => {
    const batch = v1.AgentMessage.create({
      batch: {
        seq: toLong(2n ** 53n + 1n),
        events: [
          {
            kind: v1.SectionKind.SECTION_KIND_IRQS_OFF,
            method: v1.Method.METHOD_EXACT,
            backend: v1.Backend.BACKEND_KMOD,
            cpu: 1,
            startNs: toLong(monotonicAfterYearsUp),
            durationNs: toLong(1_000_123n),
            task: { pid: 4242, tgid: 4240, comm: 'irqburn', cgroupId: toLong(2n ** 60n), podUid: 'uid-1' },
            disableSite: { ip: { address: toLong(kernelAddress), symbol: 'irqburn_hold', offset: toLong(0x1cn) } },
            stack: [{ address: toLong(kernelAddress), symbol: 'irqburn_hold', module: 'irqtrace_selftest' }],
            traces: ['all-irqs'],
          },
        ],
        losses: [{ stage: v1.LossStage.LOSS_STAGE_KERNEL_RING, cpu: 0, count: toLong(7n), reason: 'ring full' }],
        histograms: {
          takenNs: toLong(monotonicAfterYearsUp),
          histograms: [{ kind: v1.SectionKind.SECTION_KIND_IRQS_OFF, cpu: 0, buckets: [toLong(0n), toLong(2n ** 63n)] }],
        },
      },
    });
    const back = roundTrip(v1.AgentMessage, batch).batch;
    expect(toBigInt(back?.seq)).toBe(2n ** 53n + 1n);
    const event = back?.events?.[0];
    expect(toBigInt(event?.startNs)).toBe(monotonicAfterYearsUp);
    expect(toBigInt(event?.durationNs)).toBe(1_000_123n);
    expect(toBigInt(event?.task?.cgroupId)).toBe(2n ** 60n);
    expect(toBigInt(event?.disableSite?.ip?.address)).toBe(kernelAddress);
    expect(event?.stack?.[0]?.symbol).toBe('irqburn_hold');
    expect(event?.traces).toEqual(['all-irqs']);
    expect(toBigInt(back?.losses?.[0]?.count)).toBe(7n);
    expect(back?.losses?.[0]?.cpu).toBe(0);
    expect(toBigInt(back?.histograms?.histograms?.[0]?.buckets?.[1])).toBe(2n ** 63n);
  });

  it('distinguishes an absent loss cpu from cpu 0', () => {
    const withoutCpu = roundTrip(v1.Loss, v1.Loss.create({ stage: v1.LossStage.LOSS_STAGE_AGENT_QUEUE, count: toLong(1n) }));
    expect(withoutCpu.cpu ?? null).toBeNull();
  });
});

describe('the ingest -> agent protocol', () => {
  it('carries acks and the node config', () => {
    const ack = roundTrip(v1.IngestMessage, v1.IngestMessage.create({ ack: { upToSeq: toLong(99n) } }));
    expect(ack.body).toBe('ack');
    expect(toBigInt(ack.ack?.upToSeq)).toBe(99n);

    const config = roundTrip(
      v1.IngestMessage,
      v1.IngestMessage.create({
        config: {
          version: toLong(3n),
          traces: [
            {
              name: 'line-eth0',
              generation: toLong(2n),
              target: { all: false, irqs: [11, 24], irqNames: ['eth0'] },
              thresholdNs: toLong(500_000n),
              method: v1.MethodChoice.METHOD_CHOICE_SAMPLED,
              backend: v1.BackendChoice.BACKEND_CHOICE_EBPF,
              samplePeriodNs: toLong(100_000n),
              softirqs: true,
              stacks: true,
            },
          ],
        },
      }),
    );
    const trace = config.config?.traces?.[0];
    expect(config.body).toBe('config');
    expect(trace?.target?.irqs).toEqual([11, 24]);
    expect(trace?.method).toBe(v1.MethodChoice.METHOD_CHOICE_SAMPLED);
    expect(toBigInt(trace?.samplePeriodNs)).toBe(100_000n);
  });

  it('rejects a truncated message instead of inventing fields', () => {
    const bytes = v1.IngestMessage.encode(v1.IngestMessage.create({ refusal: { reason: 'bad hello: empty node' } })).finish();
    expect(() => v1.IngestMessage.decode(bytes.subarray(0, bytes.length - 3))).toThrow(/index out of range|invalid/i);
  });
});

describe('uint64 helpers', () => {
  it('convert both ways across the whole range', () => {
    for (const v of [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
      expect(toBigInt(toLong(v))).toBe(v);
    }
    expect(toBigInt(undefined)).toBe(0n);
    expect(toBigInt(12)).toBe(12n);
  });
});
