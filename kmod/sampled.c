// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: irqs-off and softirqs-off sections, sampled, on any kernel.
 *
 * Each traced CPU runs a pinned periodic hrtimer in hard interrupt context.
 * If interrupts are off when it expires, it fires when they come back on, so
 * its lateness is the part of the section after the expiry: a lower bound of
 * the section's length, short of the truth by less than one period (the
 * section began after the previous expiry, or that one would have been late
 * too). Records carry that bound as error_ns. The timer interrupts the very
 * code that re-enabled interrupts: get_irq_regs() gives its ip, and the stack
 * runs through it.
 *
 * Softirqs off works the same way with a second hrtimer in soft mode (its
 * callback runs from the HRTIMER softirq), which local_bh_disable() holds
 * back until local_bh_enable(). DESIGN.md suggested a timer_list: an hrtimer
 * gives the same measurement with ns expiry instead of jiffies (4 ms at
 * HZ=250). Interrupts off also holds softirqs back, so an irqs-off section
 * shows up as softirqs-off as well: both were blocked.
 *
 * A sample later than its expiry by less than floor_ns is the timer
 * interrupt's own latency: it counts in samples only. One at least that late
 * is one section, of its lateness, in the histogram.
 *
 * The section's context: a softirq the timer interrupted (if it ran for half
 * of the lateness: one that began after the holder was done did not hold
 * it), else the longest
 * hard handler (or another hrtimer's callback) since the previous sample if it
 * took at least half of the lateness, else the task (context.c). For the soft
 * timer, which runs in the HRTIMER softirq after whatever held it back: the
 * softirq (the longest since the previous sample, or the HRTIMER run it is
 * part of), or failing that the hard handler, that took half of it. On an
 * idle CPU the wait before a handler was the idle loop's: the section is the
 * handler's part of the lateness, whatever its share. Only the idle loop's
 * own sections are excluded as idle.
 *
 * With method=hybrid the hard timer's late sample goes to hybrid.c first:
 * hooks may have measured the section it saw already (it is skipped), ended
 * it (it is cut there) or started it (exact at both ends). Handlers are
 * measured there, so a sample names only what it interrupted.
 *
 * Timers are started and stopped through a CPU hotplug state, so CPUs that
 * come online later are traced too.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpuhotplug.h>
#include <linux/hrtimer.h>
#include <asm/irq_regs.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/sched/clock.h>
#include <linux/timekeeping.h>

#include "internal.h"

static bool sample_irqs_off;
static bool sample_softirqs_off;
static u64 period_ns;
static int hp_state = -1;
/* CPUs whose timers run: the cpus parameter may change before they stop. */
static struct cpumask sampled_cpus;

/* The handlers done since this sampler's last sample, the longest of each; the next starts afresh. */
struct sample_held {
	struct irqtrace_handler hard;
	struct irqtrace_handler soft;
};

static void take_held(struct irqtrace_cpu *c, bool hard, struct sample_held *held)
{
	enum irqtrace_sampler i = hard ? IRQTRACE_SAMPLER_HARD : IRQTRACE_SAMPLER_SOFT;
	unsigned long flags;

	/* The soft timer runs with interrupts on: a hard handler ending meanwhile is not lost. */
	raw_local_irq_save(flags);
	held->hard = c->hard_held[i];
	c->hard_held[i].where.context = IRQTRACE_CONTEXT_TASK;
	held->soft = c->soft_held[i];
	c->soft_held[i].where.context = IRQTRACE_CONTEXT_TASK;
	raw_local_irq_restore(flags);
}

/* What held the timer back for late ns, up to now (local_clock()). */
static void sample_context(struct irqtrace_cpu *c, bool hard, const struct sample_held *held,
			   u64 now, u64 late, struct irqtrace_where *w)
{
	struct irqtrace_handler running;

	*w = (struct irqtrace_where) { .context = IRQTRACE_CONTEXT_TASK };
	if (hard) {
		/* The interrupted context: a softirq if one was being served, long enough. */
		irqtrace_context_interrupted(c, w);
		irqtrace_interrupted_held(&c->soft_now, now, late, w);
		/*
		 * But first a hard handler that took half of it: one that came
		 * inside the softirq counts in the softirq's time too.
		 */
		irqtrace_held_by(&held->hard, now, late, w);
		return;
	}
	irqtrace_held_by(&held->hard, now, late, w);
	irqtrace_held_by(&held->soft, now, late, w);
	/* Or the softirq run this callback is part of, busy with other work first. */
	running = c->soft_now;
	running.end = now;
	irqtrace_held_by(&running, now, late, w);
}

/*
 * hybrid: a late hard sample's section, as hybrid.c sees it (false: measured
 * already). Its times become the sample's: late is its length, first_ns its
 * start in CLOCK_MONOTONIC.
 */
static bool hybrid_section(struct irqtrace_cpu *c, struct pt_regs *regs, ktime_t expires,
			   u64 clock, struct irqtrace_hybrid_sample *hs, s64 *late, u64 *first_ns,
			   struct irqtrace_where *where)
{
	u64 mono = ktime_get_mono_fast_ns();
	/* The expiry on this CPU's local_clock(), where the hooks keep their times. */
	u64 expiry = clock - (mono - ktime_to_ns(expires));

	if (!irqtrace_hybrid_sample(c, expiry, clock, regs, hs) || hs->end <= hs->start)
		return false;
	*late = hs->end - hs->start;
	*first_ns = mono - (clock - hs->start);
	if (hs->lock_opened) {
		*where = hs->where;
	} else {
		irqtrace_context_interrupted(c, where);
		irqtrace_interrupted_held(&c->soft_now, hs->end, *late, where);
	}
	return true;
}

static void sample(struct irqtrace_cpu *c, enum irqtrace_hist_id hist, ktime_t now,
		   ktime_t expires)
{
	bool hard = hist == IRQTRACE_HIST_IRQS_OFF;
	struct pt_regs *regs = hard ? get_irq_regs() : NULL;
	bool hybrid = hard && READ_ONCE(irqtrace_hybrid_running);
	struct irqtrace_hybrid_sample hs;
	struct irqtrace_section s;
	struct irqtrace_where where;
	struct sample_held held;
	unsigned long flags;
	s64 late = ktime_to_ns(ktime_sub(now, expires));
	u64 clock, seen, first_ns, stolen = 0;
	bool hypervisor;

	/*
	 * c is this CPU's, but the soft timer's sample runs with interrupts on:
	 * the hard timer's can come between a load and a store of a counter.
	 */
	this_cpu_inc(irqtrace_pcpu->counters.samples);
	take_held(c, hard, &held);
	/* Every hard sample moves the steal mark: the next window starts here. */
	if (hard)
		stolen = irqtrace_steal_mark(c);
	if (late < 0)
		late = 0;
	if (late < READ_ONCE(irqtrace_floor_ns))
		return;
	clock = local_clock();
	seen = late;
	/* The section was first seen at the missed expiry (or the idle CPU's handler began). */
	first_ns = ktime_to_ns(expires);
	if (hybrid) {
		if (!hybrid_section(c, regs, expires, clock, &hs, &late, &first_ns, &where))
			return;
		/* Handlers are hooked: only the idle loop's own wait is left here. */
		if (irqtrace_idle_loop(current, &where) && !READ_ONCE(irqtrace_count_idle)) {
			this_cpu_inc(irqtrace_pcpu->counters.idle_excluded);
			return;
		}
		if (late < READ_ONCE(irqtrace_floor_ns))
			return;
		seen = late;
	} else {
		sample_context(c, hard, &held, clock, late, &where);
	}
	if (!hybrid && unlikely(irqtrace_idle_loop(current, &where))) {
		/*
		 * The idle loop: its own wait is not a section, a handler's in
		 * it is (a softirq's too: a timer interrupt can come after the
		 * softirq that held it back has ended, late under emulation).
		 */
		late = irqtrace_idle_handler(irqtrace_longer(&held.hard, &held.soft), clock, late,
					     &where);
		if (irqtrace_idle_loop(current, &where) && !READ_ONCE(irqtrace_count_idle)) {
			this_cpu_inc(irqtrace_pcpu->counters.idle_excluded);
			return;
		}
		if (late < READ_ONCE(irqtrace_floor_ns))
			return;
	}
	/* The host's, not this CPU's: in no histogram, a record marked so. */
	hypervisor = irqtrace_mostly_steal(stolen, late);
	if (!hypervisor)
		irqtrace_hist_add(&c->hist[hist], late);
	if (late < READ_ONCE(irqtrace_threshold_ns))
		return;
	if (unlikely(c->in_probe)) {
		this_cpu_inc(irqtrace_pcpu->counters.dropped_guard);
		return;
	}

	/*
	 * The soft timer runs with interrupts on: keep them off while the guard
	 * is up, or every interrupt meanwhile would count as a recursion.
	 */
	raw_local_irq_save(flags);
	c->in_probe++;
	s = (struct irqtrace_section) {
		.kind = hist == IRQTRACE_HIST_IRQS_OFF ? IRQTRACE_KIND_IRQS_OFF
						       : IRQTRACE_KIND_SOFTIRQS_OFF,
		.method = IRQTRACE_METHOD_SAMPLED,
		/* Begun up to a period before the missed expiry; ended as the sample came. */
		.flags = IRQTRACE_F_END_EXACT,
		.start_by = IRQTRACE_EDGE_SAMPLE,
		.end_by = IRQTRACE_EDGE_SAMPLE,
		.cpu = raw_smp_processor_id(),
		.enable_cpu = raw_smp_processor_id(),
		.start_ns = first_ns + (seen - late),
		.duration_ns = late,
		.error_ns = period_ns,
		.where = where,
		.task = current,
	};
	if (hybrid) {
		s.method = IRQTRACE_METHOD_HYBRID;
		s.flags = hs.flags;
		s.start_by = hs.start_by;
		s.end_by = hs.end_by;
		s.lock = hs.lock;
		s.disable_ip = hs.disable_ip;
		/* Both ends exact: no error. */
		if (hs.flags & IRQTRACE_F_START_EXACT)
			s.error_ns = 0;
	}
	if (hypervisor)
		s.flags |= IRQTRACE_F_HYPERVISOR;
	if (regs && !user_mode(regs)) {
		s.enable_ip = instruction_pointer(regs);
		s.trim_to_ip = s.enable_ip;
		s.flags |= IRQTRACE_F_SITES_VALID;
	}
	irqtrace_emit(c, &s);
	c->in_probe--;
	raw_local_irq_restore(flags);
}

static enum hrtimer_restart sample_and_rearm(struct hrtimer *t, enum irqtrace_hist_id hist)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);
	ktime_t now = hrtimer_cb_get_time(t);
	/* hybrid: the interrupt's section is its handlers', not this callback's. */
	bool timed = hist == IRQTRACE_HIST_IRQS_OFF && READ_ONCE(irqtrace_hybrid_running);
	u64 self = timed ? local_clock() : 0;

	/* hybrid: a timer due before the last interrupt's exit says where that interrupt ended. */
	if (timed)
		irqtrace_hybrid_timer_due(c, hrtimer_get_expires(t));
	sample(c, hist, now, hrtimer_get_expires(t));
	if (timed)
		irqtrace_hybrid_sampler_self(c, local_clock() - self);
	hrtimer_forward(t, now, ns_to_ktime(period_ns));
	return HRTIMER_RESTART;
}

static enum hrtimer_restart hard_timer_fn(struct hrtimer *t)
{
	return sample_and_rearm(t, IRQTRACE_HIST_IRQS_OFF);
}
NOKPROBE_SYMBOL(hard_timer_fn);

static enum hrtimer_restart soft_timer_fn(struct hrtimer *t)
{
	return sample_and_rearm(t, IRQTRACE_HIST_SOFTIRQS_OFF);
}
NOKPROBE_SYMBOL(soft_timer_fn);

/* Runs on the CPU coming online (and on each online CPU at start). */
static int sampled_cpu_online(unsigned int cpu)
{
	struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);
	ktime_t first = ktime_add_ns(ktime_get(), period_ns);

	if (!irqtrace_cpu_wanted(cpu))
		return 0;
	cpumask_set_cpu(cpu, &sampled_cpus);
	if (sample_irqs_off) {
		/* The first sample only marks the steal clock. */
		c->steal_known = false;
		hrtimer_init(&c->hard_timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_PINNED_HARD);
		c->hard_timer.function = hard_timer_fn;
		hrtimer_start(&c->hard_timer, first, HRTIMER_MODE_ABS_PINNED_HARD);
	}
	if (sample_softirqs_off) {
		hrtimer_init(&c->soft_timer, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_PINNED_SOFT);
		c->soft_timer.function = soft_timer_fn;
		hrtimer_start(&c->soft_timer, first, HRTIMER_MODE_ABS_PINNED_SOFT);
	}
	return 0;
}

static int sampled_cpu_offline(unsigned int cpu)
{
	struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);

	if (!cpumask_test_and_clear_cpu(cpu, &sampled_cpus))
		return 0;
	if (sample_irqs_off)
		hrtimer_cancel(&c->hard_timer);
	if (sample_softirqs_off)
		hrtimer_cancel(&c->soft_timer);
	return 0;
}

int irqtrace_sampled_start(bool irqs_off, bool softirqs_off)
{
	int ret;

	sample_irqs_off = irqs_off;
	sample_softirqs_off = softirqs_off;
	period_ns = READ_ONCE(irqtrace_period_ns);
	ret = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "irqtrace/sampled:online",
				sampled_cpu_online, sampled_cpu_offline);
	if (ret < 0)
		return ret;
	hp_state = ret;
	return 0;
}

void irqtrace_sampled_stop(void)
{
	if (hp_state < 0)
		return;
	/* Runs sampled_cpu_offline() on every online CPU: the timers are gone after. */
	cpuhp_remove_state(hp_state);
	hp_state = -1;
}
