// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: how long interrupts stay off, and who did it.
 *
 * Three methods, any combination at once:
 *  - irqs off, exact: the preemptirq tracepoints (kernels with
 *    CONFIG_TRACE_IRQFLAGS), every section timed from disable to enable;
 *  - irqs off and softirqs off, sampled: per-CPU hrtimers whose lateness
 *    is the part of a section that overlapped their expiry (every kernel);
 *    irqs off, hybrid: the sampler, plus hooks on the irq-saving lock
 *    functions and interrupt handlers that time each end exactly where
 *    they can (stock kernels, hybrid.c);
 *  - one IRQ line masked: ftrace callbacks on disable_irq()..enable_irq().
 *
 * Sections at or above threshold_ns become records on /dev/irqtrace; all of
 * them land in per-CPU log2 histograms on /dev/irqtrace_stats.
 *
 * Configuration is the module parameters, both at load and at run time:
 * /sys/module/irqtrace/parameters/<name> accepts a new value at any time,
 * refuses a bad one with -EINVAL (and says why in the kernel log), and
 * applies a good one without reloading. Changing method, period_ns,
 * softirqs, cpus or irqs restarts the methods (records already in the rings
 * are kept); threshold_ns, stacks and idle apply to the next section.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/stringify.h>

#include "internal.h"

#define DEFAULT_RING_RECORDS	1024
#define MIN_RING_RECORDS	16
#define MAX_RING_RECORDS	65536
#define LIST_PARAM_LEN		256

enum irqtrace_method_param {
	METHOD_AUTO,
	METHOD_EXACT,
	METHOD_SAMPLED,
	METHOD_OFF,
	METHOD_HYBRID,
};

static const char * const method_names[] = {
	[METHOD_AUTO]		= "auto",
	[METHOD_EXACT]		= "exact",
	[METHOD_SAMPLED]	= "sampled",
	[METHOD_OFF]		= "off",
	[METHOD_HYBRID]		= "hybrid",
};

struct irqtrace_cpu __percpu *irqtrace_pcpu;
u64 irqtrace_threshold_ns __read_mostly = IRQTRACE_THRESHOLD_NS_DEFAULT;
u64 irqtrace_period_ns __read_mostly = IRQTRACE_PERIOD_NS_DEFAULT;
u64 irqtrace_floor_ns __read_mostly = IRQTRACE_FLOOR_NS_DEFAULT;
bool irqtrace_stacks __read_mostly = true;
bool irqtrace_count_idle __read_mostly;
struct cpumask irqtrace_cpus __read_mostly;
unsigned int irqtrace_ring_records __read_mostly = DEFAULT_RING_RECORDS;

/* Serializes every configuration change and start/stop of the methods. */
static DEFINE_MUTEX(irqtrace_config_lock);
/* Set once init has allocated everything: before, parameters are only stored. */
static bool irqtrace_ready;

static int param_method = METHOD_AUTO;
static bool param_softirqs = true;
static char param_cpus[LIST_PARAM_LEN] = "all";
static char param_irqs[LIST_PARAM_LEN] = "all";

/* What runs now (under irqtrace_config_lock). */
static int running_method = METHOD_OFF;
static bool running_softirqs;
static bool running_context;

const char *irqtrace_irqs_off_method(void)
{
	return method_names[READ_ONCE(running_method)];
}

/* The irqs-off method running, as enum irqtrace_method; 0 when off. */
u8 irqtrace_irqs_off_method_id(void)
{
	switch (READ_ONCE(running_method)) {
	case METHOD_EXACT:
		return IRQTRACE_METHOD_EXACT;
	case METHOD_SAMPLED:
		return IRQTRACE_METHOD_SAMPLED;
	case METHOD_HYBRID:
		return IRQTRACE_METHOD_HYBRID;
	default:
		return 0;
	}
}

bool irqtrace_softirqs_running(void)
{
	return READ_ONCE(running_softirqs);
}

/* Copies the cpus parameter into each CPU's state, where the probes read it. */
void irqtrace_update_wanted(void)
{
	int cpu;

	for_each_possible_cpu(cpu)
		WRITE_ONCE(per_cpu_ptr(irqtrace_pcpu, cpu)->wanted, cpumask_test_cpu(cpu, &irqtrace_cpus));
}

static void irqtrace_stop_all(void)
{
	if (running_method == METHOD_EXACT)
		irqtrace_exact_stop();
	/* Before the sampler and the context probes, which call into it. */
	if (running_method == METHOD_HYBRID)
		irqtrace_hybrid_stop();
	if (running_method == METHOD_SAMPLED || running_method == METHOD_HYBRID ||
	    running_softirqs)
		irqtrace_sampled_stop();
	irqtrace_irqline_stop();
	/* Last: the methods read the context it keeps. */
	if (running_context)
		irqtrace_context_stop();
	running_context = false;
	WRITE_ONCE(running_method, METHOD_OFF);
	WRITE_ONCE(running_softirqs, false);
}

/* Stops whatever runs and starts what the parameters ask for. */
static int irqtrace_apply(void)
{
	int method = param_method;
	int ret;

	lockdep_assert_held(&irqtrace_config_lock);
	irqtrace_stop_all();

	/*
	 * auto: the most exact method this kernel can run. Without the
	 * preemptirq tracepoints (stock kernels), hybrid; sampled where no
	 * irq-saving lock function is out of line, which hybrid finds out.
	 */
	if (method == METHOD_AUTO)
		method = irqtrace_exact_available() ? METHOD_EXACT : METHOD_HYBRID;

	/*
	 * First: every method reads the context it keeps. With nothing to
	 * measure, no interrupt pays for probes that nobody reads.
	 */
	if (method != METHOD_OFF || param_softirqs || irqtrace_irqline_wanted()) {
		ret = irqtrace_context_start(irqtrace_irqline_wanted());
		if (ret)
			goto err;
		running_context = true;
	}

	if (method == METHOD_EXACT) {
		ret = irqtrace_exact_start();
		if (ret) {
			irqtrace_stop_all();
			goto err;
		}
	}
	if (method == METHOD_SAMPLED || method == METHOD_HYBRID || param_softirqs) {
		ret = irqtrace_sampled_start(method == METHOD_SAMPLED || method == METHOD_HYBRID,
					     param_softirqs);
		if (ret) {
			if (method == METHOD_EXACT)
				irqtrace_exact_stop();
			irqtrace_stop_all();
			goto err;
		}
	}
	WRITE_ONCE(running_method, method);
	/* After the sampler: its interrupts are the ends of what the hooks start. */
	if (method == METHOD_HYBRID) {
		ret = irqtrace_hybrid_start();
		/* auto: what hybrid could not start on, sampled does without it. */
		if (ret && param_method == METHOD_AUTO) {
			pr_info("method=auto: sampled (hybrid: %d)\n", ret);
			WRITE_ONCE(running_method, METHOD_SAMPLED);
			ret = 0;
		}
		if (ret) {
			irqtrace_stop_all();
			goto err;
		}
	}
	WRITE_ONCE(running_softirqs, param_softirqs);

	ret = irqtrace_irqline_start();
	if (ret) {
		irqtrace_stop_all();
		goto err;
	}
	return 0;
err:
	pr_warn("could not start: %d; nothing is traced\n", ret);
	return ret;
}

/* Runs apply if the module is up; parameters set at load are applied by init. */
static int irqtrace_reconfigure(void)
{
	return irqtrace_ready ? irqtrace_apply() : 0;
}

/* val without surrounding white space (sysfs writes end in a newline), for messages. */
static const char *trimmed(const char *val, char *buf, size_t len)
{
	strscpy(buf, val, len);
	return strim(buf);
}

static int method_set(const char *val, const struct kernel_param *kp)
{
	char shown[LIST_PARAM_LEN];
	int method, ret;

	method = sysfs_match_string(method_names, val);
	if (method < 0) {
		pr_warn("method=%s refused: expected auto, exact, hybrid, sampled or off\n",
			trimmed(val, shown, sizeof(shown)));
		return -EINVAL;
	}
	if (method == METHOD_EXACT && !irqtrace_exact_available()) {
		pr_warn("method=exact refused: this kernel has no preemptirq tracepoints (needs CONFIG_TRACE_IRQFLAGS); use sampled\n");
		return -EINVAL;
	}
	mutex_lock(&irqtrace_config_lock);
	param_method = method;
	ret = irqtrace_reconfigure();
	mutex_unlock(&irqtrace_config_lock);
	return ret;
}

static int method_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", method_names[param_method]);
}

static const struct kernel_param_ops method_ops = {
	.set = method_set,
	.get = method_get,
};
module_param_cb(method, &method_ops, NULL, 0644);
MODULE_PARM_DESC(method, "irqs-off method: auto (exact if the kernel has the preemptirq tracepoints, else hybrid if it can run, else sampled), exact, hybrid (stock kernels: exact where the irq-saving lock functions and interrupt handlers are hooked, else sampled), sampled or off (default: auto)");

/* A u64 parameter with a range, in ns. */
struct ranged_u64 {
	u64 *value;
	u64 min;
	u64 max;
	bool restart;	/* the methods must restart to take it */
};

static int ranged_u64_set(const char *val, const struct kernel_param *kp)
{
	const struct ranged_u64 *r = kp->arg;
	char shown[LIST_PARAM_LEN];
	u64 v;
	int ret;

	ret = kstrtou64(val, 0, &v);
	if (ret || v < r->min || v > r->max) {
		pr_warn("%s=%s refused: expected a number of ns from %llu to %llu\n",
			kp->name, trimmed(val, shown, sizeof(shown)), r->min, r->max);
		return -EINVAL;
	}
	mutex_lock(&irqtrace_config_lock);
	WRITE_ONCE(*r->value, v);
	ret = r->restart ? irqtrace_reconfigure() : 0;
	mutex_unlock(&irqtrace_config_lock);
	return ret;
}

static int ranged_u64_get(char *buf, const struct kernel_param *kp)
{
	const struct ranged_u64 *r = kp->arg;

	return sysfs_emit(buf, "%llu\n", READ_ONCE(*r->value));
}

static const struct kernel_param_ops ranged_u64_ops = {
	.set = ranged_u64_set,
	.get = ranged_u64_get,
};

static struct ranged_u64 threshold_param = {
	.value = &irqtrace_threshold_ns, .min = IRQTRACE_THRESHOLD_NS_MIN, .max = IRQTRACE_THRESHOLD_NS_MAX,
};
module_param_cb(threshold_ns, &ranged_u64_ops, &threshold_param, 0644);
MODULE_PARM_DESC(threshold_ns, "Sections this long or longer become records, in ns, "
		 __stringify(IRQTRACE_THRESHOLD_NS_MIN) ".." __stringify(IRQTRACE_THRESHOLD_NS_MAX)
		 " (default: " __stringify(IRQTRACE_THRESHOLD_NS_DEFAULT) ")");

static struct ranged_u64 floor_param = {
	.value = &irqtrace_floor_ns, .min = IRQTRACE_FLOOR_NS_MIN, .max = IRQTRACE_FLOOR_NS_MAX,
};
module_param_cb(sample_floor_ns, &ranged_u64_ops, &floor_param, 0644);
MODULE_PARM_DESC(sample_floor_ns, "Sampled: a sample later than this counts as a section, in ns, "
		 __stringify(IRQTRACE_FLOOR_NS_MIN) ".." __stringify(IRQTRACE_FLOOR_NS_MAX)
		 " (default: " __stringify(IRQTRACE_FLOOR_NS_DEFAULT) ")");

static struct ranged_u64 period_param = {
	.value = &irqtrace_period_ns, .min = IRQTRACE_PERIOD_NS_MIN, .max = IRQTRACE_PERIOD_NS_MAX, .restart = true,
};
module_param_cb(period_ns, &ranged_u64_ops, &period_param, 0644);
MODULE_PARM_DESC(period_ns, "Sampling period of the sampled method, in ns, "
		 __stringify(IRQTRACE_PERIOD_NS_MIN) ".." __stringify(IRQTRACE_PERIOD_NS_MAX)
		 " (default: " __stringify(IRQTRACE_PERIOD_NS_DEFAULT) ")");

/* A bool parameter; restart says whether the methods must restart to take it. */
static int flag_set(const char *val, const struct kernel_param *kp, bool restart)
{
	char shown[LIST_PARAM_LEN];
	bool v;
	int ret;

	if (kstrtobool(val, &v)) {
		pr_warn("%s=%s refused: expected 0 or 1\n", kp->name,
			trimmed(val, shown, sizeof(shown)));
		return -EINVAL;
	}
	mutex_lock(&irqtrace_config_lock);
	WRITE_ONCE(*(bool *)kp->arg, v);
	ret = restart ? irqtrace_reconfigure() : 0;
	mutex_unlock(&irqtrace_config_lock);
	return ret;
}

static int live_flag_set(const char *val, const struct kernel_param *kp)
{
	return flag_set(val, kp, false);
}

static int restart_flag_set(const char *val, const struct kernel_param *kp)
{
	return flag_set(val, kp, true);
}

static const struct kernel_param_ops live_flag_ops = {
	.set = live_flag_set,
	.get = param_get_bool,
};

static const struct kernel_param_ops restart_flag_ops = {
	.set = restart_flag_set,
	.get = param_get_bool,
};

module_param_cb(stacks, &live_flag_ops, &irqtrace_stacks, 0644);
MODULE_PARM_DESC(stacks, "Record kernel stacks, 0 or 1 (default: 1)");
module_param_cb(idle, &live_flag_ops, &irqtrace_count_idle, 0644);
MODULE_PARM_DESC(idle, "Also measure sections of the idle task, 0 or 1 (default: 0: counted as idle_excluded only)");
module_param_cb(softirqs, &restart_flag_ops, &param_softirqs, 0644);
MODULE_PARM_DESC(softirqs, "Sample softirqs-off sections too, 0 or 1 (default: 1)");

static int parse_cpus(const char *val, struct cpumask *mask)
{
	if (sysfs_streq(val, "all")) {
		cpumask_copy(mask, cpu_possible_mask);
		return 0;
	}
	if (cpulist_parse(val, mask) || cpumask_empty(mask) ||
	    !cpumask_subset(mask, cpu_possible_mask))
		return -EINVAL;
	return 0;
}

static int cpus_set(const char *val, const struct kernel_param *kp)
{
	char shown[LIST_PARAM_LEN];
	struct cpumask mask;
	int ret;

	if (strlen(val) >= LIST_PARAM_LEN || parse_cpus(val, &mask)) {
		pr_warn("cpus=%s refused: expected all or a list of possible CPUs like 0-3,6 (possible: %*pbl)\n",
			trimmed(val, shown, sizeof(shown)), cpumask_pr_args(cpu_possible_mask));
		return -EINVAL;
	}
	mutex_lock(&irqtrace_config_lock);
	strscpy(param_cpus, val, sizeof(param_cpus));
	strim(param_cpus);
	cpumask_copy(&irqtrace_cpus, &mask);
	if (irqtrace_ready)
		irqtrace_update_wanted();
	ret = irqtrace_reconfigure();
	mutex_unlock(&irqtrace_config_lock);
	return ret;
}

static int cpus_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", param_cpus);
}

static const struct kernel_param_ops cpus_ops = {
	.set = cpus_set,
	.get = cpus_get,
};
module_param_cb(cpus, &cpus_ops, NULL, 0644);
MODULE_PARM_DESC(cpus, "CPUs to trace: all or a CPU list like 0-3,6 (default: all)");

static int irqs_set(const char *val, const struct kernel_param *kp)
{
	int ret;

	if (strlen(val) >= LIST_PARAM_LEN) {
		pr_warn("irqs refused: longer than %d characters\n", LIST_PARAM_LEN - 1);
		return -EINVAL;
	}
	mutex_lock(&irqtrace_config_lock);
	/* Before init the table does not exist yet: validate, store, apply in init. */
	ret = irqtrace_irqline_set_targets(val, irqtrace_ready);
	if (!ret) {
		strscpy(param_irqs, val, sizeof(param_irqs));
		strim(param_irqs);
		ret = irqtrace_reconfigure();
	}
	mutex_unlock(&irqtrace_config_lock);
	return ret;
}

static int irqs_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", param_irqs);
}

static const struct kernel_param_ops irqs_ops = {
	.set = irqs_set,
	.get = irqs_get,
};
module_param_cb(irqs, &irqs_ops, NULL, 0644);
MODULE_PARM_DESC(irqs, "IRQ lines to watch with disable_irq/enable_irq: all, none, or a list like 4,11 (default: all)");

static int ring_records_set(const char *val, const struct kernel_param *kp)
{
	char shown[LIST_PARAM_LEN];
	unsigned int v;

	if (kstrtouint(val, 0, &v) || v < MIN_RING_RECORDS || v > MAX_RING_RECORDS ||
	    !is_power_of_2(v)) {
		pr_warn("ring_records=%s refused: expected a power of 2 from %d to %d\n",
			trimmed(val, shown, sizeof(shown)), MIN_RING_RECORDS, MAX_RING_RECORDS);
		return -EINVAL;
	}
	irqtrace_ring_records = v;
	return 0;
}

static const struct kernel_param_ops ring_records_ops = {
	.set = ring_records_set,
	.get = param_get_uint,
};
module_param_cb(ring_records, &ring_records_ops, &irqtrace_ring_records, 0444);
MODULE_PARM_DESC(ring_records, "Records each per-CPU ring holds, a power of 2, 16..65536, load time only (default: 1024)");

static int __init irqtrace_init(void)
{
	int ret;

	/* cpus= given at load already filled the mask; otherwise every CPU. */
	if (cpumask_empty(&irqtrace_cpus))
		cpumask_copy(&irqtrace_cpus, cpu_possible_mask);

	irqtrace_pcpu = alloc_percpu(struct irqtrace_cpu);
	if (!irqtrace_pcpu)
		return -ENOMEM;
	irqtrace_update_wanted();

	ret = irqtrace_ring_init();
	if (ret)
		goto err_free_pcpu;
	ret = irqtrace_irqline_init();
	if (ret)
		goto err_ring;
	ret = irqtrace_irqline_set_targets(param_irqs, true);
	if (ret)
		goto err_irqline;
	ret = irqtrace_stats_init();
	if (ret)
		goto err_irqline;

	mutex_lock(&irqtrace_config_lock);
	irqtrace_ready = true;
	ret = irqtrace_apply();
	mutex_unlock(&irqtrace_config_lock);
	if (ret)
		goto err_stats;

	pr_info("tracing: irqs-off %s, softirqs-off %s, irq lines %s, threshold %llu ns\n",
		irqtrace_irqs_off_method(), running_softirqs ? "sampled" : "off",
		irqtrace_irqline_running() ? param_irqs : "off", irqtrace_threshold_ns);
	return 0;

err_stats:
	irqtrace_hybrid_exit();
	irqtrace_stats_exit();
err_irqline:
	irqtrace_irqline_exit();
err_ring:
	irqtrace_ring_exit();
err_free_pcpu:
	free_percpu(irqtrace_pcpu);
	return ret;
}

static void __exit irqtrace_exit(void)
{
	mutex_lock(&irqtrace_config_lock);
	irqtrace_stop_all();
	irqtrace_ready = false;
	mutex_unlock(&irqtrace_config_lock);
	irqtrace_hybrid_exit();
	irqtrace_stats_exit();
	irqtrace_irqline_exit();
	irqtrace_ring_exit();
	free_percpu(irqtrace_pcpu);
}

module_init(irqtrace_init);
module_exit(irqtrace_exit);
MODULE_DESCRIPTION("irqtrace: how long interrupts stay off, and who did it");
/* The record ABI: a driver loader keeps a loaded module only when it matches. */
MODULE_VERSION(__stringify(IRQTRACE_ABI_VERSION));
MODULE_LICENSE("GPL");
