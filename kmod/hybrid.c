// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: irqs-off sections on stock kernels, each end exact where it can
 * be hooked, sampled where it cannot (method=hybrid).
 *
 * Without CONFIG_TRACE_IRQFLAGS nothing fires when interrupts go off or on.
 * But most sections pass through code that can be hooked:
 *
 *  - Irq-saving lock functions. On x86 kernels built with PREEMPTION (and
 *    PREEMPT_DYNAMIC: Debian's, Ubuntu's) _raw_spin_lock_irqsave and its
 *    kin are out of line. An ftrace callback at the entry of a lock function
 *    called with interrupts on starts a section, exact to the call: the
 *    function turns them off before it spins. An unlock whose flags turn
 *    them back on (_irqrestore with IF set in flags, or _irq) ends it, exact
 *    to the call. The lock's address is kept for the record.
 *  - Interrupts. The outermost handler of an interrupt (an x86 system
 *    vector's, or a device IRQ's first action) runs with interrupts off
 *    from its entry tracepoint to its exit: context.c calls in here for
 *    both, and the section is exact within the entry and exit code's own
 *    cost. The sampler's own callback is not part of it.
 *  - The sampler's late interrupt (sampled.c). A timer interrupt held back
 *    by a section is delivered as interrupts come back on, so the local
 *    timer vector's entry is the section's end, whatever ended it (an
 *    inline local_irq_restore included). If a lock function opened that
 *    section, and no interrupt came since (one would have meant interrupts
 *    were on), and interrupts came back on in the function that called it,
 *    the section is exact at both ends; else its start is the timer's
 *    expiry, short of the truth by up to one period.
 *
 * One section is measured once: the sampler skips a sample whose lateness a
 * hooked section (or the interrupt it runs in) already covers, and cuts
 * one that a hooked section ended at that section's start. The last few
 * hooked sections are kept for it: one lock section's record queues an
 * irq_work, whose vector comes before the timer's at the same enable.
 *
 * Probes run on the CPU whose state they write and take no lock (bcc #2300:
 * a probe that takes a lock, on a lock function, deadlocks). A lock call
 * with interrupts on can be interrupted, or preempted, between this probe
 * and the function's own local_irq_save: every outermost interrupt bumps the
 * CPU's irq_gen, and a section whose irq_gen moved, or whose task changed,
 * is no longer trusted to have started at the call: the sampler measures it.
 *
 * All times are local_clock() (monotonic on one CPU; a section does not
 * migrate), turned into CLOCK_MONOTONIC only for records.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ftrace.h>
#include <linux/irqflags.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/sched/clock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>

#include "internal.h"

bool irqtrace_hybrid_running __read_mostly;

/* Functions that turn interrupts off: their first argument is the lock. */
static const char * const lockers[] = {
	"_raw_spin_lock_irqsave", "_raw_spin_lock_irq",
	"_raw_read_lock_irqsave", "_raw_read_lock_irq",
	"_raw_write_lock_irqsave", "_raw_write_lock_irq",
};

/* Functions that restore the flags in their second argument. */
static const char * const restorers[] = {
	"_raw_spin_unlock_irqrestore", "_raw_read_unlock_irqrestore",
	"_raw_write_unlock_irqrestore",
};

/* Functions that turn interrupts on. */
static const char * const enablers[] = {
	"_raw_spin_unlock_irq", "_raw_read_unlock_irq", "_raw_write_unlock_irq",
};

/* Which of the functions above this kernel has out of line: hooked. */
static DECLARE_BITMAP(hooked, ARRAY_SIZE(lockers) + ARRAY_SIZE(restorers) + ARRAY_SIZE(enablers));

#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
#define HYBRID_OPS_FLAGS	0
#else
#define HYBRID_OPS_FLAGS	FTRACE_OPS_FL_SAVE_REGS
#endif

static __always_inline unsigned long argument(struct ftrace_regs *fregs, unsigned int n)
{
	return regs_get_kernel_argument(&fregs->regs, n);
}

/*
 * A lock function called with interrupts on: the section starts here. The
 * probe may be interrupted or preempted while it writes; irq_gen and the
 * task, read first and checked at the end, say whether it was.
 */
static void notrace on_lock(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			    struct ftrace_regs *fregs)
{
	struct irqtrace_lock_open *o;
	struct irqtrace_cpu *c;

	/* Off already: inside a section (or an NMI), not its start. */
	if (irqs_disabled())
		return;
	preempt_disable_notrace();
	c = this_cpu_ptr(irqtrace_pcpu);
	/*
	 * A reschedule due would switch tasks at the preempt_enable below,
	 * without an interrupt to say so: no start then.
	 */
	if (likely(READ_ONCE(c->wanted)) && !tif_need_resched()) {
		o = &c->lock_open;
		o->ts = 0;
		o->gen = READ_ONCE(c->irq_gen);
		o->task = current;
		o->ip = parent_ip;
		o->lock = argument(fregs, 0);
		irqtrace_context_now(c, &o->where);
		/* Last: the start as close to the function's own irq-off as it gets. */
		o->ts = local_clock();
	}
	preempt_enable_notrace();
}
NOKPROBE_SYMBOL(on_lock);

/* The open section, if it still starts where its lock function was called. */
static __always_inline bool lock_open_valid(const struct irqtrace_cpu *c, u64 gen)
{
	const struct irqtrace_lock_open *o = &c->lock_open;

	return o->ts && o->gen == gen && o->task == current;
}

/* Remembers a section a hook measured, for the sampler's next sample. */
static __always_inline void hooked_done(struct irqtrace_cpu *c, u64 start, u64 end, u8 end_by)
{
	struct irqtrace_hooked *h = &c->hooked[c->hooked_next++ % IRQTRACE_HOOKED_RECENT];

	h->start = start;
	h->end = end;
	h->by = end_by;
}

/* The hooked section that ended last at or before end, if it ended at or after from. */
static const struct irqtrace_hooked *last_hooked(const struct irqtrace_cpu *c, u64 from, u64 end)
{
	const struct irqtrace_hooked *last = NULL;
	unsigned int i;

	for (i = 0; i < IRQTRACE_HOOKED_RECENT; i++) {
		const struct irqtrace_hooked *h = &c->hooked[i];

		if (h->end >= from && h->end <= end && (!last || h->end > last->end))
			last = h;
	}
	return last;
}

/* CLOCK_MONOTONIC of a local_clock() time of this CPU. */
static __always_inline u64 to_mono(u64 t)
{
	return ktime_get_mono_fast_ns() - (local_clock() - t);
}

/* An unlock turns interrupts back on at parent_ip's call: the section a lock function opened ends. */
static void notrace lock_section_end(unsigned long parent_ip)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	struct irqtrace_lock_open *o = &c->lock_open;
	struct irqtrace_section s;
	u64 now, delta;

	if (unlikely(in_nmi()) || !irqs_disabled())
		return;
	if (!lock_open_valid(c, READ_ONCE(c->irq_gen))) {
		/* Begun inline, or not where the lock was called: the sampler sees it. */
		o->ts = 0;
		return;
	}
	now = local_clock();
	delta = now - o->ts;
	o->ts = 0;
	hooked_done(c, now - delta, now, IRQTRACE_EDGE_LOCK);
	if (unlikely(c->in_probe)) {
		c->counters.dropped_guard++;
		return;
	}
	/*
	 * The histogram, from the floor on: below it the sampler does not count
	 * a section either, and one distribution serves both.
	 */
	if (!irqtrace_irqs_off_count(c, current, &o->where, delta, READ_ONCE(irqtrace_floor_ns)) ||
	    delta < READ_ONCE(irqtrace_threshold_ns))
		return;

	c->in_probe++;
	s = (struct irqtrace_section) {
		.kind = IRQTRACE_KIND_IRQS_OFF,
		.method = IRQTRACE_METHOD_HYBRID,
		.flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT,
		.start_by = IRQTRACE_EDGE_LOCK,
		.end_by = IRQTRACE_EDGE_LOCK,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		.start_ns = to_mono(now - delta),
		.duration_ns = delta,
		.lock = o->lock,
		.where = o->where,
		.task = current,
		.disable_ip = o->ip,
		.enable_ip = parent_ip,
		/* The unlocking function's caller: the frames before it are this probe's. */
		.trim_to_ip = parent_ip,
	};
	irqtrace_emit(c, &s);
	c->in_probe--;
}
NOKPROBE_SYMBOL(lock_section_end);

static void notrace on_restore(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			       struct ftrace_regs *fregs)
{
	/* Flags with interrupts off: a nested unlock, the section goes on. */
	if (!arch_irqs_disabled_flags(argument(fregs, 1)))
		lock_section_end(parent_ip);
}
NOKPROBE_SYMBOL(on_restore);

static void notrace on_enable(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			      struct ftrace_regs *fregs)
{
	lock_section_end(parent_ip);
}
NOKPROBE_SYMBOL(on_enable);

static struct ftrace_ops lock_ops = { .func = on_lock, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops restore_ops = { .func = on_restore, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops enable_ops = { .func = on_enable, .flags = HYBRID_OPS_FLAGS };
/* Registered ops: unregistering one that is not warns. */
static bool lock_registered, restore_registered, enable_registered;

/*
 * An outermost interrupt entered (context.c, with interrupts off): it says
 * interrupts were on, so a lock section opened before is no longer trusted
 * unless this is the sampler's interrupt that ends it (irqtrace_hybrid_sample).
 */
void irqtrace_hybrid_interrupt_entry(struct irqtrace_cpu *c, u64 now)
{
	c->irq_gen++;
	c->intr_start = now;
	c->intr_self = 0;
	c->intr_where = (struct irqtrace_where) { .context = IRQTRACE_CONTEXT_TASK };
	c->intr_where_ns = 0;
}
NOKPROBE_SYMBOL(irqtrace_hybrid_interrupt_entry);

/*
 * The outermost interrupt's handler ended at now: a section from its entry,
 * of the handler it ran (own: a vector or IRQ with nothing inside).
 */
void irqtrace_hybrid_interrupt_exit(struct irqtrace_cpu *c, u64 now,
				    const struct irqtrace_where *own)
{
	struct irqtrace_where where = c->intr_where.context ? c->intr_where : *own;
	struct irqtrace_section s;
	u64 start = c->intr_start;
	u64 delta;

	c->intr_start = 0;
	if (!start || now < start + c->intr_self)
		return;
	/* The sampler's own callback is no handler's time. */
	delta = now - start - c->intr_self;
	hooked_done(c, start, now, IRQTRACE_EDGE_HANDLER);
	/* A handler's section is never the idle loop's: it is counted from the floor on. */
	if (!irqtrace_irqs_off_count(c, current, &where, delta, READ_ONCE(irqtrace_floor_ns)) ||
	    delta < READ_ONCE(irqtrace_threshold_ns))
		return;
	if (unlikely(c->in_probe)) {
		c->counters.dropped_guard++;
		return;
	}
	c->in_probe++;
	s = (struct irqtrace_section) {
		.kind = IRQTRACE_KIND_IRQS_OFF,
		.method = IRQTRACE_METHOD_HYBRID,
		.flags = IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT,
		.start_by = IRQTRACE_EDGE_HANDLER,
		.end_by = IRQTRACE_EDGE_HANDLER,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		.start_ns = to_mono(start),
		.duration_ns = delta,
		.where = where,
		.task = current,
	};
	irqtrace_emit(c, &s);
	c->in_probe--;
}
NOKPROBE_SYMBOL(irqtrace_hybrid_interrupt_exit);

/*
 * Whether b is in the function a is in. kallsyms is lockless, but modules
 * only get its "name+off/size" text: this runs only for a late sample that
 * may end a lock section, rare by the floor.
 */
static bool same_function(unsigned long a, unsigned long b)
{
	char sym[KSYM_SYMBOL_LEN];
	unsigned long offset, size;
	const char *at;

	if (!a || !b || !sprint_symbol(sym, a))
		return false;
	at = strrchr(sym, '+');
	if (!at || sscanf(at, "+%lx/%lx", &offset, &size) != 2)
		return false;
	return b >= a - offset && b < a - offset + size;
}

/*
 * The hard sampler's timer came late: expiry and now in local_clock(), regs
 * the interrupted context. Fills hs with the section it saw, or returns
 * false if a hook measured that section already.
 */
bool irqtrace_hybrid_sample(struct irqtrace_cpu *c, u64 expiry, u64 now, struct pt_regs *regs,
			    struct irqtrace_hybrid_sample *hs)
{
	struct irqtrace_lock_open *o = &c->lock_open;
	/* The interrupt this sample runs in bumped it once. */
	bool open = lock_open_valid(c, c->irq_gen - 1);
	u64 floor = READ_ONCE(irqtrace_floor_ns);
	const struct irqtrace_hooked *h;
	u64 opened = o->ts;
	unsigned int i;

	o->ts = 0;
	*hs = (struct irqtrace_hybrid_sample) {
		.start = expiry,
		.end = now,
		.start_by = IRQTRACE_EDGE_SAMPLE,
		.end_by = IRQTRACE_EDGE_SAMPLE,
		.flags = IRQTRACE_F_END_EXACT,
	};
	/* The interrupt it runs in came as interrupts came on: its entry is the end. */
	if (c->intr_start) {
		if (c->intr_start <= expiry)
			return false;	/* the expiry fell in this interrupt: its section */
		hs->end = c->intr_start;
	}
	/*
	 * Hooked sections that ended after the expiry, from the last back:
	 * one that ended just before the interrupt came (less than the floor:
	 * what is after it is no section) held the timer back until then, and
	 * so did any ending just before it started. A sample whose window they
	 * cover from the expiry on is theirs, measured already; else the
	 * section it saw ended where the first of them started. One that
	 * ended a floor or more before the interrupt came is not what held it:
	 * interrupts came on at its end (the timer's interrupt can be raised
	 * that late under emulation), and the section began after.
	 */
	for (i = 0; i < IRQTRACE_HOOKED_RECENT; i++) {
		h = last_hooked(c, hs->start, hs->end);
		if (!h)
			break;
		if (hs->end - h->end >= floor) {
			hs->start = h->end;
			break;
		}
		if (h->start <= hs->start)
			return false;
		hs->end = h->start;
		hs->end_by = h->by;
		open = false;
	}
	/*
	 * A lock function opened it and something inline ended it. Trusted
	 * only if interrupts came back on in the function that called it: a
	 * later section of the same task, begun inline after the lock section
	 * ended inline, would otherwise look like one long section. It may
	 * have opened after the expiry if the timer's interrupt was raised
	 * late (emulation), never before a hooked section's end.
	 */
	if (open && opened < hs->end && (hs->start == expiry || opened >= hs->start) && regs &&
	    !user_mode(regs) &&
	    same_function(o->ip, instruction_pointer(regs))) {
		hs->start = opened;
		hs->start_by = IRQTRACE_EDGE_LOCK;
		hs->flags |= IRQTRACE_F_START_EXACT;
		hs->lock = o->lock;
		hs->disable_ip = o->ip;
		hs->where = o->where;
		hs->lock_opened = true;
	}
	return true;
}
NOKPROBE_SYMBOL(irqtrace_hybrid_sample);

/* The sampler's own callback ran for ns inside the interrupt now open. */
void irqtrace_hybrid_sampler_self(struct irqtrace_cpu *c, u64 ns)
{
	if (c->intr_start)
		c->intr_self += ns;
}
NOKPROBE_SYMBOL(irqtrace_hybrid_sampler_self);

static int set_filter(struct ftrace_ops *ops, const char * const *names, unsigned int n,
		      unsigned int first_bit)
{
	unsigned int i, found = 0;

	for (i = 0; i < n; i++) {
		/* -EINVAL: no such traceable function here (inline, or notrace). */
		if (ftrace_set_filter(ops, (unsigned char *)names[i], strlen(names[i]), 0))
			continue;
		set_bit(first_bit + i, hooked);
		found++;
	}
	return found;
}

static void free_filters(void)
{
	ftrace_free_filter(&lock_ops);
	ftrace_free_filter(&restore_ops);
	ftrace_free_filter(&enable_ops);
	bitmap_zero(hooked, ARRAY_SIZE(lockers) + ARRAY_SIZE(restorers) + ARRAY_SIZE(enablers));
}

/* Lists the lock functions, hooked or not (inline on this kernel), for the stats summary. */
int irqtrace_hybrid_show(char *buf, int at)
{
	const char * const *lists[] = { lockers, restorers, enablers };
	const unsigned int sizes[] = { ARRAY_SIZE(lockers), ARRAY_SIZE(restorers),
				       ARRAY_SIZE(enablers) };
	unsigned int l, i, bit = 0;
	int n = 0;

	if (!READ_ONCE(irqtrace_hybrid_running))
		return 0;
	for (l = 0; l < ARRAY_SIZE(lists); l++)
		for (i = 0; i < sizes[l]; i++, bit++)
			n += sysfs_emit_at(buf, at + n, "lock_hook %s %s\n", lists[l][i],
					   test_bit(bit, hooked) ? "hooked" : "inline");
	return n;
}

int irqtrace_hybrid_start(void)
{
	unsigned int nl, nr, ne;
	int cpu, ret;

	for_each_possible_cpu(cpu) {
		struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);

		c->lock_open.ts = 0;
		c->intr_start = 0;
		c->hard_opened = false;
		memset(c->hooked, 0, sizeof(c->hooked));
	}
	nl = set_filter(&lock_ops, lockers, ARRAY_SIZE(lockers), 0);
	nr = set_filter(&restore_ops, restorers, ARRAY_SIZE(restorers), ARRAY_SIZE(lockers));
	ne = set_filter(&enable_ops, enablers, ARRAY_SIZE(enablers),
			ARRAY_SIZE(lockers) + ARRAY_SIZE(restorers));
	if (!nl || (!nr && !ne)) {
		pr_warn("method=hybrid: no irq-saving lock function is out of line here (%u lock, %u unlock); use sampled\n",
			nl, nr + ne);
		free_filters();
		return -EOPNOTSUPP;
	}
	/* Before the hooks: the handlers' sections and the sampler's cuts come with them. */
	WRITE_ONCE(irqtrace_hybrid_running, true);
	/* Ends before starts: a start whose end is not hooked yet would just stay open. */
	ret = nr ? register_ftrace_function(&restore_ops) : 0;
	restore_registered = nr && !ret;
	if (!ret && ne) {
		ret = register_ftrace_function(&enable_ops);
		enable_registered = !ret;
	}
	if (!ret) {
		ret = register_ftrace_function(&lock_ops);
		lock_registered = !ret;
	}
	if (ret)
		irqtrace_hybrid_stop();
	return ret;
}

void irqtrace_hybrid_stop(void)
{
	/* Each waits until no callback runs (ftrace's RCU-tasks grace periods). */
	if (lock_registered)
		unregister_ftrace_function(&lock_ops);
	if (restore_registered)
		unregister_ftrace_function(&restore_ops);
	if (enable_registered)
		unregister_ftrace_function(&enable_ops);
	lock_registered = false;
	restore_registered = false;
	enable_registered = false;
	free_filters();
	WRITE_ONCE(irqtrace_hybrid_running, false);
}
