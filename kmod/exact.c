// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: irqs-off sections, exact, from the preemptirq tracepoints.
 *
 * trace_hardirqs_off() fires irq_disable only on the transition from on to
 * off, and trace_hardirqs_on() fires irq_enable just before the transition
 * back, so each CPU has at most one open section: its start is kept in the
 * CPU's state and closed by the next irq_enable. Both probes run with
 * interrupts off, so nothing on the CPU can interleave with them but an NMI,
 * which they skip.
 *
 * Clock: local_clock(). It is the cheapest clock that is monotonic on one
 * CPU, and a section starts and ends on the same CPU (interrupts off means
 * no migration), so durations need nothing more. CLOCK_MONOTONIC, which
 * records carry as start_ns for comparison across CPUs and with user space,
 * is read only for the rare sections that become records.
 *
 * A section's context is where it began (a softirq, or a task), unless a hard
 * handler ran inside it (context.c): then it began at that interrupt's entry
 * and is the handler's. Only the idle loop's own sections are excluded as
 * idle; a handler that ran on an idle CPU is measured.
 *
 * The tracepoints are not exported: find them by name.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/sched/clock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/tracepoint.h>

#include "internal.h"

static struct tracepoint *tp_irq_disable;
static struct tracepoint *tp_irq_enable;
static bool looked_up;

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "irq_disable"))
		tp_irq_disable = tp;
	else if (!strcmp(tp->name, "irq_enable"))
		tp_irq_enable = tp;
}

bool irqtrace_exact_available(void)
{
	if (!looked_up) {
		for_each_kernel_tracepoint(find_tracepoint, NULL);
		looked_up = true;
	}
	return tp_irq_disable && tp_irq_enable;
}

static void notrace probe_irq_disable(void *data, unsigned long ip, unsigned long parent_ip)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);

	if (unlikely(in_nmi())) {
		c->counters.nmi_skipped++;
		return;
	}
	if (unlikely(c->in_probe)) {
		c->counters.dropped_guard++;
		return;
	}
	if (!c->wanted)
		return;
	c->off_ip = ip;
	c->off_parent_ip = parent_ip;
	c->off_task = current;
	irqtrace_context_now(c, &c->off_where);
	c->off_where_ns = 0;
	/* Last: the section's start as close to the caller's as this probe can get. */
	c->off_ts = local_clock();
}
NOKPROBE_SYMBOL(probe_irq_disable);

static void notrace probe_irq_enable(void *data, unsigned long ip, unsigned long parent_ip)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	struct irqtrace_section s;
	u64 now = local_clock();
	u64 start = c->off_ts;
	u64 delta;

	if (unlikely(in_nmi())) {
		c->counters.nmi_skipped++;
		return;
	}
	/* No open section: its start was before the probes were registered. */
	if (!start)
		return;
	c->off_ts = 0;
	if (unlikely(c->in_probe)) {
		c->counters.dropped_guard++;
		return;
	}
	delta = now - start;
	if (!irqtrace_irqs_off_count(c, c->off_task, &c->off_where, delta, 0) ||
	    delta < READ_ONCE(irqtrace_threshold_ns))
		return;

	c->in_probe++;
	s = (struct irqtrace_section) {
		.kind = IRQTRACE_KIND_IRQS_OFF,
		.method = IRQTRACE_METHOD_EXACT,
		.flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT,
		.start_by = IRQTRACE_EDGE_TRACEPOINT,
		.end_by = IRQTRACE_EDGE_TRACEPOINT,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		/* Back-date from now, in CLOCK_MONOTONIC, by the measured length. */
		.start_ns = ktime_get_mono_fast_ns() - (local_clock() - start),
		.duration_ns = delta,
		.where = c->off_where,
		.task = c->off_task,
		.disable_ip = c->off_ip,
		.disable_parent_ip = c->off_parent_ip,
		.enable_ip = ip,
		.enable_parent_ip = parent_ip,
		/* ip is trace_hardirqs_on's return address: the stack starts there. */
		.trim_to_ip = ip,
	};
	irqtrace_emit(c, &s);
	c->in_probe--;
}
NOKPROBE_SYMBOL(probe_irq_enable);

int irqtrace_exact_start(void)
{
	int cpu, ret;

	if (!irqtrace_exact_available())
		return -EOPNOTSUPP;
	for_each_possible_cpu(cpu)
		per_cpu_ptr(irqtrace_pcpu, cpu)->off_ts = 0;

	ret = tracepoint_probe_register(tp_irq_disable, probe_irq_disable, NULL);
	if (ret)
		return ret;
	ret = tracepoint_probe_register(tp_irq_enable, probe_irq_enable, NULL);
	if (ret) {
		tracepoint_probe_unregister(tp_irq_disable, probe_irq_disable, NULL);
		tracepoint_synchronize_unregister();
	}
	return ret;
}

void irqtrace_exact_stop(void)
{
	tracepoint_probe_unregister(tp_irq_enable, probe_irq_enable, NULL);
	tracepoint_probe_unregister(tp_irq_disable, probe_irq_disable, NULL);
	/* No probe may still run when the caller frees or reuses what it touches. */
	tracepoint_synchronize_unregister();
}
