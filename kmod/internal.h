/* SPDX-License-Identifier: GPL-2.0 */
/*
 * irqtrace: state shared by the module's parts.
 *
 * main.c      parameters, configuration, start/stop of the methods
 * ring.c      per-CPU record rings and /dev/irqtrace
 * stats.c     histograms, counters, /dev/irqtrace_stats, sysfs summary
 * exact.c     irqs-off, exact: the preemptirq tracepoints
 * sampled.c   irqs-off and softirqs-off, sampled: per-CPU hrtimers
 * irqline.c   one IRQ line masked: ftrace callbacks on disable_irq/enable_irq
 * context.c   the interrupt context a section ran in: irq, softirq, hrtimer
 *             and x86 irq_vectors tracepoints (include/irqtrace_context.h decides from them, as
 *             the eBPF programs do)
 * hybrid.c    irqs-off on stock kernels: ftrace callbacks on the irq-saving lock
 *             functions, interrupt handlers (from context.c) and the sampler's late
 *             interrupt, each end exact where hooked
 */
#ifndef _IRQTRACE_INTERNAL_H
#define _IRQTRACE_INTERNAL_H

#include <linux/cpumask.h>
#include <linux/hrtimer.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/types.h>

#include "include/irqtrace_context.h"
#include "include/uapi/irqtrace.h"

#define IRQTRACE_SLOT_SIZE	IRQTRACE_RECORD_MAX_SIZE

/* Which per-CPU histogram. */
enum irqtrace_hist_id {
	IRQTRACE_HIST_IRQS_OFF,
	IRQTRACE_HIST_SOFTIRQS_OFF,
	IRQTRACE_HIST_NR,
};

/* No count: it is the sum of the buckets, one increment less per section. */
struct irqtrace_hist_data {
	u64 sum_ns;
	u64 max_ns;
	u64 buckets[IRQTRACE_HIST_BUCKETS];
};

/* seen is not kept: it is the count of the CPU's histograms. */
struct irqtrace_counter_data {
	u64 recorded;
	u64 dropped_ring;
	u64 dropped_guard;
	u64 idle_excluded;
	u64 nmi_skipped;
	u64 samples;
};

/* sampled.c's two timers: the hard one (irqs off), the soft one (softirqs off). */
enum irqtrace_sampler {
	IRQTRACE_SAMPLER_HARD,
	IRQTRACE_SAMPLER_SOFT,
	IRQTRACE_SAMPLERS,
};

/*
 * Single-producer (this CPU, with interrupts off) single-consumer (the
 * reader, under a mutex) ring of fixed-size slots. head and tail only grow;
 * slot = index & mask.
 */
struct irqtrace_ring {
	u8 *slots;
	unsigned long head;
	unsigned long tail;
	u64 seq;
};

/*
 * hybrid.c: the last outermost interrupt, its handler done but the end of its
 * section not seen yet (interrupts come back on in irq_exit's softirqs or on
 * the return, after the exit tracepoint); start == 0 when none.
 */
struct irqtrace_intr_done {
	u64 start;		/* local_clock() at the entry */
	u64 exit;		/* at the exit tracepoint: the end if nothing says later */
	u64 self;		/* the sampler's own callback time in it */
	u64 own_after_exit;	/* this module's own time at the exit, after it */
	u64 gen;		/* irq_gen at the exit */
	struct task_struct *task;	/* the interrupted task: ended before it switches out */
	struct irqtrace_where where;
	/* irq_exit will run softirqs, with this preempt_count() */
	bool softirqs_next;
	unsigned int softirq_count;
	/*
	 * The stack at the exit, if the section had reached the threshold by
	 * then: the record is written later, from elsewhere.
	 */
	unsigned int nr_frames;
	unsigned long frames[IRQTRACE_MAX_FRAMES];
};

/*
 * hybrid.c: a section an irq-saving lock function opened, or the scheduler's
 * (__schedule() to the next task's finish_task_switch()); ts == 0 when none.
 */
struct irqtrace_lock_open {
	u64 ts;			/* local_clock() at the call */
	u64 gen;		/* irq_gen then: an interrupt or schedule since says it ended */
	struct task_struct *task;
	unsigned long ip;	/* the hooked function's caller */
	unsigned long lock;	/* the lock, 0 for the scheduler's */
	struct irqtrace_where where;
};

struct irqtrace_cpu {
	/* exact: the open irqs-off section, off_ts == 0 when none */
	u64 off_ts;
	unsigned long off_ip;
	unsigned long off_parent_ip;
	struct task_struct *off_task;
	/* exact: the open section's context: where it began, or its longest handler */
	struct irqtrace_where off_where;
	u64 off_where_ns;
	/* context.c: the hard handler, the x86 system vector and the softirq running now */
	struct irqtrace_handler hard_now;
	struct irqtrace_handler vec_now;
	struct irqtrace_handler soft_now;
	/* a hard handler ran inside vec_now: the vector is not a handler of its own */
	bool vec_inner;
	/*
	 * sampled: the longest of each done since a sampler's last sample, one
	 * per sampler (enum irqtrace_sampler). Not the last one done: a short
	 * timer (the tick) that ran after a long one and before the late sample
	 * would take the sample's section for itself.
	 */
	struct irqtrace_handler hard_held[IRQTRACE_SAMPLERS];
	struct irqtrace_handler soft_held[IRQTRACE_SAMPLERS];
	/* hybrid.c */
	struct irqtrace_lock_open lock_open;
	struct irqtrace_lock_open sched_open;
	/*
	 * outermost interrupts entered, and __schedule() calls (hooked): each
	 * says interrupts were on, or tasks may have switched
	 */
	u64 irq_gen;
	/* the outermost interrupt's entry (local_clock()), 0 when none runs */
	u64 intr_start;
	/* a hard handler (not a vector) entered it: its exit ends it */
	bool hard_opened;
	struct irqtrace_intr_done intr_done;
	/* in it: the sampler's own callback time, and the longest inner handler */
	u64 intr_self;
	struct irqtrace_where intr_where;
	u64 intr_where_ns;
	/* the last sections hooks measured, hooked_next the slot for the next */
	struct irqtrace_hooked hooked[IRQTRACE_HOOKED_RECENT];
	unsigned int hooked_next;
	/*
	 * the steal clock at the hard sampler's last sample, and the offset it
	 * was read at, once one was read (irqtrace_steal_mark())
	 */
	u64 steal_at_sample;
	unsigned long steal_offset;
	bool steal_known;
	/* > 0 while a probe runs on this CPU: stops recursion */
	int in_probe;
	/* This CPU is in the cpus parameter: read on every transition. */
	bool wanted;
	struct hrtimer hard_timer;
	struct hrtimer soft_timer;
	struct irqtrace_hist_data hist[IRQTRACE_HIST_NR];
	struct irqtrace_counter_data counters;
	struct irqtrace_ring ring;
};

/* Allocated at load (alloc_percpu): too big for the modules' static per-CPU area. */
extern struct irqtrace_cpu __percpu *irqtrace_pcpu;

/* Configuration read by the probes; written under irqtrace_config_lock. */
extern u64 irqtrace_threshold_ns __read_mostly;
extern u64 irqtrace_period_ns __read_mostly;
extern u64 irqtrace_floor_ns __read_mostly;
extern bool irqtrace_stacks __read_mostly;
extern bool irqtrace_count_idle __read_mostly;
extern struct cpumask irqtrace_cpus __read_mostly;
extern unsigned int irqtrace_ring_records __read_mostly;

static __always_inline bool irqtrace_cpu_wanted(int cpu)
{
	return cpumask_test_cpu(cpu, &irqtrace_cpus);
}

/* A section that ended, described for irqtrace_emit(). */
struct irqtrace_section {
	u8 kind;
	u8 method;
	u8 flags;
	/* enum irqtrace_edge: what timed each end */
	u8 start_by;
	u8 end_by;
	u16 cpu;
	u32 enable_cpu;
	u32 irq;
	u64 start_ns;
	u64 duration_ns;
	u64 error_ns;
	/* the lock whose irq-saving call opened it (IRQTRACE_EDGE_LOCK), else 0 */
	unsigned long lock;
	struct irqtrace_where where;
	struct task_struct *task;
	unsigned long disable_ip;
	unsigned long disable_parent_ip;
	unsigned long enable_ip;
	unsigned long enable_parent_ip;
	/* Frames already captured (irq-line); NULL: capture here. */
	const unsigned long *frames;
	unsigned int nr_frames;
	/* With frames == NULL: drop captured frames up to this address. */
	unsigned long trim_to_ip;
	/* Enabling task for irq-line, else NULL. */
	struct task_struct *enable_task;
	/* irq-line: disabling task, captured at the start. */
	pid_t pid;
	pid_t tgid;
	const char *comm;
	u64 cgroup_id;
};

/* ring.c */
int irqtrace_ring_init(void);
void irqtrace_ring_exit(void);
void irqtrace_emit(struct irqtrace_cpu *c, const struct irqtrace_section *s);
unsigned int irqtrace_stack_save(unsigned long *frames, unsigned long trim_to_ip);
void irqtrace_reader_kick(void);
u64 irqtrace_task_cgroup_id(struct task_struct *task);

/* stats.c */
int irqtrace_stats_init(void);
void irqtrace_stats_exit(void);
void irqtrace_stats_clear(void);

static __always_inline void irqtrace_hist_add(struct irqtrace_hist_data *h, u64 ns)
{
	unsigned int bucket = ns ? fls64(ns) - 1 : 0;

	h->buckets[bucket]++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

static inline u64 irqtrace_hist_count(const struct irqtrace_hist_data *h)
{
	u64 n = 0;
	int i;

	for (i = 0; i < IRQTRACE_HIST_BUCKETS; i++)
		n += READ_ONCE(h->buckets[i]);
	return n;
}

void irqtrace_update_wanted(void);

/* exact.c */
bool irqtrace_exact_available(void);
int irqtrace_exact_start(void);
void irqtrace_exact_stop(void);

/* sampled.c */
int irqtrace_sampled_start(bool irqs_off, bool softirqs_off);
void irqtrace_sampled_stop(void);

/* irqline.c */
int irqtrace_irqline_init(void);
void irqtrace_irqline_exit(void);
int irqtrace_irqline_start(void);
void irqtrace_irqline_stop(void);
int irqtrace_irqline_set_targets(const char *list, bool apply);
void irqtrace_irqline_show_targets(char *buf, size_t len);
bool irqtrace_irqline_running(void);
bool irqtrace_irqline_wanted(void);
void irqtrace_irqline_clear_hist(void);
unsigned int irqtrace_irqline_nr_hist(void);
bool irqtrace_irqline_hist(unsigned int index, struct irqtrace_hist *out);

/* steal.c */
bool irqtrace_steal_clock(u64 *steal, unsigned long *offset);
u64 irqtrace_steal_mark(struct irqtrace_cpu *c);
u64 irqtrace_steal_since_mark(struct irqtrace_cpu *c);

/* hybrid.c */
extern bool irqtrace_hybrid_running __read_mostly;

/* The section a late hard sample saw, in local_clock() (hybrid). */
struct irqtrace_hybrid_sample {
	u64 start;
	u64 end;
	u8 start_by;
	u8 end_by;
	u8 flags;
	/* a lock function (or __schedule()) opened it: its lock, caller and context */
	bool lock_opened;
	unsigned long lock;
	unsigned long disable_ip;
	struct irqtrace_where where;
};

int irqtrace_hybrid_start(void);
void irqtrace_hybrid_stop(void);
void irqtrace_hybrid_exit(void);
int irqtrace_hybrid_show(char *buf, int at);
void irqtrace_hybrid_interrupt_entry(struct irqtrace_cpu *c, u64 now);
void irqtrace_hybrid_interrupt_exit(struct irqtrace_cpu *c, u64 now,
				    const struct irqtrace_where *own);
bool irqtrace_hybrid_sample(struct irqtrace_cpu *c, u64 expiry, u64 now, struct pt_regs *regs,
			    struct irqtrace_hybrid_sample *hs);
void irqtrace_hybrid_sampler_self(struct irqtrace_cpu *c, u64 ns);
void irqtrace_hybrid_timer_due(struct irqtrace_cpu *c, ktime_t expires);
void irqtrace_hybrid_softirq_entry(struct irqtrace_cpu *c, u64 now);

/* context.c */
/* sched_switch, once irqtrace_context_start() looked the tracepoints up; NULL if absent. */
extern struct tracepoint *irqtrace_tp_sched_switch;
int irqtrace_context_start(bool all_cpus);
void irqtrace_context_stop(void);

/* Where code on this CPU runs now (context.c keeps it; irqtrace_context.h decides). */
static __always_inline void irqtrace_context_now(const struct irqtrace_cpu *c,
						 struct irqtrace_where *w)
{
	irqtrace_where_now(&c->hard_now, &c->vec_now, &c->soft_now, w);
}

/* What a sampler's timer interrupted: not the local timer's vector it runs in itself. */
static __always_inline void irqtrace_context_interrupted(const struct irqtrace_cpu *c,
							 struct irqtrace_where *w)
{
	irqtrace_where_now(&c->hard_now, NULL, &c->soft_now, w);
}

/* main.c: what runs now, for the stats summary and the counters */
const char *irqtrace_irqs_off_method(void);
u8 irqtrace_irqs_off_method_id(void);
bool irqtrace_softirqs_running(void);

/* The idle loop itself, not a handler or softirq that ran on an idle CPU. */
static __always_inline bool irqtrace_idle_loop(struct task_struct *t, const struct irqtrace_where *w)
{
	return is_idle_task(t) && w->context == IRQTRACE_CONTEXT_TASK;
}

/*
 * An irqs-off section of delta ns ended, measured by a probe with interrupts
 * off (not the soft sampler's): false if it is the idle loop's own and idle=0
 * (counted as excluded), else it goes in the CPU's histogram if at least
 * floor ns long.
 */
static __always_inline bool irqtrace_irqs_off_count(struct irqtrace_cpu *c, struct task_struct *t,
						    const struct irqtrace_where *w, u64 delta,
						    u64 floor)
{
	if (unlikely(irqtrace_idle_loop(t, w)) && !READ_ONCE(irqtrace_count_idle)) {
		if (delta >= floor)
			c->counters.idle_excluded++;
		return false;
	}
	if (delta >= floor)
		irqtrace_hist_add(&c->hist[IRQTRACE_HIST_IRQS_OFF], delta);
	return true;
}

#endif /* _IRQTRACE_INTERNAL_H */
