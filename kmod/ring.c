// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: per-CPU record rings and /dev/irqtrace.
 *
 * Each CPU has a ring of fixed-size slots, allocated at load. The producer
 * is always the ring's own CPU with interrupts off (probes and timers run
 * that way, or raw-disable them here), so producers never race; the single
 * consumer is the reader of /dev/irqtrace. head and tail are published with
 * release/acquire. A full ring drops the new record and counts it.
 *
 * Producers never wake the reader themselves: a wake-up from inside an
 * irq_enable probe could take scheduler locks the traced code already holds.
 * They queue an irq_work instead, as the kernel's ring buffer does, when a
 * reader sleeps in read() or poll(): it runs in its own interrupt once this
 * CPU takes interrupts again, and wakes the reader there. Nothing polls.
 *
 * A close() of the reader's file (->flush), or "wake" written to
 * /dev/irqtrace_stats, wakes a read() blocked in another thread of the reader,
 * which returns 0: a reader stops without a signal. The kick stays until a
 * read() takes it, so one queued but not yet started returns 0 too: the
 * reader can stop its reads first and close only after (a close first could
 * let a read not yet started run on the descriptor's number reused).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cgroup.h>
#include <linux/fs.h>
#include <linux/irq_work.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/stacktrace.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "internal.h"

static DECLARE_WAIT_QUEUE_HEAD(reader_wait);
static DEFINE_MUTEX(reader_lock);
static atomic_t reader_open = ATOMIC_INIT(0);
static unsigned int reader_next_cpu;
/* Set by a close() of the reader's file: a blocked read() returns 0. */
static bool reader_kicked;

static void reader_wake_fn(struct irq_work *work)
{
	wake_up_interruptible(&reader_wait);
}

static DEFINE_IRQ_WORK(reader_wake, reader_wake_fn);

u64 irqtrace_task_cgroup_id(struct task_struct *task)
{
	u64 id = 0;

#ifdef CONFIG_CGROUPS
	rcu_read_lock();
	id = cgroup_id(task_dfl_cgroup(task));
	rcu_read_unlock();
#endif
	return id;
}

/* Index of addr in frames, or 0 if absent: frames before it are our own. */
static unsigned int frames_trim_point(const unsigned long *frames, unsigned int nr,
				      unsigned long addr)
{
	unsigned int i;

	for (i = 0; addr && i < nr; i++)
		if (frames[i] == addr)
			return i;
	return 0;
}

/*
 * This context's stack into frames (IRQTRACE_MAX_FRAMES), innermost first,
 * without the frames up to trim_to_ip (else irqtrace's own): their number.
 */
unsigned int notrace irqtrace_stack_save(unsigned long *frames, unsigned long trim_to_ip)
{
	unsigned int nr, skip;

	nr = stack_trace_save(frames, IRQTRACE_MAX_FRAMES, 0);
	skip = frames_trim_point(frames, nr, trim_to_ip);
	/* Without a known start, at least drop irqtrace's own frames. */
	if (!skip)
		while (skip < nr && within_module_core(frames[skip], THIS_MODULE))
			skip++;
	if (skip) {
		nr -= skip;
		memmove(frames, frames + skip, nr * sizeof(*frames));
	}
	return nr;
}

/* Called from probes and timers: no sleeping, no allocation, no printk. */
void notrace irqtrace_emit(struct irqtrace_cpu *c, const struct irqtrace_section *s)
{
	struct irqtrace_ring *r = &c->ring;
	struct irqtrace_record *rec;
	struct task_struct *t = s->task;
	unsigned long flags, head, tail;
	unsigned long *frames;
	unsigned int nr = 0;

	BUILD_BUG_ON(sizeof(unsigned long) != sizeof(__u64));

	raw_local_irq_save(flags);
	head = r->head;
	/* Pairs with the reader's release of tail: the slot is free to overwrite. */
	tail = smp_load_acquire(&r->tail);
	if (head - tail >= irqtrace_ring_records) {
		c->counters.dropped_ring++;
		raw_local_irq_restore(flags);
		return;
	}
	rec = (struct irqtrace_record *)(r->slots +
		(head & (irqtrace_ring_records - 1)) * IRQTRACE_SLOT_SIZE);

	rec->hdr.magic = IRQTRACE_MAGIC_RECORD;
	rec->hdr.version = IRQTRACE_ABI_VERSION;
	rec->kind = s->kind;
	rec->method = s->method;
	rec->backend = IRQTRACE_BACKEND_KMOD;
	rec->flags = s->flags;
	rec->cpu = s->cpu;
	rec->irq = s->irq;
	rec->enable_cpu = s->enable_cpu;
	rec->seq = ++r->seq;
	rec->start_ns = s->start_ns;
	rec->duration_ns = s->duration_ns;
	rec->error_ns = s->error_ns;
	if (t) {
		rec->pid = task_pid_nr(t);
		rec->tgid = task_tgid_nr(t);
		/* get_task_comm() takes task_lock: copy racily, as tracepoints do. */
		memcpy(rec->comm, t->comm, IRQTRACE_COMM_LEN);
		rec->comm[IRQTRACE_COMM_LEN - 1] = '\0';
		rec->cgroup_id = is_idle_task(t) ? 0 : irqtrace_task_cgroup_id(t);
	} else {
		rec->pid = s->pid;
		rec->tgid = s->tgid;
		strscpy(rec->comm, s->comm ? s->comm : "", IRQTRACE_COMM_LEN);
		rec->cgroup_id = s->cgroup_id;
	}
	memset(rec->enable_comm, 0, IRQTRACE_COMM_LEN);
	if (s->enable_task) {
		rec->enable_pid = task_pid_nr(s->enable_task);
		rec->enable_tgid = task_tgid_nr(s->enable_task);
		memcpy(rec->enable_comm, s->enable_task->comm, IRQTRACE_COMM_LEN);
		rec->enable_comm[IRQTRACE_COMM_LEN - 1] = '\0';
		rec->flags |= IRQTRACE_F_ENABLER_VALID;
	} else {
		rec->enable_pid = 0;
		rec->enable_tgid = 0;
	}
	rec->disable_ip = s->disable_ip;
	rec->disable_parent_ip = s->disable_parent_ip;
	rec->enable_ip = s->enable_ip;
	rec->enable_parent_ip = s->enable_parent_ip;
	rec->context = s->where.context;
	rec->start_by = s->start_by;
	rec->end_by = s->end_by;
	rec->reserved = 0;
	rec->lock = s->lock;
	rec->context_nr = s->where.nr;
	rec->context_fn = s->where.fn;

	frames = (unsigned long *)rec->frames;
	if (READ_ONCE(irqtrace_stacks)) {
		if (s->frames) {
			nr = min_t(unsigned int, s->nr_frames, IRQTRACE_MAX_FRAMES);
			memcpy(frames, s->frames, nr * sizeof(*frames));
		} else {
			nr = irqtrace_stack_save(frames, s->trim_to_ip);
		}
		if (nr == IRQTRACE_MAX_FRAMES)
			rec->flags |= IRQTRACE_F_STACK_TRUNCATED;
	}
	rec->nr_frames = nr;
	rec->hdr.size = IRQTRACE_RECORD_SIZE(nr);
	c->counters.recorded++;
	/* Publish the record: pairs with the reader's acquire of head. */
	smp_store_release(&r->head, head + 1);
	/*
	 * wq_has_sleeper()'s barrier pairs with the one a waiter passes after
	 * joining the queue and before looking at the rings again: either it
	 * sees this record or this sees it waiting. irq_work_queue() is safe
	 * in any context and does nothing while the work is pending already.
	 */
	if (wq_has_sleeper(&reader_wait))
		irq_work_queue(&reader_wake);
	raw_local_irq_restore(flags);
}

static bool rings_have_records(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct irqtrace_ring *r = &per_cpu_ptr(irqtrace_pcpu, cpu)->ring;

		/* Pairs with the producer's release of head. */
		if (smp_load_acquire(&r->head) != READ_ONCE(r->tail))
			return true;
	}
	return false;
}

/* Copies whole records to buf, round-robin over CPUs; returns bytes or -EFAULT. */
static ssize_t drain(char __user *buf, size_t count)
{
	size_t copied = 0;
	unsigned int n, cpu = reader_next_cpu;

	for (n = 0; n < nr_cpu_ids; n++, cpu = (cpu + 1) % nr_cpu_ids) {
		struct irqtrace_ring *r;
		unsigned long head, tail;

		if (!cpu_possible(cpu))
			continue;
		r = &per_cpu_ptr(irqtrace_pcpu, cpu)->ring;
		/* Pairs with the producer's release: records before head are whole. */
		head = smp_load_acquire(&r->head);
		tail = r->tail;
		while (tail != head) {
			const struct irqtrace_record *rec = (const void *)(r->slots +
				(tail & (irqtrace_ring_records - 1)) * IRQTRACE_SLOT_SIZE);
			size_t size = rec->hdr.size;

			if (copied + size > count) {
				reader_next_cpu = cpu;
				return copied;
			}
			if (copy_to_user(buf + copied, rec, size))
				return copied ? copied : -EFAULT;
			copied += size;
			tail++;
			/* The slot may be reused from here on. */
			smp_store_release(&r->tail, tail);
		}
	}
	reader_next_cpu = cpu;
	return copied;
}

static ssize_t irqtrace_read(struct file *file, char __user *buf, size_t count,
			     loff_t *ppos)
{
	ssize_t ret;

	/* Records are never split: the buffer must hold the largest one. */
	if (count < IRQTRACE_RECORD_MAX_SIZE)
		return -EINVAL;

	for (;;) {
		mutex_lock(&reader_lock);
		ret = drain(buf, count);
		mutex_unlock(&reader_lock);
		if (ret)
			return ret;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(reader_wait,
					       rings_have_records() || READ_ONCE(reader_kicked));
		if (ret)
			return ret;
		/* Closed meanwhile (by another thread): end of file, once. */
		if (!rings_have_records() && xchg(&reader_kicked, false))
			return 0;
	}
}

static __poll_t irqtrace_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &reader_wait, wait);
	return rings_have_records() ? EPOLLIN | EPOLLRDNORM : 0;
}

/* One reader at a time: two would each get part of the stream. */
static int irqtrace_open(struct inode *inode, struct file *file)
{
	if (atomic_cmpxchg(&reader_open, 0, 1))
		return -EBUSY;
	WRITE_ONCE(reader_kicked, false);
	return nonseekable_open(inode, file);
}

void irqtrace_reader_kick(void)
{
	WRITE_ONCE(reader_kicked, true);
	wake_up_interruptible(&reader_wait);
}

static int irqtrace_flush(struct file *file, fl_owner_t id)
{
	irqtrace_reader_kick();
	return 0;
}

static int irqtrace_release(struct inode *inode, struct file *file)
{
	atomic_set(&reader_open, 0);
	return 0;
}

static const struct file_operations irqtrace_fops = {
	.owner		= THIS_MODULE,
	.open		= irqtrace_open,
	.flush		= irqtrace_flush,
	.release	= irqtrace_release,
	.read		= irqtrace_read,
	.poll		= irqtrace_poll,
	.llseek		= no_llseek,
};

static struct miscdevice irqtrace_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "irqtrace",
	.fops	= &irqtrace_fops,
	.mode	= 0600,
};

static void free_rings(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct irqtrace_ring *r = &per_cpu_ptr(irqtrace_pcpu, cpu)->ring;

		kvfree(r->slots);
		r->slots = NULL;
	}
}

int irqtrace_ring_init(void)
{
	size_t bytes = (size_t)irqtrace_ring_records * IRQTRACE_SLOT_SIZE;
	int cpu, ret;

	for_each_possible_cpu(cpu) {
		struct irqtrace_ring *r = &per_cpu_ptr(irqtrace_pcpu, cpu)->ring;

		r->slots = kvzalloc_node(bytes, GFP_KERNEL, cpu_to_node(cpu));
		if (!r->slots) {
			free_rings();
			return -ENOMEM;
		}
	}
	ret = misc_register(&irqtrace_dev);
	if (ret)
		free_rings();
	return ret;
}

void irqtrace_ring_exit(void)
{
	misc_deregister(&irqtrace_dev);
	/* The probes are gone (the methods stopped first): no wake-up is queued after this. */
	irq_work_sync(&reader_wake);
	free_rings();
}
