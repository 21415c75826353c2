// Where a section ran, for people and for the protocol: the IRQ handler (by
// its /proc/interrupts action names), the hrtimer callback or the softirq
// the kernel side says it belongs to. One frozen Context per handler, shared
// by its events (and so encoded once).
import { irqtrace } from '@irqtrace/proto';
import type { InterruptLine } from '../config/irq_names.js';
import { Context } from '../records/layout.js';
import type { SectionRecord } from '../records/decode.js';
import type { Kallsyms } from '../symbols/kallsyms.js';
import { frameOf } from './event.js';

const pb = irqtrace.v1;

/** The softirq vectors' names, as the kernel's softirq_to_name[] has them. */
export const SOFTIRQ_NAMES = ['HI', 'TIMER', 'NET_TX', 'NET_RX', 'BLOCK', 'IRQ_POLL', 'TASKLET', 'SCHED', 'HRTIMER', 'RCU'] as const;

/**
 * The x86 system vectors whose handlers the kernel side names (arch/x86/include/asm/irq_vectors.h,
 * unchanged since Linux 4.x): the names of their tracepoints, as people know them.
 */
export const X86_VECTOR_NAMES: Readonly<Record<number, string>> = {
  0xec: 'LOCAL_TIMER',
  0xf4: 'DEFERRED_ERROR',
  0xf6: 'IRQ_WORK',
  0xf7: 'X86_PLATFORM_IPI',
  0xf9: 'THRESHOLD_APIC',
  0xfa: 'THERMAL_APIC',
  0xfb: 'CALL_FUNCTION_SINGLE',
  0xfc: 'CALL_FUNCTION',
  0xfd: 'RESCHEDULE',
  0xfe: 'ERROR_APIC',
  0xff: 'SPURIOUS_APIC',
};

const KINDS: Record<Context, irqtrace.v1.ContextKind> = {
  [Context.Task]: pb.ContextKind.CONTEXT_KIND_TASK,
  [Context.Hardirq]: pb.ContextKind.CONTEXT_KIND_HARDIRQ,
  [Context.Timer]: pb.ContextKind.CONTEXT_KIND_TIMER,
  [Context.Softirq]: pb.ContextKind.CONTEXT_KIND_SOFTIRQ,
  [Context.Nmi]: pb.ContextKind.CONTEXT_KIND_NMI,
  [Context.Vector]: pb.ContextKind.CONTEXT_KIND_VECTOR,
};

/** The handler's name as people say it: "nvme_irq", "tick_sched_timer [mod]". */
function handlerName(handler: irqtrace.v1.IFrame | null): string | undefined {
  if (!handler?.symbol) return undefined;
  return handler.module ? `${handler.symbol} [${handler.module}]` : handler.symbol;
}

/** One line for people: "irq 24 handler (nvme0q1)", "hrtimer tick_sched_timer", "softirq NET_RX", "vector IRQ_WORK (0xf6)". */
export function contextSummary(c: irqtrace.v1.IContext): string {
  switch (c.kind) {
    case pb.ContextKind.CONTEXT_KIND_HARDIRQ: {
      const names = c.actions?.length ? c.actions.join(',') : handlerName(c.handler ?? null);
      return `irq ${c.irq ?? 0} handler${names ? ` (${names})` : ''}`;
    }
    case pb.ContextKind.CONTEXT_KIND_TIMER:
      return `hrtimer ${handlerName(c.handler ?? null) ?? 'callback'}`;
    case pb.ContextKind.CONTEXT_KIND_SOFTIRQ:
      return `softirq ${c.softirq || '?'}`;
    case pb.ContextKind.CONTEXT_KIND_NMI:
      return 'NMI';
    case pb.ContextKind.CONTEXT_KIND_VECTOR: {
      const vector = c.vector ?? 0;
      return `vector ${X86_VECTOR_NAMES[vector] ?? '?'} (0x${vector.toString(16)})`;
    }
    default:
      return 'task';
  }
}

const CACHE_MAX = 4096;

/** Contexts of records, one frozen object per handler; a task's context is null (the default). */
export class ContextNamer {
  private readonly known = new Map<string, irqtrace.v1.IContext>();

  /** lines: /proc/interrupts as the caller last read it (IRQ numbers to action names). */
  of(rec: SectionRecord, syms: Kallsyms, lines: ReadonlyMap<number, InterruptLine>): irqtrace.v1.IContext | null {
    if (rec.context === Context.Task) return null;
    const actions = rec.context === Context.Hardirq ? (lines.get(rec.contextNr)?.actions ?? []) : [];
    const key = `${rec.context}/${rec.contextNr}/${rec.contextFn}/${actions.join(',')}`;
    let c = this.known.get(key);
    if (!c) {
      const handler = rec.contextFn ? frameOf(syms, rec.contextFn) : null;
      const made: irqtrace.v1.IContext = {
        kind: KINDS[rec.context],
        irq: rec.context === Context.Hardirq ? rec.contextNr : 0,
        softirq: rec.context === Context.Softirq ? (SOFTIRQ_NAMES[rec.contextNr] ?? `vector ${rec.contextNr}`) : '',
        vector: rec.context === Context.Vector ? rec.contextNr : 0,
        handler,
        actions,
      };
      made.summary = contextSummary(made);
      c = Object.freeze(made);
      if (this.known.size >= CACHE_MAX) this.known.clear();
      this.known.set(key, c);
    }
    return c;
  }
}
