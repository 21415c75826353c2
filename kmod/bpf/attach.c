// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: what is attached. apply() makes the programs attached match
 * the settings, method by method, the context probes first and last.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loader.h"

/* What is attached now. */
struct attached {
	const char *irqs_off;	/* "exact", "sampled" or "off": string constants */
	struct bpf_link *exact[2];
	struct bpf_link *sampled[IRQTRACE_BPF_MAX_CPUS];
	int sampled_fd[IRQTRACE_BPF_MAX_CPUS];
	__u64 sampled_period;
	__u64 sampled_cpus[IRQTRACE_BPF_MAX_CPUS / 64];
	struct bpf_link *line[4];
	bool lines;
	/* The context probes: irq handler, hrtimer and softirq entries and exits, x86's vectors'. */
	struct bpf_link *context[6 + 2 * 11];
	bool context_on;
};

static struct attached now;

void attach_init(void)
{
	int i;

	for (i = 0; i < IRQTRACE_BPF_MAX_CPUS; i++)
		now.sampled_fd[i] = -1;
	now.irqs_off = "off";
}

/* "exact", "sampled" or "off". */
const char *attached_method(void)
{
	return now.irqs_off;
}

bool attached_lines(void)
{
	return now.lines;
}

/*
 * Every CPU's state starts afresh at its next event (a new sampling grid, no
 * handler or section from before): the programs do it, see cfg.epoch.
 */
static void new_epoch(void)
{
	__atomic_add_fetch(&skel->data->cfg.epoch, 1, __ATOMIC_RELEASE);
}

static void detach_exact(void)
{
	int i;

	for (i = 0; i < 2; i++) {
		bpf_link__destroy(now.exact[i]);
		now.exact[i] = NULL;
	}
}

static int attach_exact(char *why, size_t len)
{
	/* Enable first: one seen with no open section is ignored (none from before: a new epoch). */
	new_epoch();
	now.exact[1] = bpf_program__attach_raw_tracepoint(skel->progs.irq_enable, "irq_enable");
	if (now.exact[1])
		now.exact[0] = bpf_program__attach_raw_tracepoint(skel->progs.irq_disable, "irq_disable");
	if (now.exact[0])
		return 0;
	int err = -errno;

	detach_exact();
	if (err == -ENOENT)
		snprintf(why, len, "method exact: this kernel has no preemptirq tracepoints (it needs CONFIG_TRACE_IRQFLAGS, e.g. CONFIG_IRQSOFF_TRACER); use method=sampled");
	else
		snprintf(why, len, "method exact: cannot attach to preemptirq:irq_disable/irq_enable: %s", strerror(-err));
	return err;
}

static void detach_sampled(void)
{
	int cpu;

	for (cpu = 0; cpu < IRQTRACE_BPF_MAX_CPUS; cpu++) {
		bpf_link__destroy(now.sampled[cpu]);
		now.sampled[cpu] = NULL;
		if (now.sampled_fd[cpu] > 0)
			close(now.sampled_fd[cpu]);
		now.sampled_fd[cpu] = -1;
	}
}

/* The online CPUs, from sysfs; all possible ones if it cannot be read. */
static void online_cpus(__u64 *mask)
{
	char text[256], why[96];
	FILE *f = fopen("/sys/devices/system/cpu/online", "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;

	if (f)
		fclose(f);
	while (n && isspace((unsigned char)text[n - 1]))
		n--;
	text[n] = '\0';
	memset(mask, 0, IRQTRACE_BPF_MAX_CPUS / 8);
	if (!n || !parse_cpu_list(text, mask, why, sizeof(why)))
		memset(mask, 0xff, IRQTRACE_BPF_MAX_CPUS / 8);
}

static int attach_sampled(const struct settings *s, char *why, size_t len)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.size = sizeof(attr),
		.sample_period = s->period_ns,
	};
	__u64 online[IRQTRACE_BPF_MAX_CPUS / 64];
	int cpu, fd, err;

	new_epoch();
	online_cpus(online);
	for (cpu = 0; cpu < nr_cpus && cpu < IRQTRACE_BPF_MAX_CPUS; cpu++) {
		if (!(s->cpus[cpu / 64] & online[cpu / 64] & (1ULL << (cpu % 64))))
			continue;
		fd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0) {
			err = -errno;
			detach_sampled();
			if (err == -ENOENT || err == -ENODEV || err == -EOPNOTSUPP)
				snprintf(why, len, "method sampled: no perf cpu-clock events on CPU %d (needs CONFIG_PERF_EVENTS)", cpu);
			else
				snprintf(why, len, "method sampled: perf_event_open on CPU %d: %s%s", cpu, strerror(-err),
					 err == -EACCES || err == -EPERM ? " (needs root or CAP_PERFMON)" : "");
			return err;
		}
		now.sampled_fd[cpu] = fd;
		now.sampled[cpu] = bpf_program__attach_perf_event(skel->progs.sample, fd);
		if (!now.sampled[cpu]) {
			err = -errno;
			detach_sampled();
			snprintf(why, len, "method sampled: cannot attach to the perf event on CPU %d: %s", cpu, strerror(-err));
			return err;
		}
	}
	now.sampled_period = s->period_ns;
	memcpy(now.sampled_cpus, s->cpus, sizeof(now.sampled_cpus));
	return 0;
}

static void detach_lines(void)
{
	int i;

	for (i = 0; i < 4; i++) {
		bpf_link__destroy(now.line[i]);
		now.line[i] = NULL;
	}
	now.lines = false;
}

static void reset_depths(void)
{
	struct irqtrace_bpf_line zero = {};
	__u32 irq;

	/* Transitions were missed while detached: every line starts at depth 0. */
	for (irq = 0; irq < IRQTRACE_BPF_MAX_IRQS; irq++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.lines), &irq, &zero, BPF_ANY);
}

static int attach_lines(char *why, size_t len)
{
	static const char *const fns[] = { "enable_irq", "disable_irq", "disable_irq_nosync", "disable_hardirq" };
	int i, err;

	reset_depths();
	/* enable_irq first: one seen at depth 0 is ignored, a lost one would stick. */
	for (i = 0; i < 4; i++) {
		struct bpf_program *prog = i == 0 ? skel->progs.enable_line : skel->progs.disable_line;

		now.line[i] = bpf_program__attach_kprobe(prog, false, fns[i]);
		if (now.line[i])
			continue;
		err = -errno;
		/* disable_hardirq is missing on some kernels; the other three are the method. */
		if (i == 3)
			break;
		detach_lines();
		snprintf(why, len, "irqs: cannot kprobe %s: %s (needs CONFIG_KPROBES and CONFIG_KPROBE_EVENTS)",
			 fns[i], strerror(-err));
		return err;
	}
	now.lines = true;
	return 0;
}

static void detach_context(void)
{
	unsigned int i;

	/* Entries before exits (each pair is exit, entry). */
	for (i = ARRAY_SIZE(now.context); i-- > 0;) {
		bpf_link__destroy(now.context[i]);
		now.context[i] = NULL;
	}
	now.context_on = false;
}

/*
 * The context probes, while a method runs: every method reads them, and with
 * none no interrupt pays for them. Exits before entries (an exit without its
 * entry is ignored); a kernel without some of the tracepoints names fewer
 * contexts, which is said once.
 */
static void attach_context(void)
{
	static bool said;
	const struct {
		struct bpf_program *prog;
		const char *tp;
	} probes[] = {
		{ skel->progs.hard_exit, "irq_handler_exit" },
		{ skel->progs.hard_entry, "irq_handler_entry" },
		{ skel->progs.timer_exit, "hrtimer_expire_exit" },
		{ skel->progs.timer_entry, "hrtimer_expire_entry" },
		{ skel->progs.soft_exit, "softirq_exit" },
		{ skel->progs.soft_entry, "softirq_entry" },
	};
	/* x86's system vectors (irq_vectors: <name>_entry/_exit), as kmod/context.c; absent elsewhere. */
	static const char * const vectors[] = { IRQTRACE_X86_VECTORS };
	char tp[64];
	unsigned int i, n = 0;

	_Static_assert(ARRAY_SIZE(now.context) == ARRAY_SIZE(probes) + 2 * ARRAY_SIZE(vectors),
		       "a link for each probe");
	if (now.context_on)
		return;
	/* What the probes kept before they were detached is stale. */
	new_epoch();
	for (i = 0; i < ARRAY_SIZE(probes); i++, n++) {
		/* An entry whose exit is missing would never end. */
		if (n % 2 && !now.context[n - 1])
			continue;
		now.context[n] = bpf_program__attach_raw_tracepoint(probes[i].prog, probes[i].tp);
		if (!now.context[n] && !said)
			say("no %s tracepoint (%s): sections in that context are named less well",
			    probes[i].tp, strerror(errno));
	}
	for (i = 0; i < ARRAY_SIZE(vectors); i++, n += 2) {
		/* Exit first, as above; a vector this kernel lacks is one that never runs. */
		snprintf(tp, sizeof(tp), "%s_exit", vectors[i]);
		now.context[n] = bpf_program__attach_raw_tracepoint(skel->progs.vec_exit, tp);
		if (!now.context[n])
			continue;
		snprintf(tp, sizeof(tp), "%s_entry", vectors[i]);
		now.context[n + 1] = bpf_program__attach_raw_tracepoint(skel->progs.vec_entry, tp);
	}
	said = true;
	now.context_on = true;
}

/*
 * Whether the kernel has the preemptirq tracepoints: found once, at start,
 * before anything is attached (probing later would attach a second copy of
 * running programs), with links of its own.
 */
static int exact_supported = -1;

bool exact_available(void)
{
	struct bpf_link *on, *off = NULL;

	if (exact_supported < 0) {
		on = bpf_program__attach_raw_tracepoint(skel->progs.irq_enable, "irq_enable");
		if (on)
			off = bpf_program__attach_raw_tracepoint(skel->progs.irq_disable, "irq_disable");
		exact_supported = on && off;
		bpf_link__destroy(off);
		bpf_link__destroy(on);
	}
	return exact_supported;
}

/*
 * The irqs-off method s asks for, as a string constant: now.irqs_off keeps
 * it across commands, so it must not point into a settings struct (a
 * command's copy of the settings lives on the stack).
 */
static const char *resolve_method(const struct settings *s)
{
	if (!strcmp(s->method, "exact"))
		return "exact";
	if (!strcmp(s->method, "sampled"))
		return "sampled";
	if (!strcmp(s->method, "hybrid"))
		return "hybrid";
	if (!strcmp(s->method, "off"))
		return "off";
	/*
	 * Not hybrid yet: in the e2e it wrote several times the records of
	 * sampled on a busy TCG guest, in bursts the agent could not keep up
	 * with; until that is understood, it is asked for by name.
	 */
	return exact_available() ? "exact" : "sampled";
}

/* Whether method runs the perf sampler. */
static bool sampler_runs(const char *method)
{
	return !strcmp(method, "sampled") || !strcmp(method, "hybrid");
}

/*
 * What hybrid does not do here, said once: the module's lock and scheduler
 * hooks, and (where the kernel keeps them elsewhere) the preempt count check.
 */
static void say_hybrid_once(void)
{
	static bool said;

	if (said)
		return;
	said = true;
	say("%s (%s): %s", "hybrid: interrupts are timed from their handler's entry; lock functions and the scheduler are not hooked",
	    HYBRID_NO_LOCKS, "their sections are sampled, as with method=sampled; the kernel module times them exactly");
	if (!skel->data->cfg.preempt_count)
		say("hybrid: no per-CPU __preempt_count in /proc/kallsyms: a softirq that starts within sample_floor_ns of an interrupt's exit, in the task it interrupted, ends its section, whether irq_exit or local_bh_enable() ran it");
	if (!skel->data->cfg.softirq_pending)
		say("hybrid: no per-CPU irq_stat.__softirq_pending found: softirqs are taken to be pending at every interrupt's exit");
}

/* Makes what is attached match s; on failure, why says what the kernel lacks. */
int apply(const struct settings *s, char *why, size_t len)
{
	const char *method = resolve_method(s);
	struct irqtrace_bpf_config *cfg = &skel->data->cfg;
	bool want_lines = irq_lines_wanted(s);
	bool want_context = strcmp(method, "off") || want_lines;
	__u32 irq;
	int err;

	cfg->threshold_ns = s->threshold_ns;
	cfg->period_ns = s->period_ns;
	cfg->floor_ns = s->floor_ns;
	cfg->stacks = s->stacks;
	cfg->count_idle = s->idle;
	memcpy(cfg->cpus, s->cpus, sizeof(cfg->cpus));
	cfg->all_cpus = !strcmp(s->cpus_text, "all");
	cfg->context_all_cpus = want_lines;
	cfg->irqs_all = s->irqs_all;
	for (irq = 0; irq < IRQTRACE_BPF_MAX_IRQS; irq++) {
		__u8 on = s->irqs[irq];

		bpf_map_update_elem(bpf_map__fd(skel->maps.targets), &irq, &on, BPF_ANY);
	}

	/* First: the methods read the context it keeps. */
	if (want_context)
		attach_context();
	/* A sampled timer runs per CPU at one period: new ones for a change of either. */
	if (strcmp(method, now.irqs_off) ||
	    (sampler_runs(method) && (s->period_ns != now.sampled_period ||
				      memcmp(s->cpus, now.sampled_cpus, sizeof(s->cpus))))) {
		detach_exact();
		detach_sampled();
		now.irqs_off = "off";
		/* hybrid is the sampler with the interrupts' probes timing their sections. */
		cfg->hybrid = !strcmp(method, "hybrid");
		if (cfg->hybrid)
			say_hybrid_once();
		if (!strcmp(method, "exact"))
			err = attach_exact(why, len);
		else if (sampler_runs(method))
			err = attach_sampled(s, why, len);
		else
			err = 0;
		if (err)
			return err;
		now.irqs_off = method;
	}
	if (want_lines && !now.lines) {
		err = attach_lines(why, len);
		if (err)
			return err;
	} else if (!want_lines && now.lines) {
		detach_lines();
	}
	if (!want_context)
		detach_context();
	return 0;
}

void detach_all(void)
{
	detach_exact();
	detach_sampled();
	detach_lines();
	detach_context();
}
