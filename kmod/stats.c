// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: histograms and counters.
 *
 * /dev/irqtrace_stats: each open takes a snapshot, which read() returns as
 * uapi items: one struct irqtrace_counters per possible CPU, then one struct
 * irqtrace_hist per CPU for irqs-off and for softirqs-off, then one per IRQ
 * line that counted anything. Writing "clear" zeroes them all; writing "wake"
 * makes the reader's read() return 0 (ring.c), for the reader to stop.
 *
 * /sys/class/misc/irqtrace_stats/stats: a summary, as text for people.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/device.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "internal.h"

struct snapshot {
	size_t len;
	u8 data[];
};

static void fill_counters(struct irqtrace_counters *out, int cpu)
{
	const struct irqtrace_counter_data *in = &per_cpu_ptr(irqtrace_pcpu, cpu)->counters;

	memset(out, 0, sizeof(*out));
	out->hdr.magic = IRQTRACE_MAGIC_COUNTERS;
	out->hdr.version = IRQTRACE_ABI_VERSION;
	out->hdr.size = sizeof(*out);
	out->backend = IRQTRACE_BACKEND_KMOD;
	out->irqs_off_method = irqtrace_irqs_off_method_id();
	out->running = (irqtrace_softirqs_running() ? IRQTRACE_RUNNING_SOFTIRQS : 0) |
		       (irqtrace_irqline_running() ? IRQTRACE_RUNNING_IRQ_LINES : 0);
	out->cpu = cpu;
	out->seen = irqtrace_hist_count(&per_cpu_ptr(irqtrace_pcpu, cpu)->hist[IRQTRACE_HIST_IRQS_OFF]) +
		    irqtrace_hist_count(&per_cpu_ptr(irqtrace_pcpu, cpu)->hist[IRQTRACE_HIST_SOFTIRQS_OFF]);
	out->recorded = READ_ONCE(in->recorded);
	out->dropped_ring = READ_ONCE(in->dropped_ring);
	out->dropped_guard = READ_ONCE(in->dropped_guard);
	out->idle_excluded = READ_ONCE(in->idle_excluded);
	out->nmi_skipped = READ_ONCE(in->nmi_skipped);
	out->samples = READ_ONCE(in->samples);
}

static void hist_header(struct irqtrace_hist *out, u8 kind, u8 method)
{
	memset(out, 0, sizeof(*out));
	out->hdr.magic = IRQTRACE_MAGIC_HIST;
	out->hdr.version = IRQTRACE_ABI_VERSION;
	out->hdr.size = sizeof(*out);
	out->kind = kind;
	out->method = method;
	out->backend = IRQTRACE_BACKEND_KMOD;
}

static void fill_cpu_hist(struct irqtrace_hist *out, int cpu, enum irqtrace_hist_id id)
{
	const struct irqtrace_hist_data *in = &per_cpu_ptr(irqtrace_pcpu, cpu)->hist[id];
	u8 method = id == IRQTRACE_HIST_IRQS_OFF ? irqtrace_irqs_off_method_id() : 0;

	hist_header(out, id == IRQTRACE_HIST_IRQS_OFF ? IRQTRACE_KIND_IRQS_OFF
						      : IRQTRACE_KIND_SOFTIRQS_OFF,
		    method ?: IRQTRACE_METHOD_SAMPLED);
	out->cpu = cpu;
	out->count = irqtrace_hist_count(in);
	out->sum_ns = READ_ONCE(in->sum_ns);
	out->max_ns = READ_ONCE(in->max_ns);
	memcpy(out->buckets, in->buckets, sizeof(out->buckets));
}

static struct snapshot *take_snapshot(void)
{
	size_t items = nr_cpu_ids * (1 + IRQTRACE_HIST_NR);
	size_t max = items * sizeof(struct irqtrace_hist) +
		     irqtrace_irqline_nr_hist() * sizeof(struct irqtrace_hist);
	struct snapshot *snap = kvmalloc(sizeof(*snap) + max, GFP_KERNEL);
	unsigned int i;
	int cpu;

	if (!snap)
		return NULL;
	snap->len = 0;
	for_each_possible_cpu(cpu) {
		fill_counters((void *)(snap->data + snap->len), cpu);
		snap->len += sizeof(struct irqtrace_counters);
	}
	for_each_possible_cpu(cpu) {
		for (i = 0; i < IRQTRACE_HIST_NR; i++) {
			fill_cpu_hist((void *)(snap->data + snap->len), cpu, i);
			snap->len += sizeof(struct irqtrace_hist);
		}
	}
	for (i = 0; i < irqtrace_irqline_nr_hist(); i++) {
		struct irqtrace_hist *h = (void *)(snap->data + snap->len);

		hist_header(h, IRQTRACE_KIND_IRQ_LINE, IRQTRACE_METHOD_EXACT);
		if (irqtrace_irqline_hist(i, h))
			snap->len += sizeof(*h);
	}
	return snap;
}

static void clear_this_cpu(void *unused)
{
	struct irqtrace_cpu *c = this_cpu_ptr(irqtrace_pcpu);

	memset(c->hist, 0, sizeof(c->hist));
	memset(&c->counters, 0, sizeof(c->counters));
}

void irqtrace_stats_clear(void)
{
	/* Each CPU clears its own, with interrupts off, so no probe is mid-update. */
	on_each_cpu(clear_this_cpu, NULL, 1);
	irqtrace_irqline_clear_hist();
}

static int stats_open(struct inode *inode, struct file *file)
{
	/* misc_open() left the miscdevice here: only a snapshot may be, or nothing. */
	file->private_data = NULL;
	if (file->f_mode & FMODE_READ) {
		file->private_data = take_snapshot();
		if (!file->private_data)
			return -ENOMEM;
	}
	return nonseekable_open(inode, file);
}

static int stats_release(struct inode *inode, struct file *file)
{
	kvfree(file->private_data);
	return 0;
}

static ssize_t stats_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct snapshot *snap = file->private_data;

	return simple_read_from_buffer(buf, count, ppos, snap->data, snap->len);
}

static ssize_t stats_write(struct file *file, const char __user *buf, size_t count,
			   loff_t *ppos)
{
	char cmd[16];

	if (count == 0 || count >= sizeof(cmd))
		goto refuse;
	if (copy_from_user(cmd, buf, count))
		return -EFAULT;
	cmd[count] = '\0';
	if (sysfs_streq(cmd, "clear"))
		irqtrace_stats_clear();
	else if (sysfs_streq(cmd, "wake"))
		irqtrace_reader_kick();
	else
		goto refuse;
	return count;
refuse:
	pr_warn("irqtrace_stats: refused a write: the commands are \"clear\" and \"wake\"\n");
	return -EINVAL;
}

static const struct file_operations stats_fops = {
	.owner		= THIS_MODULE,
	.open		= stats_open,
	.release	= stats_release,
	.read		= stats_read,
	.write		= stats_write,
	.llseek		= no_llseek,
};

static ssize_t stats_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	int cpu, n;

	n = sysfs_emit(buf, "irqs_off %s\nsoftirqs_off %s\nirq_lines %s\nthreshold_ns %llu\n",
		       irqtrace_irqs_off_method(),
		       irqtrace_softirqs_running() ? "sampled" : "off",
		       irqtrace_irqline_running() ? "exact" : "off",
		       READ_ONCE(irqtrace_threshold_ns));
	n += sysfs_emit_at(buf, n, "%-4s %12s %10s %12s %13s %13s %11s %14s\n", "cpu", "seen",
			   "recorded", "dropped_ring", "dropped_guard", "idle_excluded",
			   "nmi_skipped", "max_irqoff_ns");
	for_each_possible_cpu(cpu) {
		const struct irqtrace_cpu *c = per_cpu_ptr(irqtrace_pcpu, cpu);

		n += sysfs_emit_at(buf, n, "%-4d %12llu %10llu %12llu %13llu %13llu %11llu %14llu\n",
				   cpu, irqtrace_hist_count(&c->hist[IRQTRACE_HIST_IRQS_OFF]) +
				   irqtrace_hist_count(&c->hist[IRQTRACE_HIST_SOFTIRQS_OFF]),
				   c->counters.recorded,
				   c->counters.dropped_ring, c->counters.dropped_guard,
				   c->counters.idle_excluded, c->counters.nmi_skipped,
				   c->hist[IRQTRACE_HIST_IRQS_OFF].max_ns);
	}
	/* hybrid: which lock functions this kernel lets it hook. */
	n += irqtrace_hybrid_show(buf, n);
	return n;
}
static DEVICE_ATTR_RO(stats);

static struct attribute *irqtrace_stats_attrs[] = {
	&dev_attr_stats.attr,
	NULL,
};
ATTRIBUTE_GROUPS(irqtrace_stats);

static struct miscdevice stats_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "irqtrace_stats",
	.fops	= &stats_fops,
	.mode	= 0600,
	.groups	= irqtrace_stats_groups,
};

int irqtrace_stats_init(void)
{
	return misc_register(&stats_dev);
}

void irqtrace_stats_exit(void)
{
	misc_deregister(&stats_dev);
}
