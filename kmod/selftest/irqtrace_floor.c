// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace_floor: empty probes on the irq_disable/irq_enable tracepoints.
 *
 * The benchmark's floor: what any tracer built on these tracepoints pays
 * before doing any work of its own.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

static struct tracepoint *tp_disable;
static struct tracepoint *tp_enable;

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "irq_disable"))
		tp_disable = tp;
	else if (!strcmp(tp->name, "irq_enable"))
		tp_enable = tp;
}

static void notrace floor_probe(void *data, unsigned long ip, unsigned long parent_ip)
{
}
NOKPROBE_SYMBOL(floor_probe);

static int __init irqtrace_floor_init(void)
{
	int ret;

	for_each_kernel_tracepoint(find_tracepoint, NULL);
	if (!tp_disable || !tp_enable) {
		pr_warn("no preemptirq tracepoints in this kernel\n");
		return -EOPNOTSUPP;
	}
	ret = tracepoint_probe_register(tp_disable, floor_probe, NULL);
	if (ret)
		return ret;
	ret = tracepoint_probe_register(tp_enable, floor_probe, NULL);
	if (ret) {
		tracepoint_probe_unregister(tp_disable, floor_probe, NULL);
		tracepoint_synchronize_unregister();
	}
	return ret;
}

static void __exit irqtrace_floor_exit(void)
{
	tracepoint_probe_unregister(tp_enable, floor_probe, NULL);
	tracepoint_probe_unregister(tp_disable, floor_probe, NULL);
	tracepoint_synchronize_unregister();
}

module_init(irqtrace_floor_init);
module_exit(irqtrace_floor_exit);
MODULE_DESCRIPTION("irqtrace benchmark floor: empty preemptirq probes");
MODULE_LICENSE("GPL");
