// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace_floor: empty probes where irqtrace's methods hook.
 *
 * The benchmark's floor: what any tracer built on these hooks pays before
 * doing any work of its own. hooks=tracepoints (the default): the
 * irq_disable/irq_enable tracepoints, the exact method's. hooks=locks: an
 * ftrace callback on _raw_spin_lock_irqsave and _raw_spin_unlock_irqrestore,
 * the hybrid method's (what the selftest's benchlock times).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

static char *hooks = "tracepoints";
module_param(hooks, charp, 0444);
MODULE_PARM_DESC(hooks, "tracepoints (irq_disable/irq_enable) or locks (_raw_spin_lock_irqsave, _raw_spin_unlock_irqrestore)");

static struct tracepoint *tp_disable;
static struct tracepoint *tp_enable;
static bool on_locks;

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

static void notrace floor_callback(unsigned long ip, unsigned long parent_ip,
				   struct ftrace_ops *op, struct ftrace_regs *fregs)
{
}
NOKPROBE_SYMBOL(floor_callback);

/* The hybrid method's flags, so that the floor pays what its callbacks do to be called. */
#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
static struct ftrace_ops floor_ops = { .func = floor_callback };
#else
static struct ftrace_ops floor_ops = { .func = floor_callback, .flags = FTRACE_OPS_FL_SAVE_REGS };
#endif

static int hook_locks(void)
{
	static const char * const names[] = {
		"_raw_spin_lock_irqsave", "_raw_spin_unlock_irqrestore",
	};
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		ret = ftrace_set_filter(&floor_ops, (unsigned char *)names[i], strlen(names[i]), 0);
		if (ret) {
			pr_warn("%s is not out of line here: %d\n", names[i], ret);
			ftrace_free_filter(&floor_ops);
			return ret;
		}
	}
	ret = register_ftrace_function(&floor_ops);
	if (ret)
		ftrace_free_filter(&floor_ops);
	return ret;
}

static int hook_tracepoints(void)
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

static int __init irqtrace_floor_init(void)
{
	if (!strcmp(hooks, "locks")) {
		on_locks = true;
		return hook_locks();
	}
	if (strcmp(hooks, "tracepoints")) {
		pr_warn("hooks=%s refused: expected tracepoints or locks\n", hooks);
		return -EINVAL;
	}
	return hook_tracepoints();
}

static void __exit irqtrace_floor_exit(void)
{
	if (on_locks) {
		/* Waits until no callback runs. */
		unregister_ftrace_function(&floor_ops);
		ftrace_free_filter(&floor_ops);
		return;
	}
	tracepoint_probe_unregister(tp_enable, floor_probe, NULL);
	tracepoint_probe_unregister(tp_disable, floor_probe, NULL);
	tracepoint_synchronize_unregister();
}

module_init(irqtrace_floor_init);
module_exit(irqtrace_floor_exit);
MODULE_DESCRIPTION("irqtrace benchmark floor: empty probes where irqtrace hooks");
MODULE_LICENSE("GPL");
