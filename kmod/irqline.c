// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: one IRQ line masked, from disable_irq() to enable_irq().
 *
 * ftrace callbacks on the entries of disable_irq, disable_irq_nosync and
 * disable_hardirq (which each take the line's depth up by one) and enable_irq
 * (down by one). An ftrace_ops filtered to those functions is the cheapest
 * entry hook there is: a call from the function's patched fentry site,
 * without a kprobe's dispatch on top.
 *
 * The module keeps its own depth per IRQ: a section starts at 0 -> 1, with
 * the disabling task and stack captured then, and ends at 1 -> 0, wherever
 * that happens: drivers often re-enable a line from a work item or a thread
 * on another CPU. An enable_irq at depth 0 (a line masked before tracing
 * began, or an unbalanced call the kernel warns about) is ignored. The
 * per-CPU variants (disable_percpu_irq) are not traced: they mask one CPU's
 * copy of a per-CPU interrupt, a different thing.
 *
 * Time is ktime_get_mono_fast_ns(): start and end may be on different CPUs.
 *
 * The first argument (the IRQ) is read from the ftrace_regs, which on x86-64
 * with DYNAMIC_FTRACE_WITH_ARGS hold the argument registers without asking
 * for the full, slower, register save.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/irqnr.h>
#include <linux/ftrace.h>
#include <linux/ptrace.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/stacktrace.h>
#include <linux/string.h>
#include <linux/timekeeping.h>

#include "internal.h"

struct irqline_state {
	raw_spinlock_t lock;
	unsigned int depth;
	u64 start_ns;
	pid_t pid;
	pid_t tgid;
	u64 cgroup_id;
	u16 cpu;
	char comm[IRQTRACE_COMM_LEN];
	/* where the disabling call was made: a handler, a softirq or the task */
	struct irqtrace_where where;
	unsigned long disable_ip;
	unsigned long disable_parent_ip;
	unsigned int nr_frames;
	unsigned long frames[IRQTRACE_MAX_FRAMES];
	struct irqtrace_hist_data hist;
};

static struct irqline_state *lines;
static unsigned int nr_lines;
static unsigned long *targets;
static bool running;

static void line_disabled(unsigned int irq, unsigned long site)
{
	struct irqline_state *st;
	unsigned long flags, *frames;
	unsigned int nr, skip;

	if (irq >= nr_lines || !test_bit(irq, targets))
		return;
	st = &lines[irq];
	raw_spin_lock_irqsave(&st->lock, flags);
	if (st->depth++ == 0) {
		st->start_ns = ktime_get_mono_fast_ns();
		st->pid = task_pid_nr(current);
		st->tgid = task_tgid_nr(current);
		memcpy(st->comm, current->comm, IRQTRACE_COMM_LEN);
		st->comm[IRQTRACE_COMM_LEN - 1] = '\0';
		st->cgroup_id = irqtrace_task_cgroup_id(current);
		st->cpu = raw_smp_processor_id();
		irqtrace_context_now(this_cpu_ptr(irqtrace_pcpu), &st->where);
		st->disable_ip = site;
		st->disable_parent_ip = 0;
		st->nr_frames = 0;
		if (READ_ONCE(irqtrace_stacks)) {
			frames = st->frames;
			nr = stack_trace_save(frames, IRQTRACE_MAX_FRAMES, 0);
			for (skip = 0; skip < nr && frames[skip] != st->disable_ip; skip++)
				;
			if (skip == nr)
				skip = 0;
			nr -= skip;
			memmove(frames, frames + skip, nr * sizeof(*frames));
			st->nr_frames = nr;
			if (nr > 1)
				st->disable_parent_ip = frames[1];
		}
	}
	raw_spin_unlock_irqrestore(&st->lock, flags);
}

static void line_enabled(unsigned int irq, unsigned long site)
{
	struct irqtrace_cpu *c;
	struct irqline_state *st;
	struct irqtrace_section s;
	unsigned long flags;
	u64 now, delta;

	if (irq >= nr_lines || !test_bit(irq, targets))
		return;
	st = &lines[irq];
	raw_spin_lock_irqsave(&st->lock, flags);
	if (st->depth == 0 || --st->depth > 0)
		goto out;

	now = ktime_get_mono_fast_ns();
	delta = now - st->start_ns;
	c = this_cpu_ptr(irqtrace_pcpu);
	irqtrace_hist_add(&st->hist, delta);
	if (delta < READ_ONCE(irqtrace_threshold_ns))
		goto out;

	s = (struct irqtrace_section) {
		.kind = IRQTRACE_KIND_IRQ_LINE,
		.method = IRQTRACE_METHOD_EXACT,
		/* Timed by its disable_irq and enable_irq calls: no edge of irqs off. */
		.flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT,
		.cpu = st->cpu,
		.enable_cpu = raw_smp_processor_id(),
		.irq = irq,
		.start_ns = st->start_ns,
		.duration_ns = delta,
		.where = st->where,
		.pid = st->pid,
		.tgid = st->tgid,
		.comm = st->comm,
		.cgroup_id = st->cgroup_id,
		.enable_task = current,
		.disable_ip = st->disable_ip,
		.disable_parent_ip = st->disable_parent_ip,
		.enable_ip = site,
		.frames = st->frames,
		.nr_frames = st->nr_frames,
	};
	irqtrace_emit(c, &s);
out:
	raw_spin_unlock_irqrestore(&st->lock, flags);
}

#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
#define IRQLINE_OPS_FLAGS	0
#else
#define IRQLINE_OPS_FLAGS	FTRACE_OPS_FL_SAVE_REGS
#endif

/* The hooked function's first argument: the IRQ number. */
static __always_inline unsigned int irq_argument(struct ftrace_regs *fregs)
{
	return regs_get_kernel_argument(&fregs->regs, 0);
}

/* parent_ip is the return address into the caller: the site. */
static void notrace on_disable(unsigned long ip, unsigned long parent_ip,
			       struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	line_disabled(irq_argument(fregs), parent_ip);
}

static void notrace on_enable(unsigned long ip, unsigned long parent_ip,
			      struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	line_enabled(irq_argument(fregs), parent_ip);
}

static struct ftrace_ops disable_ops = { .func = on_disable, .flags = IRQLINE_OPS_FLAGS };
static struct ftrace_ops enable_ops = { .func = on_enable, .flags = IRQLINE_OPS_FLAGS };
static bool filters_set;

/* Each ops hooks only its functions; disable_hardirq may be missing. */
static int set_filters(void)
{
	static const char * const disablers[] = { "disable_irq", "disable_irq_nosync", "disable_hardirq" };
	unsigned int i;
	int ret;

	if (filters_set)
		return 0;
	for (i = 0; i < ARRAY_SIZE(disablers); i++) {
		ret = ftrace_set_filter(&disable_ops, (unsigned char *)disablers[i],
					strlen(disablers[i]), 0);
		if (ret && i < 2)
			goto fail;
	}
	ret = ftrace_set_filter(&enable_ops, (unsigned char *)"enable_irq", strlen("enable_irq"), 0);
	if (ret)
		goto fail;
	filters_set = true;
	return 0;
fail:
	/*
	 * Emptied, not freed: ftrace_free_filter() leaves the freed hashes in
	 * the ops, which the next try would use (irqtrace_irqline_exit frees).
	 */
	ftrace_set_filter(&disable_ops, NULL, 0, 1);
	ftrace_set_filter(&enable_ops, NULL, 0, 1);
	return ret;
}

int irqtrace_irqline_init(void)
{
	unsigned int i;

	nr_lines = nr_irqs;
	lines = kvcalloc(nr_lines, sizeof(*lines), GFP_KERNEL);
	targets = bitmap_zalloc(nr_lines, GFP_KERNEL);
	if (!lines || !targets) {
		kvfree(lines);
		bitmap_free(targets);
		return -ENOMEM;
	}
	for (i = 0; i < nr_lines; i++)
		raw_spin_lock_init(&lines[i].lock);
	return 0;
}

void irqtrace_irqline_exit(void)
{
	/* Freed even if only emptied by a failed set_filters(). */
	ftrace_free_filter(&disable_ops);
	ftrace_free_filter(&enable_ops);
	filters_set = false;
	kvfree(lines);
	bitmap_free(targets);
	lines = NULL;
	targets = NULL;
}

/* "all", "none" or a list like "4,11"; with apply false, only validates. */
int irqtrace_irqline_set_targets(const char *list, bool apply)
{
	char *copy, *cursor, *item;
	unsigned long *want;
	unsigned int irq;
	int ret = 0;

	want = bitmap_zalloc(nr_irqs, GFP_KERNEL);
	copy = kstrdup(list, GFP_KERNEL);
	if (!want || !copy) {
		ret = -ENOMEM;
		goto out;
	}
	cursor = strim(copy);
	if (!strcmp(cursor, "all")) {
		bitmap_fill(want, nr_irqs);
	} else if (strcmp(cursor, "none") && *cursor) {
		while ((item = strsep(&cursor, ",")) != NULL) {
			if (kstrtouint(strim(item), 0, &irq) || irq >= nr_irqs) {
				pr_warn("irqs=%.*s refused: '%s' is not an IRQ number of this machine (0..%u), expected all, none or a list like 4,11\n",
					(int)strcspn(list, "\n"), list, item, nr_irqs - 1);
				ret = -EINVAL;
				goto out;
			}
			__set_bit(irq, want);
		}
	}
	if (apply)
		bitmap_copy(targets, want, nr_lines);
out:
	kfree(copy);
	bitmap_free(want);
	return ret;
}

bool irqtrace_irqline_running(void)
{
	return running;
}

/* Whether start would watch any line: the context probes must then run on every CPU. */
bool irqtrace_irqline_wanted(void)
{
	return !bitmap_empty(targets, nr_lines);
}

int irqtrace_irqline_start(void)
{
	unsigned long flags;
	unsigned int i;
	int ret;

	if (!irqtrace_irqline_wanted())
		return 0;
	/* Transitions were missed while stopped: start from depth 0 everywhere. */
	for (i = 0; i < nr_lines; i++) {
		raw_spin_lock_irqsave(&lines[i].lock, flags);
		lines[i].depth = 0;
		raw_spin_unlock_irqrestore(&lines[i].lock, flags);
	}
	ret = set_filters();
	if (ret)
		return ret == -EINVAL ? -EOPNOTSUPP : ret;
	/* Enables first: one seen at depth 0 is ignored, a lost one would stick. */
	ret = register_ftrace_function(&enable_ops);
	if (ret)
		return ret;
	ret = register_ftrace_function(&disable_ops);
	if (ret) {
		unregister_ftrace_function(&enable_ops);
		return ret;
	}
	running = true;
	return 0;
}

void irqtrace_irqline_stop(void)
{
	if (!running)
		return;
	/* Waits until no callback runs (ftrace's RCU-tasks grace periods). */
	unregister_ftrace_function(&disable_ops);
	unregister_ftrace_function(&enable_ops);
	running = false;
}

void irqtrace_irqline_clear_hist(void)
{
	unsigned long flags;
	unsigned int i;

	for (i = 0; i < nr_lines; i++) {
		raw_spin_lock_irqsave(&lines[i].lock, flags);
		memset(&lines[i].hist, 0, sizeof(lines[i].hist));
		raw_spin_unlock_irqrestore(&lines[i].lock, flags);
	}
}

unsigned int irqtrace_irqline_nr_hist(void)
{
	return nr_lines;
}

/* Copies line index's histogram to out if it counted anything. */
bool irqtrace_irqline_hist(unsigned int index, struct irqtrace_hist *out)
{
	struct irqline_state *st;
	unsigned long flags;
	bool any;

	if (index >= nr_lines)
		return false;
	st = &lines[index];
	raw_spin_lock_irqsave(&st->lock, flags);
	out->count = irqtrace_hist_count(&st->hist);
	any = out->count > 0;
	if (any) {
		out->cpu = 0;
		out->irq = index;
		out->sum_ns = st->hist.sum_ns;
		out->max_ns = st->hist.max_ns;
		memcpy(out->buckets, st->hist.buckets, sizeof(out->buckets));
	}
	raw_spin_unlock_irqrestore(&st->lock, flags);
	return any;
}
