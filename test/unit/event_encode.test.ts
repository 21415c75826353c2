// The hot-path encoder splices cached frame bytes into events: what it writes
// must decode to exactly what protobufjs's own encoding of the event gives.
import { describe, expect, it } from 'vitest';
import { irqtrace } from '@irqtrace/proto';
import { Backend, Kallsyms, Kind, Method, RecordFlag, toEvent } from '@irqtrace/agent';
import type { SectionRecord } from '@irqtrace/agent';
import { encodeEvent } from '../../agent/src/pipeline/encode.js';

const syms = Kallsyms.parse(['ffffffff81000000 T _stext', 'ffffffff81464600 T __schedule', 'ffffffffa020a191 t irqburn_irqs_off\t[irqtrace_selftest]'].join('\n'));

function rec(frames: bigint[]): SectionRecord {
  return {
    type: 'record', kind: Kind.IrqsOff, method: Method.Exact, backend: Backend.Kmod, flags: RecordFlag.SitesValid | RecordFlag.EnablerValid,
    cpu: 3, irq: 0, enableCpu: 3, seq: 9n, startNs: 2n ** 63n + 5n, durationNs: 1_500_000n, errorNs: 0n, cgroupId: 77n,
    pid: 42, tgid: 40, comm: 'irqburn', enablePid: 43, enableTgid: 40, enableComm: 'kworker/3:1',
    disableIp: 0xffffffffa020a1c2n, disableParentIp: 0xffffffff81464694n, enableIp: 0xffffffffa020a1d0n, enableParentIp: 0n, frames,
  };
}

describe('the hot-path event encoder', () => {
  it('decodes to what the generated encoder gives, frames cached or not', () => {
    for (const frames of [[], [0xffffffffa020a1d0n, 0xffffffff81464694n, 0x1234n], [0xffffffffa020a1d0n, 0xffffffffa020a1d0n]]) {
      const event = toEvent(rec(frames), syms, { task: { path: '/kubepods/pod1', podUid: 'u' } });
      event.traces = ['a', 'b'];
      for (let i = 0; i < 2; i++) {
        const fast = irqtrace.v1.Event.decode(encodeEvent(event));
        const reference = irqtrace.v1.Event.decode(irqtrace.v1.Event.encode(event).finish());
        expect(irqtrace.v1.Event.toObject(fast, { longs: String })).toEqual(irqtrace.v1.Event.toObject(reference, { longs: String }));
      }
    }
  });
});
