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
 *  - The scheduler. __schedule() turns interrupts off inline and calls
 *    rcu_note_context_switch() first: the section starts there, exact to
 *    the call. It ends in the task switched to, where finish_task_switch()
 *    unlocks the runqueue and turns them on after a little bookkeeping
 *    (accounting, the runqueue's balance callbacks): its entry is the end,
 *    exact within that (gcc may rename it finish_task_switch.isra.0).
 *    When __schedule() picks the same task, it turns them on inline: the
 *    sampler's late interrupt times that end, as for a lock section.
 *  - Interrupts. The outermost handler of an interrupt (an x86 system
 *    vector's, or a device IRQ's first action) runs with interrupts off
 *    from its entry tracepoint (context.c calls in here), exact within the
 *    entry code's cost, to where irq_exit turns them back on to run
 *    softirqs (softirq_entry follows at once) or the return does (a timer
 *    interrupt held back until then comes there: the sampler's says so);
 *    else to the handler's exit tracepoint, short by the exit code's cost.
 *    The sampler's own callback is not part of it.
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
 * and the function's own local_irq_save: every outermost interrupt, and
 * every hooked __schedule(), bumps the CPU's irq_gen, and a
 * section whose irq_gen moved, or whose task changed, is no longer trusted
 * to have started at the call: the sampler measures it.
 *
 * All times are local_clock() (monotonic on one CPU; a section does not
 * migrate), turned into CLOCK_MONOTONIC only for records.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ftrace.h>
#include <linux/interrupt.h>
#include <linux/irqflags.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/sched/clock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/tracepoint.h>

#ifdef CONFIG_X86
#include <asm/irq_vectors.h>
#endif

#include "internal.h"

bool irqtrace_hybrid_running __read_mostly;
/* A record with no stack (irqtrace_section.frames set, nr_frames 0). */
static const unsigned long no_frames[1];
/* The scheduler's functions are hooked (and __schedule() bumps irq_gen). */
static bool sched_registered;

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

/*
 * The scheduler's section: its first call with interrupts off, and the
 * function that turns them on in the task switched to.
 */
static const char sched_starter[] = "rcu_note_context_switch";
/* gcc may rename it (finish_task_switch.isra.0): either name, nothing else. */
static const char sched_ender[] = "finish_task_switch";
static const char sched_ender_renamed[] = "finish_task_switch.*";

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
	 * A reschedule due switches tasks at the preempt_enable below (or
	 * ftrace's, after this callback). With __schedule() hooked, that bumps
	 * irq_gen; without, no start then (on PREEMPT_DYNAMIC kernels in
	 * voluntary mode, as Debian's boot, one stays due for long).
	 */
	if (likely(READ_ONCE(c->wanted)) &&
	    (READ_ONCE(sched_registered) || !tif_need_resched())) {
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

/* Whether o is open and still starts where its function was called. */
static __always_inline bool open_valid(const struct irqtrace_lock_open *o, u64 gen)
{
	return o->ts && o->gen == gen && o->task == current;
}

static __always_inline bool lock_open_valid(const struct irqtrace_cpu *c, u64 gen)
{
	return open_valid(&c->lock_open, gen);
}

/* Remembers a section a hook measured, for the sampler's next sample. */
static __always_inline void hooked_done(struct irqtrace_cpu *c, u64 start, u64 end, u8 start_by,
					u8 end_by)
{
	struct irqtrace_hooked *h = &c->hooked[c->hooked_next++ % IRQTRACE_HOOKED_RECENT];

	h->start = start;
	h->end = end;
	h->start_by = start_by;
	h->end_by = end_by;
}

/* The hooked section that ended last at or before end, if it ended at or after from. */
static __always_inline const struct irqtrace_hooked *last_hooked(const struct irqtrace_cpu *c,
								 u64 from, u64 end)
{
	return irqtrace_last_hooked(c->hooked, from, end);
}

/* CLOCK_MONOTONIC of a local_clock() time of this CPU. */
static __always_inline u64 to_mono(u64 t)
{
	return ktime_get_mono_fast_ns() - (local_clock() - t);
}

/* This CPU's local_clock() of a CLOCK_MONOTONIC time. */
static __always_inline u64 to_local(u64 mono)
{
	return local_clock() - (ktime_get_mono_fast_ns() - mono);
}

/*
 * A section a hook measured, of delta ns, of task t in w: false if it is the
 * idle loop's own (counted so). Else it goes in the histogram from the floor
 * on (below it the sampler does not count a section either, and one
 * distribution serves both), unless the steal clock says the host took most
 * of it: then *host, and no histogram.
 */
static bool hooked_count(struct irqtrace_cpu *c, struct task_struct *t,
			 const struct irqtrace_where *w, u64 delta, bool *host)
{
	u64 floor = READ_ONCE(irqtrace_floor_ns);

	*host = delta >= floor && irqtrace_mostly_steal(irqtrace_steal_since_mark(c), delta);
	if (!*host)
		return irqtrace_irqs_off_count(c, t, w, delta, floor);
	return !irqtrace_idle_loop(t, w) || READ_ONCE(irqtrace_count_idle);
}

/*
 * A section that hooks opened and closed (by) ended: remembered for the
 * sampler, counted (hooked_count()), and true if it is to be written: over
 * the threshold, and no probe running on this CPU already.
 */
static bool hooked_end(struct irqtrace_cpu *c, u64 start, u64 end, u8 by, struct task_struct *t,
		       const struct irqtrace_where *w, bool *host)
{
	hooked_done(c, start, end, by, by);
	if (unlikely(c->in_probe)) {
		c->counters.dropped_guard++;
		return false;
	}
	return hooked_count(c, t, w, end - start, host) &&
	       end - start >= READ_ONCE(irqtrace_threshold_ns);
}

/* An unlock turns interrupts back on at parent_ip's call: the section a lock function opened ends. */
static void notrace lock_section_end(unsigned long parent_ip)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	struct irqtrace_lock_open *o = &c->lock_open;
	struct irqtrace_section s;
	u64 now, delta;
	bool host;

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
	if (!hooked_end(c, now - delta, now, IRQTRACE_EDGE_LOCK, current, &o->where, &host))
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
	if (host)
		s.flags |= IRQTRACE_F_HYPERVISOR;
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

/*
 * __schedule() turned interrupts off just before this call: the scheduler's
 * section starts (unless an NMI: never here). Interrupts stay off until the
 * next task's finish_task_switch(), or __schedule()'s own return to prev.
 * (On a KVM host it is also called at each VM entry: the next __schedule()
 * starts afresh, and the sampler trusts an opener only in its caller.)
 */
static void notrace on_schedule(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
				struct ftrace_regs *fregs)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	struct irqtrace_lock_open *o = &c->sched_open;

	if (unlikely(!irqs_disabled()))
		return;
	/* A lock section begun before (a preemption in its probe) did not start there. */
	c->irq_gen++;
	if (!READ_ONCE(c->wanted))
		return;
	o->ts = 0;
	o->gen = c->irq_gen;
	o->task = current;
	o->ip = parent_ip;
	o->lock = 0;
	irqtrace_context_now(c, &o->where);
	o->ts = local_clock();
}
NOKPROBE_SYMBOL(on_schedule);

/*
 * finish_task_switch(), in the task switched to, turns interrupts on after
 * its bookkeeping: the scheduler's section ends. It is charged to the task
 * that called schedule(), as the exact method charges the task that turned
 * interrupts off; the task switched to is the enabler.
 */
static void notrace on_switch_done(unsigned long ip, unsigned long parent_ip,
				   struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	struct irqtrace_lock_open *o = &c->sched_open;
	struct irqtrace_section s;
	u64 now, start = o->ts;
	u64 delta;
	bool host;

	if (!start || unlikely(!irqs_disabled()))
		return;
	o->ts = 0;
	/* An interrupt between would say interrupts were on: not one section. */
	if (o->gen != c->irq_gen)
		return;
	now = local_clock();
	delta = now - start;
	if (!hooked_end(c, start, now, IRQTRACE_EDGE_SCHEDULE, o->task, &o->where, &host))
		return;

	c->in_probe++;
	s = (struct irqtrace_section) {
		.kind = IRQTRACE_KIND_IRQS_OFF,
		.method = IRQTRACE_METHOD_HYBRID,
		.flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT,
		.start_by = IRQTRACE_EDGE_SCHEDULE,
		.end_by = IRQTRACE_EDGE_SCHEDULE,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		.start_ns = to_mono(start),
		.duration_ns = delta,
		.where = o->where,
		/* prev is alive: finish_task_switch() drops it after turning interrupts on. */
		.task = o->task,
		.enable_task = current == o->task ? NULL : current,
		.disable_ip = o->ip,
		.enable_ip = ip,
		/*
		 * No stack: this one is the next task's, and prev's cannot be
		 * taken here (stack_trace_save_tsk() is not exported). The sites
		 * say what the section was.
		 */
		.frames = no_frames,
		.nr_frames = 0,
	};
	if (host)
		s.flags |= IRQTRACE_F_HYPERVISOR;
	irqtrace_emit(c, &s);
	c->in_probe--;
}
NOKPROBE_SYMBOL(on_switch_done);

static struct ftrace_ops lock_ops = { .func = on_lock, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops restore_ops = { .func = on_restore, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops enable_ops = { .func = on_enable, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops sched_start_ops = { .func = on_schedule, .flags = HYBRID_OPS_FLAGS };
static struct ftrace_ops sched_end_ops = { .func = on_switch_done, .flags = HYBRID_OPS_FLAGS };
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
 * The last outermost interrupt's section ends at end (local_clock()), timed
 * by what end_by says: written and remembered for the sampler. Interrupts are
 * off, and d->task is current (a switch ends the section first).
 */
static void intr_section_end(struct irqtrace_cpu *c, u64 end, u8 end_by)
{
	struct irqtrace_intr_done *d = &c->intr_done;
	struct irqtrace_section s;
	u64 start = d->start;
	/* The sampler's own callback is no handler's time, nor this module's past the exit. */
	u64 own = d->self + (end > d->exit ? d->own_after_exit : 0);
	u64 delta;
	bool host;

	d->start = 0;
	if (end < start + own)
		return;
	delta = end - start - own;
	hooked_done(c, start, end, IRQTRACE_EDGE_HANDLER, end_by);
	/* A handler's section is never the idle loop's: it is counted from the floor on. */
	if (!hooked_count(c, d->task, &d->where, delta, &host) ||
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
		.end_by = end_by,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		.start_ns = to_mono(start),
		.duration_ns = delta,
		.where = d->where,
		.task = d->task,
		/* Taken at the exit, or none: here is elsewhere. */
		.frames = d->frames,
		.nr_frames = d->nr_frames,
	};
	if (host)
		s.flags |= IRQTRACE_F_HYPERVISOR;
	irqtrace_emit(c, &s);
	c->in_probe--;
}

/* Nothing says where the last interrupt's section ended: at its handler's exit. */
static __always_inline void intr_section_end_at_exit(struct irqtrace_cpu *c)
{
	if (unlikely(c->intr_done.start))
		intr_section_end(c, c->intr_done.exit, IRQTRACE_EDGE_HANDLER);
}

/*
 * Whether the last interrupt's section can have ended at end, after its
 * exit: within the floor of it (what an interrupt's own path may take; more
 * is a section of its own), and with no hooked section ended since (a lock
 * section starts with interrupts on).
 */
static __always_inline bool intr_ends_at(const struct irqtrace_cpu *c, u64 end)
{
	const struct irqtrace_intr_done *d = &c->intr_done;

	return end >= d->exit && end - d->exit < READ_ONCE(irqtrace_floor_ns) &&
	       !last_hooked(c, d->exit, end);
}

/* Whether __irq_exit_rcu() will run softirqs after this outermost handler, with count. */
static __always_inline bool softirqs_next(const struct irqtrace_where *own, unsigned int count)
{
#ifdef RESCHEDULE_VECTOR
	/* Its entry code ends with __irq_exit_raw(), which runs none. */
	if (own->context == IRQTRACE_CONTEXT_VECTOR && own->nr == RESCHEDULE_VECTOR)
		return false;
#endif
	return local_softirq_pending() && !(count & (HARDIRQ_MASK | SOFTIRQ_MASK | NMI_MASK));
}

/*
 * The outermost interrupt's handler ended at now: a section from its entry,
 * of the handler it ran (own: a vector or IRQ with nothing inside). It ends
 * where interrupts come back on, later: irq_exit turns them on to run pending
 * softirqs (softirq_entry comes right after), else they come on at the return
 * (a timer interrupt held back until then is delivered there: the sampler's
 * tells). Until one of these, or another interrupt or a switch, the section
 * stays open; those end it at the exit (a switch on the interrupt's way out,
 * preempt_schedule_irq(), may come with interrupts still off: short, not
 * wrong). A lock call with interrupts on would end it too, but is not worth
 * a load on the hottest path: the lock's section is not the interrupt's.
 */
void irqtrace_hybrid_interrupt_exit(struct irqtrace_cpu *c, u64 now,
				    const struct irqtrace_where *own)
{
	struct irqtrace_intr_done *d = &c->intr_done;
	u64 start = c->intr_start;
	unsigned int count;
	u64 self;

	c->intr_start = 0;
	intr_section_end_at_exit(c);
	if (!start)
		return;
	/* What __irq_exit_rcu() will see: the preempt count without this hardirq. */
	count = preempt_count() - HARDIRQ_OFFSET;
	d->start = start;
	d->exit = now;
	d->self = c->intr_self;
	d->gen = c->irq_gen;
	d->task = current;
	d->where = c->intr_where.context ? c->intr_where : *own;
	d->softirqs_next = softirqs_next(own, count);
	d->softirq_count = count + SOFTIRQ_OFFSET;
	d->nr_frames = 0;
	if (READ_ONCE(irqtrace_stacks) &&
	    now - start >= c->intr_self + READ_ONCE(irqtrace_threshold_ns))
		d->nr_frames = irqtrace_stack_save(d->frames, 0);
	/* Writing the last section and taking the stack: in this one, if it ends later. */
	self = local_clock();
	d->own_after_exit = self > now ? self - now : 0;
}
NOKPROBE_SYMBOL(irqtrace_hybrid_interrupt_exit);

/*
 * A softirq starts (context.c): if irq_exit runs it right after the last
 * interrupt, interrupts came on just before, in handle_softirqs(). It is
 * that run if softirqs were due at the exit, no interrupt or switch came
 * since, and the preempt count is the one irq_exit runs them with; within the
 * floor, with no hooked section between. (local_bh_enable() runs them with
 * one more, unless it came a preempt level deeper; ksoftirqd's loop matches
 * it, a few instructions after interrupts went off again: the floor bounds
 * what such a coincidence can add.)
 */
void irqtrace_hybrid_softirq_entry(struct irqtrace_cpu *c, u64 now)
{
	struct irqtrace_intr_done *d = &c->intr_done;
	unsigned long flags;

	if (likely(!d->start))
		return;
	/* Softirqs run with interrupts on: one coming now would end the section too. */
	raw_local_irq_save(flags);
	if (d->start && d->softirqs_next && d->gen == c->irq_gen && d->task == current &&
	    preempt_count() == d->softirq_count && intr_ends_at(c, now))
		intr_section_end(c, now, IRQTRACE_EDGE_HANDLER);
	else
		intr_section_end_at_exit(c);
	raw_local_irq_restore(flags);
}
NOKPROBE_SYMBOL(irqtrace_hybrid_softirq_entry);

/*
 * The hard sampler's timer runs (sampled.c), in the interrupt its entry
 * opened; expires is its expiry. If it was due before the last
 * interrupt's handler exited, its interrupt was held back by that section
 * and came as interrupts came on: its entry is that section's end, if no
 * other interrupt came between, and within the floor (a timer interrupt
 * raised late, as emulated LAPICs do, would come past the true end).
 */
void irqtrace_hybrid_timer_due(struct irqtrace_cpu *c, ktime_t expires)
{
	struct irqtrace_intr_done *d = &c->intr_done;

	if (likely(!d->start))
		return;
	if (d->gen + 1 == c->irq_gen && c->intr_start && to_local(ktime_to_ns(expires)) <= d->exit &&
	    intr_ends_at(c, c->intr_start))
		intr_section_end(c, c->intr_start, IRQTRACE_EDGE_SAMPLE);
	else
		intr_section_end(c, d->exit, IRQTRACE_EDGE_HANDLER);
}
NOKPROBE_SYMBOL(irqtrace_hybrid_timer_due);

/* A task switches out: the last interrupt's section ended by now. (6.1's prototype.) */
static void notrace on_sched_switch(void *data, bool preempt, struct task_struct *prev,
				    struct task_struct *next, unsigned int prev_state)
{
	intr_section_end_at_exit(this_cpu_ptr(irqtrace_pcpu));
}
NOKPROBE_SYMBOL(on_sched_switch);

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
	/* The interrupt this sample runs in bumped irq_gen once. */
	u64 gen = c->irq_gen - 1;
	/*
	 * What opened the section, if a hook did: a lock function, or
	 * __schedule() that switched to no other task. The later one: the
	 * other had ended by then (a lock call with interrupts on).
	 */
	struct irqtrace_lock_open *o = open_valid(&c->sched_open, gen) &&
		(!open_valid(&c->lock_open, gen) || c->sched_open.ts > c->lock_open.ts) ?
		&c->sched_open : &c->lock_open;
	bool open = open_valid(o, gen);
	u64 floor = READ_ONCE(irqtrace_floor_ns);
	const struct irqtrace_hooked *h;
	u64 opened = o->ts;
	enum irqtrace_cut cut;
	unsigned int i;

	/* Interrupts are on again: neither is open. */
	c->lock_open.ts = 0;
	c->sched_open.ts = 0;
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
	/* Hooked sections that ended after the expiry, from the last back (irqtrace_cut_by_hooked()). */
	for (i = 0; i < IRQTRACE_HOOKED_RECENT; i++) {
		h = last_hooked(c, hs->start, hs->end);
		if (!h)
			break;
		cut = irqtrace_cut_by_hooked(h, floor, &hs->start, &hs->end, &hs->end_by);
		if (cut == IRQTRACE_CUT_THEIRS)
			return false;
		if (cut == IRQTRACE_CUT_DONE)
			break;
		open = false;
	}
	/*
	 * A lock function (or __schedule()) opened it and something inline
	 * ended it. Trusted only if interrupts came back on in the function
	 * that called it: a later section of the same task, begun inline
	 * after the first ended inline, would otherwise look like one long
	 * section. It may have opened after the expiry if the timer's
	 * interrupt was raised late (emulation), never before a hooked
	 * section's end.
	 */
	if (open && opened < hs->end && (hs->start == expiry || opened >= hs->start) && regs &&
	    !user_mode(regs) &&
	    same_function(o->ip, instruction_pointer(regs))) {
		hs->start = opened;
		hs->start_by = o == &c->sched_open ? IRQTRACE_EDGE_SCHEDULE : IRQTRACE_EDGE_LOCK;
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

/*
 * Adds the functions name matches (a glob) to ops' filter: 0, or -EINVAL if
 * none is traceable here (inline, or notrace). ftrace writes into the glob it
 * parses: it gets a copy, not the read-only name.
 */
static int add_filter(struct ftrace_ops *ops, const char *name)
{
	char glob[KSYM_NAME_LEN];
	ssize_t len = strscpy(glob, name, sizeof(glob));

	if (len < 0)
		return len;
	return ftrace_set_filter(ops, (unsigned char *)glob, len, 0);
}

static int set_filter(struct ftrace_ops *ops, const char * const *names, unsigned int n,
		      unsigned int first_bit)
{
	unsigned int i, found = 0;

	for (i = 0; i < n; i++) {
		if (add_filter(ops, names[i]))
			continue;
		set_bit(first_bit + i, hooked);
		found++;
	}
	return found;
}

/*
 * The filters are set once and kept until the module goes
 * (irqtrace_hybrid_exit): ftrace_free_filter() frees an ops' hashes without
 * resetting them, so a later ftrace_set_filter() on the same ops would use
 * freed memory.
 */
static bool filters_set;
static unsigned int nr_lockers, nr_restorers, nr_enablers;
/* Both of the scheduler's functions are traceable here. */
static bool sched_hookable;

static void set_filters(void)
{
	if (filters_set)
		return;
	nr_lockers = set_filter(&lock_ops, lockers, ARRAY_SIZE(lockers), 0);
	nr_restorers = set_filter(&restore_ops, restorers, ARRAY_SIZE(restorers),
				  ARRAY_SIZE(lockers));
	nr_enablers = set_filter(&enable_ops, enablers, ARRAY_SIZE(enablers),
				 ARRAY_SIZE(lockers) + ARRAY_SIZE(restorers));
	sched_hookable = !add_filter(&sched_start_ops, sched_starter) &&
			 (!add_filter(&sched_end_ops, sched_ender) |
			  !add_filter(&sched_end_ops, sched_ender_renamed));
	filters_set = true;
}

void irqtrace_hybrid_exit(void)
{
	if (!filters_set)
		return;
	ftrace_free_filter(&lock_ops);
	ftrace_free_filter(&restore_ops);
	ftrace_free_filter(&enable_ops);
	ftrace_free_filter(&sched_start_ops);
	ftrace_free_filter(&sched_end_ops);
	filters_set = false;
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
	n += sysfs_emit_at(buf, at + n, "sched_hook %s,%s %s\n", sched_starter, sched_ender,
			   sched_registered ? "hooked" : "not hooked");
	return n;
}

static bool switch_registered;

int irqtrace_hybrid_start(void)
{
	unsigned int nl, nr, ne;
	int cpu, ret;

	for_each_possible_cpu(cpu) {
		struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);

		c->lock_open.ts = 0;
		c->sched_open.ts = 0;
		c->intr_start = 0;
		c->intr_done.start = 0;
		c->hard_opened = false;
		memset(c->hooked, 0, sizeof(c->hooked));
	}
	set_filters();
	nl = nr_lockers;
	nr = nr_restorers;
	ne = nr_enablers;
	if (!nl || (!nr && !ne)) {
		/* Info: method=auto goes on with sampled; an explicit hybrid fails, which warns. */
		pr_info("method=hybrid: no irq-saving lock function is out of line here (%u lock, %u unlock): hybrid cannot run\n",
			nl, nr + ne);
		return -EOPNOTSUPP;
	}
	/*
	 * An interrupt's section stays open past its exit until a switch at
	 * the latest. The context probes, started first, looked it up.
	 */
	ret = irqtrace_tp_sched_switch ?
	      tracepoint_probe_register(irqtrace_tp_sched_switch, on_sched_switch, NULL) : -ENOENT;
	if (ret) {
		pr_warn("method=hybrid: cannot hook sched_switch: %d\n", ret);
		return ret;
	}
	switch_registered = true;
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
	/* Without them (not traceable here, or refused), the scheduler's sections are sampled. */
	if (!ret && sched_hookable) {
		int err = register_ftrace_function(&sched_end_ops);

		if (!err) {
			err = register_ftrace_function(&sched_start_ops);
			if (err)
				unregister_ftrace_function(&sched_end_ops);
		}
		if (err)
			pr_info("method=hybrid: cannot hook the scheduler (%d): its sections are sampled\n",
				err);
		WRITE_ONCE(sched_registered, !err);
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
	if (sched_registered) {
		unregister_ftrace_function(&sched_start_ops);
		unregister_ftrace_function(&sched_end_ops);
	}
	WRITE_ONCE(sched_registered, false);
	lock_registered = false;
	restore_registered = false;
	enable_registered = false;
	WRITE_ONCE(irqtrace_hybrid_running, false);
	/*
	 * After: while it ran, a switch ended the interrupt section it names
	 * the task of. One left open now is never ended (start resets it).
	 */
	if (switch_registered) {
		tracepoint_probe_unregister(irqtrace_tp_sched_switch, on_sched_switch, NULL);
		tracepoint_synchronize_unregister();
	}
	switch_registered = false;
}
