// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: the interrupt context a section ran in.
 *
 * A section inside a hard interrupt handler, an hrtimer callback, an x86
 * system vector's handler or a softirq belongs to that code, not to the task
 * it interrupted; and one on an idle CPU is not the idle loop's. Probes on
 * the irq_handler_entry/exit, softirq_entry/exit and hrtimer_expire_entry/exit
 * tracepoints (present in every kernel with tracepoints), and on x86 on the
 * irq_vectors ones (local_timer, call_function(_single), reschedule,
 * irq_work, the APIC's: handlers that never pass irq_handler_entry, hooked as
 * ftrace's osnoise tracer does), keep, per CPU, the hard handler, the vector
 * and the softirq running now and, for each sampler, the longest hard handler
 * (or vector without one inside) and softirq done since its last sample:
 *
 *  - exact: an irqs-off section is opened where it began (a softirq, or a
 *    task); a hard handler can run inside one only if the section began at
 *    the interrupt's entry, so the longest handler that ran in it is what
 *    the section was;
 *  - sampled: the sample comes when the section ends; a handler that took at
 *    least half of the sample's lateness is what held the timer back;
 *  - irq lines: where the disabling call was made.
 *
 * The sampler's own timers are not handlers of anything. Probes run on the
 * CPU whose state they write, in the context they describe: no locks. They
 * are attached only while something reads them (main.c), and do nothing on
 * CPUs no method measures. What a state means is decided in
 * include/irqtrace_context.h, which the eBPF programs share.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/kprobes.h>
#include <linux/sched/clock.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

#include "internal.h"

static struct tracepoint *tp_irq_entry, *tp_irq_exit;
static struct tracepoint *tp_softirq_entry, *tp_softirq_exit;
static struct tracepoint *tp_hrtimer_entry, *tp_hrtimer_exit;
static bool looked_up;
/* Not hooked here: found by the same lookup for hybrid.c, which ends sections at a switch. */
struct tracepoint *irqtrace_tp_sched_switch;
static bool irq_hooked, softirq_hooked, hrtimer_hooked;

/* x86's system vectors (arch/x86/include/asm/trace/irq_vectors.h): <name>_entry/_exit(int vector). */
static const char * const vector_names[] = { IRQTRACE_X86_VECTORS };
static struct tracepoint *tp_vec_entry[ARRAY_SIZE(vector_names)];
static struct tracepoint *tp_vec_exit[ARRAY_SIZE(vector_names)];
static bool vec_hooked[ARRAY_SIZE(vector_names)];
/* The probes serve every CPU (irq lines), not only the wanted ones. */
static bool all_cpus __read_mostly;

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	static const struct {
		const char *name;
		struct tracepoint **tp;
	} wanted[] = {
		{ "irq_handler_entry", &tp_irq_entry },
		{ "irq_handler_exit", &tp_irq_exit },
		{ "softirq_entry", &tp_softirq_entry },
		{ "softirq_exit", &tp_softirq_exit },
		{ "hrtimer_expire_entry", &tp_hrtimer_entry },
		{ "hrtimer_expire_exit", &tp_hrtimer_exit },
		{ "sched_switch", &irqtrace_tp_sched_switch },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(wanted); i++)
		if (!strcmp(tp->name, wanted[i].name))
			*wanted[i].tp = tp;
	for (i = 0; i < ARRAY_SIZE(vector_names); i++) {
		size_t len = strlen(vector_names[i]);

		if (strncmp(tp->name, vector_names[i], len))
			continue;
		if (!strcmp(tp->name + len, "_entry"))
			tp_vec_entry[i] = tp;
		else if (!strcmp(tp->name + len, "_exit"))
			tp_vec_exit[i] = tp;
	}
}

/*
 * This CPU's state if the probes serve a method on it: the methods run on the
 * CPUs of the cpus parameter, the irq lines on every CPU. Tracepoint probes
 * are global; elsewhere they end here.
 */
static __always_inline struct irqtrace_cpu *context_cpu(void)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);

	return READ_ONCE(c->wanted) || READ_ONCE(all_cpus) ? c : NULL;
}

/*
 * The outermost handler of an interrupt: a device IRQ's, or anything with no
 * x86 vector around it. hybrid.c times interrupts from it.
 */
static __always_inline bool outermost(const struct irqtrace_cpu *c)
{
	return !c->vec_now.where.context && !c->intr_start;
}

static __always_inline void hard_entered(struct irqtrace_cpu *c, u8 context, u32 nr,
					 unsigned long fn)
{
	u64 now = local_clock();

	c->vec_inner = true;
	c->hard_now = (struct irqtrace_handler) {
		.where = { .context = context, .nr = nr, .fn = fn },
		.start = now,
	};
	if (READ_ONCE(irqtrace_hybrid_running) && outermost(c)) {
		irqtrace_hybrid_interrupt_entry(c, now);
		c->hard_opened = true;
	}
}

static __always_inline void hard_done(struct irqtrace_cpu *c)
{
	struct irqtrace_handler *h = &c->hard_now;
	u64 now = local_clock();
	int i;

	if (!h->where.context)
		return;
	h->end = now;
	for (i = 0; i < IRQTRACE_SAMPLERS; i++)
		irqtrace_hold_longest(&c->hard_held[i], h);
	irqtrace_section_handler(c->off_ts, h, now, &c->off_where, &c->off_where_ns);
	if (c->hard_opened) {
		c->hard_opened = false;
		irqtrace_hybrid_interrupt_exit(c, now, &h->where);
	} else {
		/* hybrid: the longest handler inside the open interrupt names its section. */
		irqtrace_section_handler(c->intr_start, h, now, &c->intr_where, &c->intr_where_ns);
	}
	h->where.context = IRQTRACE_CONTEXT_TASK;
}

static void notrace probe_irq_entry(void *data, int irq, struct irqaction *action)
{
	struct irqtrace_cpu *c = context_cpu();

	if (c)
		hard_entered(c, IRQTRACE_CONTEXT_HARDIRQ, irq, (unsigned long)action->handler);
}
NOKPROBE_SYMBOL(probe_irq_entry);

static void notrace probe_irq_exit(void *data, int irq, struct irqaction *action, int ret)
{
	struct irqtrace_cpu *c = context_cpu();

	if (c)
		hard_done(c);
}
NOKPROBE_SYMBOL(probe_irq_exit);

/* A hard-mode callback other than the sampler's own. */
static __always_inline bool foreign_hard_timer(struct irqtrace_cpu *c, struct hrtimer *t)
{
	return c && in_hardirq() && t != &c->hard_timer && t != &c->soft_timer;
}

static void notrace probe_hrtimer_entry(void *data, struct hrtimer *t, ktime_t *now)
{
	struct irqtrace_cpu *c = context_cpu();

	if (foreign_hard_timer(c, t))
		hard_entered(c, IRQTRACE_CONTEXT_TIMER, 0, (unsigned long)t->function);
	else if (c && in_hardirq())
		/* The sampler's own: no handler, and its vector is none either. */
		c->vec_inner = true;
}
NOKPROBE_SYMBOL(probe_hrtimer_entry);

static void notrace probe_hrtimer_exit(void *data, struct hrtimer *t)
{
	struct irqtrace_cpu *c = context_cpu();

	if (foreign_hard_timer(c, t))
		hard_done(c);
}
NOKPROBE_SYMBOL(probe_hrtimer_exit);

/* An x86 system vector's handler: the vector is its context until a hard handler runs inside. */
static void notrace probe_vec_entry(void *data, int vector)
{
	struct irqtrace_cpu *c = context_cpu();
	u64 now;

	if (!c)
		return;
	now = local_clock();
	c->vec_inner = false;
	c->vec_now = (struct irqtrace_handler) {
		.where = { .context = IRQTRACE_CONTEXT_VECTOR, .nr = vector },
		.start = now,
	};
	if (READ_ONCE(irqtrace_hybrid_running))
		irqtrace_hybrid_interrupt_entry(c, now);
}
NOKPROBE_SYMBOL(probe_vec_entry);

static void notrace probe_vec_exit(void *data, int vector)
{
	struct irqtrace_cpu *c = context_cpu();
	struct irqtrace_where own;
	u64 now;

	if (!c || !c->vec_now.where.context)
		return;
	now = local_clock();
	own = c->vec_now.where;
	irqtrace_vector_done(&c->vec_now, now, c->vec_inner, c->hard_held,
			     IRQTRACE_SAMPLERS, c->off_ts, &c->off_where, &c->off_where_ns);
	if (c->intr_start)
		irqtrace_hybrid_interrupt_exit(c, now, &own);
}
NOKPROBE_SYMBOL(probe_vec_exit);

/* Softirqs run with interrupts on; a hard interrupt meanwhile touches only the hard_* state. */
static void notrace probe_softirq_entry(void *data, unsigned int vec)
{
	struct irqtrace_cpu *c = context_cpu();

	if (!c)
		return;
	c->soft_now = (struct irqtrace_handler) {
		.where = { .context = IRQTRACE_CONTEXT_SOFTIRQ, .nr = vec },
		.start = local_clock(),
	};
	/* hybrid: irq_exit turned interrupts on just before running it. */
	if (READ_ONCE(irqtrace_hybrid_running))
		irqtrace_hybrid_softirq_entry(c, c->soft_now.start);
}
NOKPROBE_SYMBOL(probe_softirq_entry);

static void notrace probe_softirq_exit(void *data, unsigned int vec)
{
	struct irqtrace_cpu *c = context_cpu();
	unsigned long flags;
	int i;

	if (!c || !c->soft_now.where.context)
		return;
	c->soft_now.end = local_clock();
	/* The hard sampler reads these from its interrupt: no torn copy. */
	raw_local_irq_save(flags);
	for (i = 0; i < IRQTRACE_SAMPLERS; i++)
		irqtrace_hold_longest(&c->soft_held[i], &c->soft_now);
	raw_local_irq_restore(flags);
	c->soft_now.where.context = IRQTRACE_CONTEXT_TASK;
}
NOKPROBE_SYMBOL(probe_softirq_exit);

static int hook_pair(struct tracepoint *entry, void *on_entry, struct tracepoint *exit,
		     void *on_exit, bool *hooked)
{
	int ret;

	if (!entry || !exit)
		return 0;
	/* Exits first: one seen without its entry is ignored. */
	ret = tracepoint_probe_register(exit, on_exit, NULL);
	if (ret)
		return ret;
	ret = tracepoint_probe_register(entry, on_entry, NULL);
	if (ret) {
		tracepoint_probe_unregister(exit, on_exit, NULL);
		return ret;
	}
	*hooked = true;
	return 0;
}

static void unhook_pair(struct tracepoint *entry, void *on_entry, struct tracepoint *exit,
			void *on_exit, bool *hooked)
{
	if (!*hooked)
		return;
	tracepoint_probe_unregister(entry, on_entry, NULL);
	tracepoint_probe_unregister(exit, on_exit, NULL);
	*hooked = false;
}

void irqtrace_context_stop(void)
{
	unsigned int i;
	int cpu;

	for (i = 0; i < ARRAY_SIZE(vector_names); i++)
		unhook_pair(tp_vec_entry[i], probe_vec_entry, tp_vec_exit[i], probe_vec_exit,
			    &vec_hooked[i]);

	unhook_pair(tp_irq_entry, probe_irq_entry, tp_irq_exit, probe_irq_exit, &irq_hooked);
	unhook_pair(tp_softirq_entry, probe_softirq_entry, tp_softirq_exit, probe_softirq_exit,
		    &softirq_hooked);
	unhook_pair(tp_hrtimer_entry, probe_hrtimer_entry, tp_hrtimer_exit, probe_hrtimer_exit,
		    &hrtimer_hooked);
	tracepoint_synchronize_unregister();
	for_each_possible_cpu(cpu) {
		struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);

		memset(&c->hard_now, 0, sizeof(c->hard_now));
		memset(&c->vec_now, 0, sizeof(c->vec_now));
		memset(&c->soft_now, 0, sizeof(c->soft_now));
		memset(c->hard_held, 0, sizeof(c->hard_held));
		memset(c->soft_held, 0, sizeof(c->soft_held));
	}
}

/*
 * Hooks what the kernel has of them, only while a method runs (main.c);
 * a kernel without some names fewer contexts. all_cpus: the irq lines are
 * watched, whose masking can come on any CPU.
 */
int irqtrace_context_start(bool serve_all_cpus)
{
	unsigned int i;
	int ret;

	WRITE_ONCE(all_cpus, serve_all_cpus);

	if (!looked_up) {
		for_each_kernel_tracepoint(find_tracepoint, NULL);
		looked_up = true;
	}
	ret = hook_pair(tp_irq_entry, probe_irq_entry, tp_irq_exit, probe_irq_exit, &irq_hooked);
	if (!ret)
		ret = hook_pair(tp_softirq_entry, probe_softirq_entry, tp_softirq_exit,
				probe_softirq_exit, &softirq_hooked);
	if (!ret)
		ret = hook_pair(tp_hrtimer_entry, probe_hrtimer_entry, tp_hrtimer_exit,
				probe_hrtimer_exit, &hrtimer_hooked);
	for (i = 0; !ret && i < ARRAY_SIZE(vector_names); i++)
		ret = hook_pair(tp_vec_entry[i], probe_vec_entry, tp_vec_exit[i], probe_vec_exit,
				&vec_hooked[i]);
	if (ret)
		irqtrace_context_stop();
	return ret;
}
