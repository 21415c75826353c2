// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace_selftest: ground truth for irqtrace's tests and benchmarks.
 *
 * A process writes one command to /dev/irqtrace_selftest; the module carries
 * it out synchronously, in that process's context (so the section belongs to
 * the writer's pid and comm), and the next read() of the same open file
 * returns one line saying exactly what was done:
 *
 *   irqoff <usec> [cpu [witness]]  local_irq_save, busy-wait, local_irq_restore
 *   bhoff <usec> [cpu [witness]]   local_bh_disable, busy-wait, local_bh_enable
 *   lock <usec> [cpu [witness]]    spin_lock_irqsave(&irqburn_lock), busy-wait,
 *                                  spin_unlock_irqrestore: a section that the
 *                                  out-of-line lock functions open and close
 *   lockirq <usec> [cpu [witness]] the same with spin_lock_irq, spin_unlock_irq
 *   lockinline <usec> [cpu [witness]]
 *                                  spin_lock_irqsave, busy-wait, spin_unlock,
 *                                  local_irq_restore: opened by a lock function,
 *                                  ended inline
 *   sched <usec> [cpu]             busy-wait in a preempt notifier's sched_out,
 *                                  which __schedule() runs with interrupts off
 *                                  as the writer goes to sleep: a section of the
 *                                  scheduler's, from __schedule() to the next
 *                                  task's finish_task_switch(); kernels with
 *                                  CONFIG_PREEMPT_NOTIFIERS (KVM's: Debian's),
 *                                  else -EOPNOTSUPP
 *   steal <usec> <offset> [cpu [lock]]
 *                                  local_irq_save (with lock=1: spin_lock_irqsave
 *                                  of irqburn_lock), busy-wait, and add the wait to
 *                                  this CPU's steal clock (struct kvm_steal_time
 *                                  at the per-CPU offset, the steal_time symbol
 *                                  in /proc/kallsyms), as KVM does for a vCPU it
 *                                  descheduled that long: to the sampler, a host
 *                                  stall; x86 only, else -EOPNOTSUPP
 *   irqline <irq> <usec> [nest]  disable_irq, then disable_irq_nosync nest-1
 *                                more times, wait, then enable_irq nest times
 *                                from a work item on another CPU
 *   hardirq <usec> <cpu> [tail]  busy-wait in a hard hrtimer callback on cpu,
 *                                which is idle meanwhile (the writer waits on
 *                                another CPU): a section of interrupt context;
 *                                with tail=1 an empty hard timer due when the
 *                                callback was runs right after it, in the same
 *                                interrupt, as the tick does when it fell due
 *                                meanwhile: a sampler's late sample comes after
 *                                both, and must still name the long one
 *   softirq <usec> <cpu>         local_irq_save, busy-wait, local_irq_restore
 *                                in a soft hrtimer callback on cpu (the HRTIMER
 *                                softirq), idle otherwise; with the witness
 *                                timer (timer_late_ns, below)
 *   ipi <usec> <cpu>             busy-wait in an smp_call_function_single()
 *                                function on cpu, idle otherwise: a section of
 *                                the CALL_FUNCTION_SINGLE vector's handler,
 *                                which passes no irq_handler_entry; hardirq=0
 *                                in the report when the CPU was idle and
 *                                polling, so that its idle loop ran the
 *                                function instead, no IPI sent
 *   irqwork <usec> <cpu>         busy-wait in an irq_work queued on cpu by
 *                                cpu itself: a section of the IRQ_WORK
 *                                vector's handler, idle otherwise
 *   bench <pairs>                time <pairs> local_irq_save/restore pairs
 *   benchlock <pairs>            time <pairs> spin_lock_irqsave/
 *                                spin_unlock_irqrestore pairs of irqburn_lock
 *
 * Busy waits use local_clock(), the clock irqtrace's exact method uses, so
 * the reported duration_ns is comparable with what irqtrace measures; the
 * irq-line hold is measured with ktime_get_mono_fast_ns() for the same
 * reason. start_ns is CLOCK_MONOTONIC.
 *
 * The functions that hold a section are noinline and named irqburn_* so that
 * tests can look for them in recorded stacks and disable/enable sites.
 *
 * With witness=1, irqoff and bhoff also arm a hard hrtimer on the CPU due
 * halfway through the section and report timer_late_ns: how long after the
 * guest owed it the timer interrupt came (after its expiry for bhoff, after
 * interrupts came back on for irqoff). A sampling tracer is only as good as
 * the timer interrupts it gets; under emulation they can be milliseconds late.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bottom_half.h>
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdesc.h>
#include <linux/irq_work.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#ifdef CONFIG_X86
#include <asm/kvm_para.h>
#include <asm/msr.h>
#endif

/* Longest section a command may ask for: beyond it the guest's watchdogs bark. */
#define MAX_HOLD_USEC		(100 * USEC_PER_MSEC)
#define MAX_NEST		8
#define MAX_BENCH_PAIRS		(100 * 1000 * 1000)
#define REPORT_LEN		256
#define CMD_LEN			64

struct selftest_file {
	struct mutex lock;	/* one command at a time per open file */
	char report[REPORT_LEN];
	size_t report_len;
	loff_t read_pos;
};

struct irqline_enable_work {
	struct work_struct work;
	unsigned int irq;
	unsigned int nest;
	int cpu;
	pid_t pid;
	char comm[TASK_COMM_LEN];
	u64 end_ns;		/* just before the last enable_irq() */
	u64 after_ns;		/* just after it returned */
};

/*
 * Busy-waits ns with the section already open; returns its length from just
 * after the opening call to just before the closing one, the span a tracer's
 * probes bracket most tightly. *start_ns is the CLOCK_MONOTONIC time of the
 * opening, read after the wait so that it costs nothing inside the span.
 */
static __always_inline u64 irqburn_hold(u64 ns, u64 *start_ns)
{
	u64 t0 = local_clock(), now;

	do {
		cpu_relax();
		now = local_clock();
	} while (now - t0 < ns);
	*start_ns = ktime_get_mono_fast_ns() - (local_clock() - t0);
	return local_clock() - t0;
}

/*
 * *outer_ns brackets the section from outside: from before the call that
 * opens it to after the call that closes it. The true section lies between
 * the two measurements, and so does any tracer's.
 */
static noinline u64 irqburn_irqs_off(u64 ns, u64 *start_ns, u64 *outer_ns, u64 *after)
{
	unsigned long flags;
	u64 before, held;

	before = local_clock();
	local_irq_save(flags);
	held = irqburn_hold(ns, start_ns);
	local_irq_restore(flags);
	*after = local_clock();
	*outer_ns = *after - before;
	return held;
}

/* A static lock, so that a record's lock resolves to a name. */
static DEFINE_SPINLOCK(irqburn_lock);

/* How a section is opened and closed. */
enum irqburn_opener {
	IRQBURN_IRQSAVE,	/* local_irq_save .. local_irq_restore */
	IRQBURN_BH,		/* local_bh_disable .. local_bh_enable */
	IRQBURN_LOCK,		/* spin_lock_irqsave .. spin_unlock_irqrestore */
	IRQBURN_LOCK_IRQ,	/* spin_lock_irq .. spin_unlock_irq */
	IRQBURN_LOCK_INLINE,	/* spin_lock_irqsave .. spin_unlock; local_irq_restore */
};

static noinline u64 irqburn_lock_irqsave(u64 ns, u64 *start_ns, u64 *outer_ns, u64 *after)
{
	unsigned long flags;
	u64 before, held;

	before = local_clock();
	spin_lock_irqsave(&irqburn_lock, flags);
	held = irqburn_hold(ns, start_ns);
	spin_unlock_irqrestore(&irqburn_lock, flags);
	*after = local_clock();
	*outer_ns = *after - before;
	return held;
}

static noinline u64 irqburn_lock_irq(u64 ns, u64 *start_ns, u64 *outer_ns, u64 *after)
{
	u64 before, held;

	before = local_clock();
	spin_lock_irq(&irqburn_lock);
	held = irqburn_hold(ns, start_ns);
	spin_unlock_irq(&irqburn_lock);
	*after = local_clock();
	*outer_ns = *after - before;
	return held;
}

static noinline u64 irqburn_lock_inline(u64 ns, u64 *start_ns, u64 *outer_ns, u64 *after)
{
	unsigned long flags;
	u64 before, held;

	before = local_clock();
	spin_lock_irqsave(&irqburn_lock, flags);
	held = irqburn_hold(ns, start_ns);
	spin_unlock(&irqburn_lock);
	local_irq_restore(flags);
	*after = local_clock();
	*outer_ns = *after - before;
	return held;
}

static noinline u64 irqburn_bh_off(u64 ns, u64 *start_ns, u64 *outer_ns, u64 *after)
{
	u64 before, held;

	before = local_clock();
	local_bh_disable();
	held = irqburn_hold(ns, start_ns);
	local_bh_enable();
	*after = local_clock();
	*outer_ns = *after - before;
	return held;
}

struct irqburn_witness {
	struct hrtimer timer;
	u64 fired;		/* local_clock() in the callback; 0 until then */
};

static enum hrtimer_restart irqburn_witness_fn(struct hrtimer *t)
{
	struct irqburn_witness *w = container_of(t, struct irqburn_witness, timer);

	WRITE_ONCE(w->fired, local_clock());
	return HRTIMER_NORESTART;
}

/*
 * Holds the section, with the witness timer if asked; returns how late the
 * witness came (-1 if it had not come 100 ms after it was owed). It is waited
 * for busy, not asleep: a late sample then still lands in this task, as it
 * would without the witness. Inlined: the stacks recorded in sections stay
 * irqburn_* < run_command.
 */
static __always_inline s64 irqburn_section(enum irqburn_opener how, bool witness, u64 ns,
					    u64 *held, u64 *start_ns, u64 *outer_ns)
{
	bool irqs = how != IRQBURN_BH;
	struct irqburn_witness w = { .fired = 0 };
	u64 due, after, owed;
	s64 late = -1;

	hrtimer_init_on_stack(&w.timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	w.timer.function = irqburn_witness_fn;
	due = local_clock() + ns / 2;
	if (witness)
		hrtimer_start(&w.timer, ns_to_ktime(ns / 2), HRTIMER_MODE_REL_PINNED_HARD);
	switch (how) {
	case IRQBURN_IRQSAVE:
		*held = irqburn_irqs_off(ns, start_ns, outer_ns, &after);
		break;
	case IRQBURN_BH:
		*held = irqburn_bh_off(ns, start_ns, outer_ns, &after);
		break;
	case IRQBURN_LOCK:
		*held = irqburn_lock_irqsave(ns, start_ns, outer_ns, &after);
		break;
	case IRQBURN_LOCK_IRQ:
		*held = irqburn_lock_irq(ns, start_ns, outer_ns, &after);
		break;
	case IRQBURN_LOCK_INLINE:
		*held = irqburn_lock_inline(ns, start_ns, outer_ns, &after);
		break;
	}
	if (witness) {
		/*
		 * irqoff: owed once interrupts were back on (0 when it came
		 * right then, before the closing clock read); bhoff: when due.
		 */
		owed = irqs ? after : due;
		while (!READ_ONCE(w.fired) && local_clock() - owed < 100 * NSEC_PER_MSEC)
			cpu_relax();
		hrtimer_cancel(&w.timer);
		if (READ_ONCE(w.fired))
			late = max_t(s64, 0, (s64)(READ_ONCE(w.fired) - owed));
	}
	destroy_hrtimer_on_stack(&w.timer);
	return late;
}

static int pin_to_cpu(int cpu, cpumask_var_t saved);

/*
 * Pins the writer to a CPU other than cpu, so that cpu idles until the
 * section's interrupt comes there; *saved (allocated here) keeps the writer's
 * affinity for unpin().
 */
static int pin_away_from(int cpu, cpumask_var_t *saved)
{
	int other = cpumask_any_but(cpu_online_mask, cpu);
	int ret;

	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_online(cpu) || other >= nr_cpu_ids)
		return -EINVAL;
	if (!alloc_cpumask_var(saved, GFP_KERNEL))
		return -ENOMEM;
	ret = pin_to_cpu(other, *saved);
	if (ret)
		free_cpumask_var(*saved);
	return ret;
}

static void unpin(cpumask_var_t saved)
{
	set_cpus_allowed_ptr(current, saved);
	free_cpumask_var(saved);
}

/* A section run by a timer callback on an otherwise idle CPU. */
struct irqburn_irq_section {
	struct hrtimer timer;
	struct hrtimer tail;
	struct completion done;
	bool soft;
	bool want_tail;
	bool tail_ran;
	u64 ns;
	u64 start_ns;
	u64 held;
	u64 outer_ns;
	/* softirq: how late the witness timer came (irqburn_section), -1 if it did not */
	s64 timer_late_ns;
	int cpu;
};

static noinline enum hrtimer_restart irqburn_tail_fn(struct hrtimer *t)
{
	struct irqburn_irq_section *x = container_of(t, struct irqburn_irq_section, tail);

	x->tail_ran = true;
	complete(&x->done);
	return HRTIMER_NORESTART;
}

/* The callback is the section: interrupts are off for all of it. */
static noinline enum hrtimer_restart irqburn_hardirq_fn(struct hrtimer *t)
{
	struct irqburn_irq_section *x = container_of(t, struct irqburn_irq_section, timer);
	u64 before = local_clock();

	/*
	 * Due when this one was, so already expired: the interrupt runs it
	 * next, before any timer that fell due while this one ran.
	 */
	if (x->want_tail)
		hrtimer_start(&x->tail, hrtimer_get_expires(t), HRTIMER_MODE_ABS_PINNED_HARD);
	x->held = irqburn_hold(x->ns, &x->start_ns);
	x->outer_ns = local_clock() - before;
	x->cpu = raw_smp_processor_id();
	/* The waiter reports once the tail ran too. */
	if (!x->want_tail)
		complete(&x->done);
	return HRTIMER_NORESTART;
}

static noinline enum hrtimer_restart irqburn_softirq_fn(struct hrtimer *t)
{
	struct irqburn_irq_section *x = container_of(t, struct irqburn_irq_section, timer);

	/* With the witness: a sampler is only as good as the timer interrupts it gets. */
	x->timer_late_ns = irqburn_section(IRQBURN_IRQSAVE, true, x->ns, &x->held, &x->start_ns,
					   &x->outer_ns);
	x->cpu = raw_smp_processor_id();
	complete(&x->done);
	return HRTIMER_NORESTART;
}

/* Runs on the target CPU (an IPI): the pinned timer fires there, 2 ms on, once it idles. */
static void irqburn_arm(void *arg)
{
	struct irqburn_irq_section *x = arg;

	hrtimer_start(&x->timer, ms_to_ktime(2),
		      x->soft ? HRTIMER_MODE_REL_PINNED_SOFT : HRTIMER_MODE_REL_PINNED_HARD);
}

static int irqburn_in_interrupt(bool soft, u64 usec, int cpu, bool tail, char *report,
				size_t len)
{
	struct irqburn_irq_section x = {
		.soft = soft, .want_tail = tail, .ns = usec * NSEC_PER_USEC, .cpu = -1,
	};
	cpumask_var_t saved;
	int ret;

	ret = pin_away_from(cpu, &saved);
	if (ret)
		return ret;
	init_completion(&x.done);
	hrtimer_init_on_stack(&x.timer, CLOCK_MONOTONIC,
			      soft ? HRTIMER_MODE_REL_PINNED_SOFT : HRTIMER_MODE_REL_PINNED_HARD);
	x.timer.function = soft ? irqburn_softirq_fn : irqburn_hardirq_fn;
	hrtimer_init_on_stack(&x.tail, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_PINNED_HARD);
	x.tail.function = irqburn_tail_fn;
	smp_call_function_single(cpu, irqburn_arm, &x, 1);
	if (!wait_for_completion_timeout(&x.done, msecs_to_jiffies(1000 + usec / USEC_PER_MSEC)))
		ret = -ETIMEDOUT;
	hrtimer_cancel(&x.timer);
	hrtimer_cancel(&x.tail);
	destroy_hrtimer_on_stack(&x.tail);
	destroy_hrtimer_on_stack(&x.timer);
	unpin(saved);
	if (!ret && soft)
		scnprintf(report, len,
			  "op=softirq cpu=%d pid=%d tgid=%d comm=%s fn=%ps start_ns=%llu duration_ns=%llu outer_ns=%llu tail=%d timer_late_ns=%lld\n",
			  x.cpu, task_pid_nr(current), task_tgid_nr(current), current->comm,
			  x.timer.function, x.start_ns, x.held, x.outer_ns, x.tail_ran,
			  x.timer_late_ns);
	else if (!ret)
		scnprintf(report, len,
			  "op=hardirq cpu=%d pid=%d tgid=%d comm=%s fn=%ps start_ns=%llu duration_ns=%llu outer_ns=%llu tail=%d\n",
			  x.cpu, task_pid_nr(current), task_tgid_nr(current), current->comm,
			  x.timer.function, x.start_ns, x.held, x.outer_ns, x.tail_ran);
	return ret;
}

/* A section in an x86 system vector's handler on an otherwise idle CPU. */
struct irqburn_vector_section {
	struct irq_work work;
	struct completion done;
	u64 ns;
	u64 start_ns;
	u64 held;
	u64 outer_ns;
	int cpu;
	/*
	 * In a hard interrupt: the vector's handler ran it. Not when the
	 * target CPU was idle and polling: no IPI is sent to such a CPU, its
	 * idle loop runs the queued function itself, in the idle task.
	 */
	bool hardirq;
};

static noinline void irqburn_vector_hold(struct irqburn_vector_section *x)
{
	u64 before = local_clock();

	x->hardirq = in_hardirq();
	x->held = irqburn_hold(x->ns, &x->start_ns);
	x->outer_ns = local_clock() - before;
	x->cpu = raw_smp_processor_id();
}

/* smp_call_function_single()'s function: the CALL_FUNCTION_SINGLE vector's handler runs it. */
static noinline void irqburn_ipi_fn(void *arg)
{
	irqburn_vector_hold(arg);
}

/* Interrupts are off: the IRQ_WORK vector's handler runs it. */
static noinline void irqburn_irq_work_fn(struct irq_work *w)
{
	struct irqburn_vector_section *x = container_of(w, struct irqburn_vector_section, work);

	irqburn_vector_hold(x);
	complete(&x->done);
}

/*
 * Queued by the target CPU itself: queued from another, an irq_work travels
 * as a CALL_FUNCTION_SINGLE IPI; queued locally it raises the IRQ_WORK
 * vector, which comes once this IPI's handler has returned.
 */
static void irqburn_queue_work(void *arg)
{
	struct irqburn_vector_section *x = arg;

	irq_work_queue(&x->work);
}

static int irqburn_in_vector(bool ipi, u64 usec, int cpu, char *report, size_t len)
{
	struct irqburn_vector_section x = { .ns = usec * NSEC_PER_USEC, .cpu = -1 };
	cpumask_var_t saved;
	int ret;

	ret = pin_away_from(cpu, &saved);
	if (ret)
		return ret;
	schedule_timeout_uninterruptible(1);
	init_completion(&x.done);
	init_irq_work(&x.work, irqburn_irq_work_fn);
	if (ipi) {
		ret = smp_call_function_single(cpu, irqburn_ipi_fn, &x, 1);
	} else {
		ret = smp_call_function_single(cpu, irqburn_queue_work, &x, 1);
		if (!ret && !wait_for_completion_timeout(&x.done,
							 msecs_to_jiffies(1000 + usec / USEC_PER_MSEC)))
			ret = -ETIMEDOUT;
		irq_work_sync(&x.work);
	}
	unpin(saved);
	if (!ret)
		scnprintf(report, len,
			  "op=%s cpu=%d pid=%d tgid=%d comm=%s fn=%ps start_ns=%llu duration_ns=%llu outer_ns=%llu hardirq=%d\n",
			  ipi ? "ipi" : "irqwork", x.cpu, task_pid_nr(current), task_tgid_nr(current),
			  current->comm, ipi ? (void *)irqburn_ipi_fn : (void *)irqburn_irq_work_fn,
			  x.start_ns, x.held, x.outer_ns, x.hardirq);
	return ret;
}

static void irqburn_enable_line(struct work_struct *work)
{
	struct irqline_enable_work *w = container_of(work, struct irqline_enable_work, work);
	unsigned int i;

	w->cpu = raw_smp_processor_id();
	w->pid = task_pid_nr(current);
	get_task_comm(w->comm, current);
	/*
	 * Depth 1 -> 2 -> 1 ends nothing, but runs the enable path once on
	 * this CPU just before the measured call, as the disabling side did:
	 * under emulation a first run through code costs microseconds more,
	 * which would otherwise land on one end of the section only.
	 */
	disable_irq_nosync(w->irq);
	enable_irq(w->irq);
	for (i = 1; i < w->nest; i++)
		enable_irq(w->irq);
	w->end_ns = ktime_get_mono_fast_ns();
	enable_irq(w->irq);
	/* Also keeps this from being a tail call: the enable site is this function. */
	w->after_ns = ktime_get_mono_fast_ns();
}

static noinline int irqburn_mask_line(unsigned int irq, u64 usec, unsigned int nest,
				      char *report, size_t len)
{
	struct irqline_enable_work w = { .irq = irq, .nest = nest, .cpu = -1 };
	int this_cpu, other_cpu;
	u64 start, inner;
	unsigned int i;

	if (!irq_get_irq_data(irq))
		return -ENOENT;

	INIT_WORK_ONSTACK(&w.work, irqburn_enable_line);
	/*
	 * duration_ns runs from just before the first disable_irq() to just
	 * before the last enable_irq(); inner_ns from after the first disable
	 * returned, outer_ns to after the last enable returned: a tracer's
	 * probes on those calls measure between inner_ns and outer_ns.
	 */
	this_cpu = raw_smp_processor_id();
	/* Warm the disable and enable paths on this CPU (see irqburn_enable_line). */
	disable_irq(irq);
	enable_irq(irq);
	start = ktime_get_mono_fast_ns();
	disable_irq(irq);
	inner = ktime_get_mono_fast_ns();
	for (i = 1; i < nest; i++)
		disable_irq_nosync(irq);
	fsleep(usec);

	/* Enable from another CPU than the one that disabled, as drivers' work items do. */
	other_cpu = cpumask_any_but(cpu_online_mask, this_cpu);
	if (other_cpu >= nr_cpu_ids)
		other_cpu = this_cpu;
	queue_work_on(other_cpu, system_highpri_wq, &w.work);
	flush_work(&w.work);
	destroy_work_on_stack(&w.work);

	scnprintf(report, len,
		  "op=irqline irq=%u nest=%u cpu=%d pid=%d comm=%s start_ns=%llu duration_ns=%llu inner_ns=%llu outer_ns=%llu enable_cpu=%d enable_pid=%d enable_comm=%s\n",
		  irq, nest, this_cpu, task_pid_nr(current), current->comm, start,
		  w.end_ns - start, w.end_ns - inner, w.after_ns - start, w.cpu, w.pid, w.comm);
	return 0;
}

static noinline u64 irqburn_bench_lock(u64 pairs)
{
	unsigned long flags;
	u64 start, i;

	start = local_clock();
	for (i = 0; i < pairs; i++) {
		spin_lock_irqsave(&irqburn_lock, flags);
		spin_unlock_irqrestore(&irqburn_lock, flags);
	}
	return local_clock() - start;
}

static noinline u64 irqburn_bench(u64 pairs)
{
	unsigned long flags;
	u64 start, i;

	start = local_clock();
	for (i = 0; i < pairs; i++) {
		local_irq_save(flags);
		barrier();
		local_irq_restore(flags);
	}
	return local_clock() - start;
}

#ifdef CONFIG_PREEMPT_NOTIFIERS
/* The scheduler's section, held in a preempt notifier. */
struct irqburn_sched {
	struct preempt_notifier notifier;
	bool armed;		/* hold at the next switch out, once */
	u64 ns;
	u64 start_ns;
	u64 held;
	pid_t next_pid;
	char next_comm[TASK_COMM_LEN];
};

static void irqburn_sched_in(struct preempt_notifier *pn, int cpu)
{
}

/* prepare_task_switch() runs it with interrupts off and the runqueue locked. */
static noinline void irqburn_sched_out(struct preempt_notifier *pn, struct task_struct *next)
{
	struct irqburn_sched *x = container_of(pn, struct irqburn_sched, notifier);

	if (!x->armed)
		return;
	x->armed = false;
	x->held = irqburn_hold(x->ns, &x->start_ns);
	x->next_pid = task_pid_nr(next);
	memcpy(x->next_comm, next->comm, TASK_COMM_LEN);
	x->next_comm[TASK_COMM_LEN - 1] = '\0';
}

static struct preempt_ops irqburn_preempt_ops = {
	.sched_in = irqburn_sched_in,
	.sched_out = irqburn_sched_out,
};

static int irqburn_schedule(u64 usec, char *report, size_t len)
{
	struct irqburn_sched x = { .ns = usec * NSEC_PER_USEC };
	int cpu;

	preempt_notifier_inc();
	preempt_notifier_init(&x.notifier, &irqburn_preempt_ops);
	/* Just after a tick, as the other sections (run_command). */
	schedule_timeout_uninterruptible(1);
	preempt_disable();
	cpu = raw_smp_processor_id();
	preempt_notifier_register(&x.notifier);
	x.armed = true;
	preempt_enable();
	/* Goes to sleep: the first switch out is this one (a preemption before it would do too). */
	schedule_timeout_uninterruptible(1);
	preempt_disable();
	preempt_notifier_unregister(&x.notifier);
	preempt_enable();
	preempt_notifier_dec();
	if (x.armed)
		return -EAGAIN;
	scnprintf(report, len,
		  "op=sched cpu=%d pid=%d tgid=%d comm=%s start_ns=%llu duration_ns=%llu next_pid=%d next_comm=%s\n",
		  cpu, task_pid_nr(current), task_tgid_nr(current), current->comm, x.start_ns,
		  x.held, x.next_pid, x.next_comm);
	return 0;
}
#else
static int irqburn_schedule(u64 usec, char *report, size_t len)
{
	return -EOPNOTSUPP;
}
#endif

#ifdef CONFIG_X86
/*
 * A section the steal clock says the host took: held with interrupts off,
 * then written to this CPU's struct kvm_steal_time the way KVM writes it
 * (version odd while it changes).
 */
static noinline u64 irqburn_stolen(u64 ns, struct kvm_steal_time *st, bool lock, u64 *start_ns)
{
	unsigned long flags;
	u64 held;

	if (lock)
		spin_lock_irqsave(&irqburn_lock, flags);
	else
		local_irq_save(flags);
	held = irqburn_hold(ns, start_ns);
	WRITE_ONCE(st->version, st->version + 1);
	/* The odd version before the value, as the host's. */
	smp_wmb();
	WRITE_ONCE(st->steal, st->steal + held);
	/* The value before the even version. */
	smp_wmb();
	WRITE_ONCE(st->version, st->version + 1);
	if (lock)
		spin_unlock_irqrestore(&irqburn_lock, flags);
	else
		local_irq_restore(flags);
	return held;
}

static int irqburn_steal(u64 usec, unsigned long offset, bool lock, char *report, size_t len)
{
	struct kvm_steal_time *st;
	u64 start_ns = 0, held, msr;
	u32 version;
	int cpu;

	/*
	 * Only where no host writes the steal clock (TCG): on a KVM guest that
	 * registered one this would race the host's own writes to it.
	 */
	if (!rdmsrl_safe(MSR_KVM_STEAL_TIME, &msr) && (msr & KVM_MSR_ENABLED))
		return -EBUSY;
	/* Just after a tick, as the other sections (run_command). */
	schedule_timeout_uninterruptible(1);
	migrate_disable();
	cpu = raw_smp_processor_id();
	st = raw_cpu_ptr((struct kvm_steal_time __percpu *)offset);
	if (!offset || !IS_ALIGNED(offset, sizeof(u64)) ||
	    copy_from_kernel_nofault(&version, &st->version, sizeof(version))) {
		migrate_enable();
		return -EINVAL;
	}
	held = irqburn_stolen(usec * NSEC_PER_USEC, st, lock, &start_ns);
	migrate_enable();
	scnprintf(report, len,
		  "op=steal cpu=%d pid=%d tgid=%d comm=%s start_ns=%llu duration_ns=%llu steal_ns=%llu\n",
		  cpu, task_pid_nr(current), task_tgid_nr(current), current->comm, start_ns, held,
		  READ_ONCE(st->steal));
	return 0;
}
#else
static int irqburn_steal(u64 usec, unsigned long offset, bool lock, char *report, size_t len)
{
	return -EOPNOTSUPP;
}
#endif

/* Runs current on cpu for the duration of a command; returns the previous mask. */
static int pin_to_cpu(int cpu, cpumask_var_t saved)
{
	int ret;

	if (cpu < 0)
		return 0;
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	cpumask_copy(saved, current->cpus_ptr);
	ret = set_cpus_allowed_ptr(current, cpumask_of(cpu));
	return ret;
}

/* The opener an op names, or -1. */
static int section_opener(const char *op)
{
	static const char * const ops[] = {
		[IRQBURN_IRQSAVE] = "irqoff",
		[IRQBURN_BH] = "bhoff",
		[IRQBURN_LOCK] = "lock",
		[IRQBURN_LOCK_IRQ] = "lockirq",
		[IRQBURN_LOCK_INLINE] = "lockinline",
	};

	return match_string(ops, ARRAY_SIZE(ops), op);
}

static int run_command(struct selftest_file *f, const char *cmd)
{
	char op[16];
	unsigned long long a = 0, b = 0, c = 0, d = 0;
	cpumask_var_t saved;
	int n, ret = 0, cpu = -1;
	u64 start = 0, outer = 0, held;
	bool witness, pinned = false;
	size_t len;
	s64 late;

	n = sscanf(cmd, "%15s %llu %llu %llu %llu", op, &a, &b, &c, &d);
	if (n < 2)
		return -EINVAL;
	if (!alloc_cpumask_var(&saved, GFP_KERNEL))
		return -ENOMEM;

	if (section_opener(op) >= 0) {
		enum irqburn_opener how = section_opener(op);

		if (a == 0 || a > MAX_HOLD_USEC) {
			ret = -ERANGE;
			goto out;
		}
		if (n >= 3)
			cpu = b;
		ret = pin_to_cpu(cpu, saved);
		if (ret)
			goto out;
		pinned = cpu >= 0;
		/*
		 * Start just after a tick, so none falls due inside sections
		 * shorter than a tick. Under emulation a pending interrupt
		 * makes QEMU leave every translated block to check it, which
		 * would slow the tracer's probe path for reasons of its own.
		 */
		schedule_timeout_uninterruptible(1);
		/* No migration between the report's cpu and the section's. */
		migrate_disable();
		cpu = raw_smp_processor_id();
		witness = n >= 4 && c;
		late = irqburn_section(how, witness, a * NSEC_PER_USEC, &held, &start, &outer);
		migrate_enable();
		len = scnprintf(f->report, REPORT_LEN,
				"op=%s cpu=%d pid=%d tgid=%d comm=%s start_ns=%llu duration_ns=%llu outer_ns=%llu",
				op, cpu, task_pid_nr(current), task_tgid_nr(current),
				current->comm, start, held, outer);
		if (witness)
			len += scnprintf(f->report + len, REPORT_LEN - len, " timer_late_ns=%lld",
					 late);
		len += scnprintf(f->report + len, REPORT_LEN - len, "\n");
		f->report_len = len;
	} else if (!strcmp(op, "steal")) {
		if (n < 3 || a == 0 || a > MAX_HOLD_USEC) {
			ret = -ERANGE;
			goto out;
		}
		if (n >= 4)
			cpu = c;
		ret = pin_to_cpu(cpu, saved);
		if (ret)
			goto out;
		pinned = cpu >= 0;
		ret = irqburn_steal(a, b, n >= 5 && d, f->report, REPORT_LEN);
		f->report_len = ret ? 0 : strlen(f->report);
	} else if (!strcmp(op, "sched")) {
		if (a == 0 || a > MAX_HOLD_USEC) {
			ret = -ERANGE;
			goto out;
		}
		if (n >= 3)
			cpu = b;
		ret = pin_to_cpu(cpu, saved);
		if (ret)
			goto out;
		pinned = cpu >= 0;
		ret = irqburn_schedule(a, f->report, REPORT_LEN);
		f->report_len = ret ? 0 : strlen(f->report);
	} else if (!strcmp(op, "irqline")) {
		unsigned int nest = n >= 4 ? c : 1;

		if (n < 3 || b == 0 || b > MAX_HOLD_USEC || nest == 0 || nest > MAX_NEST) {
			ret = -ERANGE;
			goto out;
		}
		ret = irqburn_mask_line(a, b, nest, f->report, REPORT_LEN);
		f->report_len = ret ? 0 : strlen(f->report);
	} else if (!strcmp(op, "hardirq") || !strcmp(op, "softirq")) {
		if (n < 3 || a == 0 || a > MAX_HOLD_USEC) {
			ret = -ERANGE;
			goto out;
		}
		/* The tail is a hard timer's: a soft one runs in the HRTIMER softirq. */
		if (n == 4 && (c > 1 || op[0] == 's')) {
			ret = -EINVAL;
			goto out;
		}
		ret = irqburn_in_interrupt(op[0] == 's', a, b, c, f->report, REPORT_LEN);
		f->report_len = ret ? 0 : strlen(f->report);
	} else if (!strcmp(op, "ipi") || !strcmp(op, "irqwork")) {
		if (n != 3 || a == 0 || a > MAX_HOLD_USEC) {
			ret = -ERANGE;
			goto out;
		}
		ret = irqburn_in_vector(op[1] == 'p', a, b, f->report, REPORT_LEN);
		f->report_len = ret ? 0 : strlen(f->report);
	} else if (!strcmp(op, "bench") || !strcmp(op, "benchlock")) {
		bool lock = op[5] == 'l';

		if (a == 0 || a > MAX_BENCH_PAIRS) {
			ret = -ERANGE;
			goto out;
		}
		migrate_disable();
		cpu = raw_smp_processor_id();
		held = lock ? irqburn_bench_lock(a) : irqburn_bench(a);
		migrate_enable();
		f->report_len = scnprintf(f->report, REPORT_LEN,
					  "op=%s cpu=%d pid=%d comm=%s pairs=%llu start_ns=0 duration_ns=%llu\n",
					  op, cpu, task_pid_nr(current), current->comm, a, held);
	} else {
		ret = -EINVAL;
	}
out:
	/* The writer's own CPUs back, once the command is done. */
	if (pinned)
		set_cpus_allowed_ptr(current, saved);
	free_cpumask_var(saved);
	return ret;
}

static ssize_t selftest_write(struct file *file, const char __user *buf,
			      size_t count, loff_t *ppos)
{
	struct selftest_file *f = file->private_data;
	char cmd[CMD_LEN];
	int ret;

	if (count == 0 || count >= CMD_LEN)
		return -EINVAL;
	if (copy_from_user(cmd, buf, count))
		return -EFAULT;
	cmd[count] = '\0';

	mutex_lock(&f->lock);
	f->report_len = 0;
	f->read_pos = 0;
	ret = run_command(f, cmd);
	mutex_unlock(&f->lock);
	return ret ? ret : count;
}

static ssize_t selftest_read(struct file *file, char __user *buf, size_t count,
			     loff_t *ppos)
{
	struct selftest_file *f = file->private_data;
	ssize_t ret;

	/* The last report, from its start after each command, then EOF. */
	mutex_lock(&f->lock);
	ret = simple_read_from_buffer(buf, count, &f->read_pos, f->report, f->report_len);
	mutex_unlock(&f->lock);
	return ret;
}

static int selftest_open(struct inode *inode, struct file *file)
{
	struct selftest_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	file->private_data = f;
	return nonseekable_open(inode, file);
}

static int selftest_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static const struct file_operations selftest_fops = {
	.owner		= THIS_MODULE,
	.open		= selftest_open,
	.release	= selftest_release,
	.read		= selftest_read,
	.write		= selftest_write,
	.llseek		= no_llseek,
};

static struct miscdevice selftest_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "irqtrace_selftest",
	.fops	= &selftest_fops,
	.mode	= 0600,
};

/*
 * The same commands through /proc/irqtrace_selftest (root's, mode 0600): a
 * container sees the host's procfs entries but has no such device in its /dev
 * (nor may open one unless privileged), and the tests want an ordinary pod, root
 * without capabilities, to be the task that holds the section. Off unless asked
 * for at load.
 */
static bool proc_trigger;
module_param(proc_trigger, bool, 0444);
MODULE_PARM_DESC(proc_trigger, "also take commands at /proc/irqtrace_selftest (for unprivileged containers)");

static const struct proc_ops selftest_proc_ops = {
	.proc_open	= selftest_open,
	.proc_release	= selftest_release,
	.proc_read	= selftest_read,
	.proc_write	= selftest_write,
	.proc_lseek	= no_llseek,
};

static struct proc_dir_entry *selftest_proc;

static int __init irqtrace_selftest_init(void)
{
	int ret = misc_register(&selftest_dev);

	if (ret || !proc_trigger)
		return ret;
	selftest_proc = proc_create("irqtrace_selftest", 0600, NULL, &selftest_proc_ops);
	if (!selftest_proc) {
		misc_deregister(&selftest_dev);
		return -ENOMEM;
	}
	return 0;
}

static void __exit irqtrace_selftest_exit(void)
{
	/* Waits for commands in progress; open files are released. */
	proc_remove(selftest_proc);
	misc_deregister(&selftest_dev);
}

module_init(irqtrace_selftest_init);
module_exit(irqtrace_selftest_exit);
MODULE_DESCRIPTION("irqtrace ground truth: sections of known length from a known task");
MODULE_LICENSE("GPL");
