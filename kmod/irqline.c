// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: one IRQ line masked, from disable_irq() to enable_irq().
 *
 * kprobes on the entries of disable_irq, disable_irq_nosync and
 * disable_hardirq (which each take the line's depth up by one) and enable_irq
 * (down by one). The module keeps its own depth per IRQ: a section starts at
 * 0 -> 1, with the disabling task and stack captured then, and ends at
 * 1 -> 0, wherever that happens: drivers often re-enable a line from a work
 * item or a thread on another CPU. An enable_irq at depth 0 (a line masked
 * before tracing began, or an unbalanced call the kernel warns about) is
 * ignored. The per-CPU variants (disable_percpu_irq) are not traced: they
 * mask one CPU's copy of a per-CPU interrupt, a different thing.
 *
 * Time is ktime_get_mono_fast_ns(): start and end may be on different CPUs.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/irqnr.h>
#include <linux/kprobes.h>
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

static void line_disabled(unsigned int irq, struct pt_regs *regs)
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
		/* At the probed function's entry its return address is on top of the stack. */
		st->disable_ip = regs_get_kernel_stack_nth(regs, 0);
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

static void line_enabled(unsigned int irq, struct pt_regs *regs)
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
		.flags = IRQTRACE_F_SITES_VALID,
		.cpu = st->cpu,
		.enable_cpu = raw_smp_processor_id(),
		.irq = irq,
		.start_ns = st->start_ns,
		.duration_ns = delta,
		.pid = st->pid,
		.tgid = st->tgid,
		.comm = st->comm,
		.cgroup_id = st->cgroup_id,
		.enable_task = current,
		.disable_ip = st->disable_ip,
		.disable_parent_ip = st->disable_parent_ip,
		.enable_ip = regs_get_kernel_stack_nth(regs, 0),
		.frames = st->frames,
		.nr_frames = st->nr_frames,
	};
	irqtrace_emit(c, &s);
out:
	raw_spin_unlock_irqrestore(&st->lock, flags);
}

static int pre_disable(struct kprobe *p, struct pt_regs *regs)
{
	line_disabled(regs_get_kernel_argument(regs, 0), regs);
	return 0;
}
NOKPROBE_SYMBOL(pre_disable);

static int pre_enable(struct kprobe *p, struct pt_regs *regs)
{
	line_enabled(regs_get_kernel_argument(regs, 0), regs);
	return 0;
}
NOKPROBE_SYMBOL(pre_enable);

static struct kprobe probes[] = {
	{ .symbol_name = "disable_irq_nosync", .pre_handler = pre_disable },
	{ .symbol_name = "disable_irq", .pre_handler = pre_disable },
	{ .symbol_name = "disable_hardirq", .pre_handler = pre_disable },
	{ .symbol_name = "enable_irq", .pre_handler = pre_enable },
};

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

int irqtrace_irqline_start(void)
{
	unsigned int i, nr_ok = 0;
	unsigned long flags;

	if (bitmap_empty(targets, nr_lines))
		return 0;
	/* Transitions were missed while stopped: start from depth 0 everywhere. */
	for (i = 0; i < nr_lines; i++) {
		raw_spin_lock_irqsave(&lines[i].lock, flags);
		lines[i].depth = 0;
		raw_spin_unlock_irqrestore(&lines[i].lock, flags);
	}
	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		/* A kprobe is registered once per life: clear what the last one left. */
		probes[i].addr = NULL;
		probes[i].flags = 0;
		if (register_kprobe(&probes[i]) == 0)
			nr_ok++;
		else
			probes[i].addr = NULL;
	}
	/* disable_hardirq may be missing; the other three are the method. */
	if (!probes[0].addr || !probes[1].addr || !probes[3].addr) {
		for (i = 0; i < ARRAY_SIZE(probes); i++)
			if (probes[i].addr)
				unregister_kprobe(&probes[i]);
		return -EOPNOTSUPP;
	}
	running = true;
	return 0;
}

void irqtrace_irqline_stop(void)
{
	unsigned int i;

	if (!running)
		return;
	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (probes[i].addr)
			unregister_kprobe(&probes[i]);
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
