// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: the eBPF backend's loader.
 *
 * Loads irqtrace.bpf.c, attaches what the configuration asks for and writes
 * the same binary items as the kernel module's /dev/irqtrace to stdout:
 * records as they come, histograms and counters when asked. Configuration
 * is the module's parameters, as key=value arguments at start and as
 * key=value lines on stdin at run time; stdin also takes "stats" and
 * "clear". Every accepted or refused line gets one line on stderr. SIGTERM,
 * SIGINT or the end of stdin detach everything and exit 0.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "irqtrace_bpf.h"
#include "irqtrace.skel.h"

#define NAME "irqtrace-bpf"
#define STR_(x) #x
#define STR(x) STR_(x)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Exit codes: what failed. */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 2,		/* bad configuration */
	EXIT_UNSUPPORTED = 3,	/* the kernel lacks what a method needs */
	EXIT_PERMISSION = 4,	/* not allowed to load or attach */
	EXIT_IO = 5,		/* stdout closed or broken */
};

static const char usage[] =
"usage: " NAME " [-v] [key=value ...]\n"
"\n"
"Traces how long interrupts stay off with eBPF and writes irqtrace's binary\n"
"items (kmod/include/uapi/irqtrace.h) to stdout.\n"
"\n"
"  method=auto|exact|sampled|off   irqs-off method (auto: exact if the kernel\n"
"                                  has the preemptirq tracepoints, else sampled)\n"
"  threshold_ns=N                  sections this long or longer become records\n"
"                                  (" STR(IRQTRACE_THRESHOLD_NS_MIN) ".." STR(IRQTRACE_THRESHOLD_NS_MAX)
", default " STR(IRQTRACE_THRESHOLD_NS_DEFAULT) ")\n"
"  period_ns=N                     sampled: timer period (" STR(IRQTRACE_PERIOD_NS_MIN) ".."
STR(IRQTRACE_PERIOD_NS_MAX) ", default " STR(IRQTRACE_PERIOD_NS_DEFAULT) ")\n"
"  sample_floor_ns=N               sampled: a sample this late is a section, a less\n"
"                                  late one the timer's latency (" STR(IRQTRACE_FLOOR_NS_MIN) ".."
STR(IRQTRACE_FLOOR_NS_MAX) ", default " STR(IRQTRACE_FLOOR_NS_DEFAULT) ")\n"
"  stacks=0|1                      kernel stacks in records (default 1)\n"
"  idle=0|1                        also measure the idle task (default 0)\n"
"  cpus=all|LIST                   CPUs measured, e.g. 0-3,6 (default all)\n"
"  irqs=none|all|LIST              IRQ lines traced (default none)\n"
"  softirqs=0                      softirqs-off is not measured by this backend\n"
"  ring_bytes=N                    ring buffer size, a power of two (at start)\n"
"\n"
"stdin, one per line: key=value (as above), stats, clear.\n"
"\n"
"examples:\n"
"  " NAME " method=exact threshold_ns=50000 > records.bin\n"
"  " NAME " method=sampled period_ns=500000 irqs=all\n";

struct settings {
	char method[8];
	__u64 threshold_ns;
	__u64 period_ns;
	__u64 floor_ns;
	bool stacks;
	bool idle;
	__u64 cpus[IRQTRACE_BPF_MAX_CPUS / 64];
	char cpus_text[64];
	bool irqs_all;
	unsigned char irqs[IRQTRACE_BPF_MAX_IRQS];
	char irqs_text[64];
	__u32 ring_bytes;
};

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
	/* The context probes: irq handler, hrtimer and softirq entries and exits. */
	struct bpf_link *context[6];
};

static bool verbose;
static struct irqtrace_bpf *skel;
static struct attached now;
static int nr_cpus;
static __u64 records_written;

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	if (!verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* "0-3,6" into a bitmap of at most max bits; false on a bad list. */
static bool parse_list(const char *text, unsigned int max, void (*set)(void *, unsigned int),
		       void *arg, char *why, size_t len)
{
	const char *p = text;

	if (!*p) {
		snprintf(why, len, "empty list");
		return false;
	}
	while (*p) {
		char *end;
		unsigned long a, b;

		if (!isdigit((unsigned char)*p))
			goto bad;
		a = strtoul(p, &end, 10);
		b = a;
		p = end;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				goto bad;
			b = strtoul(p, &end, 10);
			p = end;
		}
		if (a > b || b >= max) {
			snprintf(why, len, "%lu-%lu is outside 0..%u", a, b, max - 1);
			return false;
		}
		for (; a <= b; a++)
			set(arg, a);
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	return true;
bad:
	snprintf(why, len, "'%s' is not a list like 0-3,6", text);
	return false;
}

static void set_cpu(void *arg, unsigned int cpu)
{
	((__u64 *)arg)[cpu / 64] |= 1ULL << (cpu % 64);
}

static void set_irq(void *arg, unsigned int irq)
{
	((unsigned char *)arg)[irq] = 1;
}

static bool parse_u64(const char *value, __u64 *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*value))
		return false;
	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *value, bool *out)
{
	if (!strcmp(value, "1") || !strcmp(value, "y") || !strcmp(value, "Y")) {
		*out = true;
		return true;
	}
	if (!strcmp(value, "0") || !strcmp(value, "n") || !strcmp(value, "N")) {
		*out = false;
		return true;
	}
	return false;
}

/* Applies "key=value" to s; on refusal, why says so in one line. */
static bool parse_setting(struct settings *s, const char *line, bool at_start, char *why, size_t len)
{
	char key[32];
	const char *value = strchr(line, '=');
	size_t klen;
	__u64 v;
	bool b;

	if (!value || value == line || (size_t)(value - line) >= sizeof(key)) {
		snprintf(why, len, "'%s' is not key=value", line);
		return false;
	}
	klen = value - line;
	memcpy(key, line, klen);
	key[klen] = '\0';
	value++;

	if (!strcmp(key, "method")) {
		if (strcmp(value, "auto") && strcmp(value, "exact") && strcmp(value, "sampled") &&
		    strcmp(value, "off")) {
			snprintf(why, len, "method: '%s' is not auto, exact, sampled or off", value);
			return false;
		}
		snprintf(s->method, sizeof(s->method), "%s", value);
	} else if (!strcmp(key, "threshold_ns")) {
		if (!parse_u64(value, &v) || v < IRQTRACE_THRESHOLD_NS_MIN || v > IRQTRACE_THRESHOLD_NS_MAX) {
			snprintf(why, len, "threshold_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_THRESHOLD_NS_MIN,
				 (unsigned long long)IRQTRACE_THRESHOLD_NS_MAX);
			return false;
		}
		s->threshold_ns = v;
	} else if (!strcmp(key, "period_ns")) {
		if (!parse_u64(value, &v) || v < IRQTRACE_PERIOD_NS_MIN || v > IRQTRACE_PERIOD_NS_MAX) {
			snprintf(why, len, "period_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_PERIOD_NS_MIN,
				 (unsigned long long)IRQTRACE_PERIOD_NS_MAX);
			return false;
		}
		s->period_ns = v;
	} else if (!strcmp(key, "sample_floor_ns")) {
		_Static_assert(IRQTRACE_FLOOR_NS_MIN == 0, "a u64 needs only the maximum checked");
		if (!parse_u64(value, &v) || v > IRQTRACE_FLOOR_NS_MAX) {
			snprintf(why, len, "sample_floor_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_FLOOR_NS_MIN,
				 (unsigned long long)IRQTRACE_FLOOR_NS_MAX);
			return false;
		}
		s->floor_ns = v;
	} else if (!strcmp(key, "stacks") || !strcmp(key, "idle")) {
		if (!parse_bool(value, &b)) {
			snprintf(why, len, "%s: '%s' is not 0 or 1", key, value);
			return false;
		}
		*(key[0] == 's' ? &s->stacks : &s->idle) = b;
	} else if (!strcmp(key, "softirqs")) {
		if (!parse_bool(value, &b) || b) {
			snprintf(why, len, "softirqs: the eBPF backend cannot measure softirqs off (no pinned BPF timer before Linux 6.7); use the kernel module");
			return false;
		}
	} else if (!strcmp(key, "cpus")) {
		__u64 cpus[IRQTRACE_BPF_MAX_CPUS / 64] = {};
		char sub[96];

		if (!strcmp(value, "all")) {
			memset(cpus, 0xff, sizeof(cpus));
		} else if (!parse_list(value, IRQTRACE_BPF_MAX_CPUS, set_cpu, cpus, sub, sizeof(sub))) {
			snprintf(why, len, "cpus: %s", sub);
			return false;
		}
		memcpy(s->cpus, cpus, sizeof(cpus));
		snprintf(s->cpus_text, sizeof(s->cpus_text), "%s", value);
	} else if (!strcmp(key, "irqs")) {
		static unsigned char irqs[IRQTRACE_BPF_MAX_IRQS];
		char sub[96];

		memset(irqs, 0, sizeof(irqs));
		if (strcmp(value, "all") && strcmp(value, "none") &&
		    !parse_list(value, IRQTRACE_BPF_MAX_IRQS, set_irq, irqs, sub, sizeof(sub))) {
			snprintf(why, len, "irqs: %s", sub);
			return false;
		}
		s->irqs_all = !strcmp(value, "all");
		memcpy(s->irqs, irqs, sizeof(irqs));
		snprintf(s->irqs_text, sizeof(s->irqs_text), "%s", value);
	} else if (!strcmp(key, "ring_bytes")) {
		if (!at_start) {
			snprintf(why, len, "ring_bytes: can only be set at start");
			return false;
		}
		if (!parse_u64(value, &v) || v < 4096 || v > (1U << 30) || (v & (v - 1))) {
			snprintf(why, len, "ring_bytes: '%s' is not a power of two in 4096..1073741824", value);
			return false;
		}
		s->ring_bytes = v;
	} else {
		snprintf(why, len, "'%s' is not a setting (method, threshold_ns, period_ns, sample_floor_ns, stacks, idle, cpus, irqs, softirqs, ring_bytes)", key);
		return false;
	}
	return true;
}

static bool irq_lines_wanted(const struct settings *s)
{
	unsigned int i;

	if (s->irqs_all)
		return true;
	for (i = 0; i < IRQTRACE_BPF_MAX_IRQS; i++)
		if (s->irqs[i])
			return true;
	return false;
}

static int exit_code_for(int err)
{
	err = err < 0 ? -err : err;
	if (err == EPERM || err == EACCES)
		return EXIT_PERMISSION;
	return EXIT_UNSUPPORTED;
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
	/* Enable first: one seen with no open section is ignored. */
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
	if (!n || !parse_list(text, IRQTRACE_BPF_MAX_CPUS, set_cpu, mask, why, sizeof(why)))
		memset(mask, 0xff, IRQTRACE_BPF_MAX_CPUS / 8);
}

/* Resets the programs' grid estimate: a new period starts a new grid. */
static void reset_grid(void)
{
	struct irqtrace_bpf_cpu *values = calloc(nr_cpus, sizeof(*values));
	__u32 zero = 0;
	int cpu;

	if (!values)
		return;
	if (!bpf_map_lookup_elem(bpf_map__fd(skel->maps.cpu_state), &zero, values)) {
		for (cpu = 0; cpu < nr_cpus; cpu++)
			values[cpu].expected = 0;
		bpf_map_update_elem(bpf_map__fd(skel->maps.cpu_state), &zero, values, BPF_ANY);
	}
	free(values);
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

	reset_grid();
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

	for (i = 0; i < ARRAY_SIZE(now.context); i++) {
		bpf_link__destroy(now.context[i]);
		now.context[i] = NULL;
	}
}

/*
 * The context probes, for as long as the loader runs: every method reads
 * them. Exits before entries (an exit without its entry is ignored); a
 * kernel without some of the tracepoints names fewer contexts.
 */
static void attach_context(void)
{
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
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		now.context[i] = bpf_program__attach_raw_tracepoint(probes[i].prog, probes[i].tp);
		if (!now.context[i])
			say("no %s tracepoint (%s): sections in that context are named less well",
			    probes[i].tp, strerror(errno));
	}
}

/* The address of a kernel symbol, from /proc/kallsyms; 0 when absent or hidden. */
static __u64 kernel_symbol(const char *name)
{
	char line[256], sym[128], type;
	unsigned long long addr;
	FILE *f = fopen("/proc/kallsyms", "r");
	__u64 found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx %c %127s", &addr, &type, sym) == 3 && !strcmp(sym, name))
			found = addr;
	fclose(f);
	return found;
}

/* offsetof(struct hrtimer, member) from the kernel's BTF, or fallback without it. */
static __u32 hrtimer_offset(const struct btf *btf, const char *member, __u32 fallback)
{
	const struct btf_member *m;
	const struct btf_type *t;
	int id, i;

	if (!btf)
		return fallback;
	id = btf__find_by_name_kind(btf, "hrtimer", BTF_KIND_STRUCT);
	if (id < 0)
		return fallback;
	t = btf__type_by_id(btf, id);
	m = btf_members(t);
	for (i = 0; i < btf_vlen(t); i++, m++)
		if (!strcmp(btf__name_by_offset(btf, m->name_off), member))
			return btf_member_bit_offset(t, i) / 8;
	return fallback;
}

/* What the context probes need to know of this kernel, before load. */
static void configure_context(void)
{
	struct btf *btf = access("/sys/kernel/btf/vmlinux", R_OK) ? NULL : btf__load_vmlinux_btf();

	if (libbpf_get_error(btf))
		btf = NULL;
	skel->data->cfg.hrtimer_function_off = hrtimer_offset(btf, "function", IRQTRACE_BPF_HRTIMER_FUNCTION_OFF);
	skel->data->cfg.hrtimer_is_hard_off = hrtimer_offset(btf, "is_hard", IRQTRACE_BPF_HRTIMER_IS_HARD_OFF);
	/* The sampled method's perf timer is not a handler of anything. */
	skel->data->cfg.own_timer_fn = kernel_symbol("perf_swevent_hrtimer");
	btf__free(btf);
}

/*
 * Whether the kernel has the preemptirq tracepoints: found once, at start,
 * before anything is attached (probing later would attach a second copy of
 * running programs), with links of its own.
 */
static int exact_supported = -1;

static bool exact_available(void)
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
	if (!strcmp(s->method, "off"))
		return "off";
	return exact_available() ? "exact" : "sampled";
}

/* Makes what is attached match s; on failure, why says what the kernel lacks. */
static int apply(const struct settings *s, char *why, size_t len)
{
	const char *method = resolve_method(s);
	struct irqtrace_bpf_config *cfg = &skel->data->cfg;
	bool want_lines = irq_lines_wanted(s);
	__u32 irq;
	int err;

	cfg->threshold_ns = s->threshold_ns;
	cfg->period_ns = s->period_ns;
	cfg->floor_ns = s->floor_ns;
	cfg->stacks = s->stacks;
	cfg->count_idle = s->idle;
	memcpy(cfg->cpus, s->cpus, sizeof(cfg->cpus));
	cfg->all_cpus = !strcmp(s->cpus_text, "all");
	cfg->irqs_all = s->irqs_all;
	for (irq = 0; irq < IRQTRACE_BPF_MAX_IRQS; irq++) {
		__u8 on = s->irqs[irq];

		bpf_map_update_elem(bpf_map__fd(skel->maps.targets), &irq, &on, BPF_ANY);
	}

	/* A sampled timer runs per CPU at one period: new ones for a change of either. */
	if (strcmp(method, now.irqs_off) ||
	    (!strcmp(method, "sampled") && (s->period_ns != now.sampled_period ||
					    memcmp(s->cpus, now.sampled_cpus, sizeof(s->cpus))))) {
		detach_exact();
		detach_sampled();
		now.irqs_off = "off";
		if (!strcmp(method, "exact"))
			err = attach_exact(why, len);
		else if (!strcmp(method, "sampled"))
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
	return 0;
}

static void describe(const struct settings *s, char *buf, size_t len)
{
	snprintf(buf, len, "method=%s irqs=%s threshold_ns=%llu period_ns=%llu sample_floor_ns=%llu stacks=%d idle=%d cpus=%s",
		 now.irqs_off, s->irqs_text, (unsigned long long)s->threshold_ns,
		 (unsigned long long)s->period_ns, (unsigned long long)s->floor_ns, s->stacks,
		 s->idle, s->cpus_text);
}

/* stdout carries binary items: a failed write ends the run. */
static void write_out(const void *data, size_t size)
{
	if (fwrite(data, 1, size, stdout) != size) {
		say("stdout: %s", strerror(errno));
		exit(EXIT_IO);
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	__u64 buf[IRQTRACE_RECORD_MAX_SIZE / sizeof(__u64)];
	struct irqtrace_record *rec = (void *)buf;
	unsigned int i, nr;
	__u64 site;

	if (size < sizeof(*rec) || size > sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	nr = rec->nr_frames <= IRQTRACE_MAX_FRAMES ? rec->nr_frames : 0;
	/* Frames inside the tracing machinery go: the stack starts at the site. */
	site = rec->kind == IRQTRACE_KIND_IRQ_LINE ? rec->disable_ip : rec->enable_ip;
	for (i = 0; site && i < nr && rec->frames[i] != site; i++)
		;
	if (i < nr) {
		memmove(rec->frames, rec->frames + i, (nr - i) * sizeof(__u64));
		nr -= i;
	}
	if (rec->kind == IRQTRACE_KIND_IRQ_LINE && nr > 1)
		rec->disable_parent_ip = rec->frames[1];
	rec->nr_frames = nr;
	rec->hdr.size = IRQTRACE_RECORD_SIZE(nr);
	write_out(rec, rec->hdr.size);
	records_written++;
	return 0;
}

static __u64 hist_count(const struct irqtrace_bpf_hist_data *h)
{
	__u64 n = 0;
	int i;

	for (i = 0; i < IRQTRACE_HIST_BUCKETS; i++)
		n += h->buckets[i];
	return n;
}

static void fill_hist(struct irqtrace_hist *out, __u8 kind, __u8 method,
		      const struct irqtrace_bpf_hist_data *in)
{
	memset(out, 0, sizeof(*out));
	out->hdr.magic = IRQTRACE_MAGIC_HIST;
	out->hdr.version = IRQTRACE_ABI_VERSION;
	out->hdr.size = sizeof(*out);
	out->kind = kind;
	out->method = method;
	out->backend = IRQTRACE_BACKEND_EBPF;
	out->count = hist_count(in);
	out->sum_ns = in->sum_ns;
	out->max_ns = in->max_ns;
	memcpy(out->buckets, in->buckets, sizeof(out->buckets));
}

/* Counters per CPU, then each CPU's histograms, then each IRQ line's: as the module. */
static int write_stats(void)
{
	struct irqtrace_bpf_hist_data *hists = calloc(nr_cpus * IRQTRACE_BPF_HIST_NR, sizeof(*hists));
	struct irqtrace_bpf_counters *counters = calloc(nr_cpus, sizeof(*counters));
	__u8 method = strcmp(now.irqs_off, "exact") ? IRQTRACE_METHOD_SAMPLED : IRQTRACE_METHOD_EXACT;
	__u8 running_method = strcmp(now.irqs_off, "off") ? method : 0;
	struct irqtrace_bpf_hist_data line;
	struct irqtrace_hist h;
	int cpu, items = 0;
	__u32 key, irq;

	if (!hists || !counters) {
		say("stats: out of memory");
		goto out;
	}
	key = 0;
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &key, counters);
	for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
		bpf_map_lookup_elem(bpf_map__fd(skel->maps.hists), &key, hists + key * nr_cpus);
	for (cpu = 0; cpu < nr_cpus; cpu++) {
		struct irqtrace_counters c = {
			.hdr = { IRQTRACE_MAGIC_COUNTERS, IRQTRACE_ABI_VERSION, sizeof(c) },
			.backend = IRQTRACE_BACKEND_EBPF,
			.irqs_off_method = running_method,
			.running = now.lines ? IRQTRACE_RUNNING_IRQ_LINES : 0,
			.cpu = cpu,
			.recorded = counters[cpu].recorded,
			.dropped_ring = counters[cpu].dropped_ring,
			.idle_excluded = counters[cpu].idle_excluded,
			.samples = counters[cpu].samples,
		};

		for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
			c.seen += hist_count(&hists[key * nr_cpus + cpu]);
		write_out(&c, sizeof(c));
		items++;
	}
	for (cpu = 0; cpu < nr_cpus; cpu++) {
		fill_hist(&h, IRQTRACE_KIND_IRQS_OFF, method, &hists[IRQTRACE_BPF_HIST_IRQS_OFF * nr_cpus + cpu]);
		h.cpu = cpu;
		write_out(&h, sizeof(h));
		items++;
		fill_hist(&h, IRQTRACE_KIND_SOFTIRQS_OFF, IRQTRACE_METHOD_SAMPLED,
			  &hists[IRQTRACE_BPF_HIST_SOFTIRQS_OFF * nr_cpus + cpu]);
		h.cpu = cpu;
		write_out(&h, sizeof(h));
		items++;
	}
	for (irq = 0; irq < IRQTRACE_BPF_MAX_IRQS; irq++) {
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.line_hists), &irq, &line) || !hist_count(&line))
			continue;
		fill_hist(&h, IRQTRACE_KIND_IRQ_LINE, IRQTRACE_METHOD_EXACT, &line);
		h.irq = irq;
		write_out(&h, sizeof(h));
		items++;
	}
	fflush(stdout);
out:
	free(hists);
	free(counters);
	return items;
}

static void clear_stats(void)
{
	void *zeros = calloc(nr_cpus, sizeof(struct irqtrace_bpf_hist_data));
	struct irqtrace_bpf_hist_data line = {};
	__u32 key;

	if (!zeros) {
		say("clear: out of memory");
		return;
	}
	for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.hists), &key, zeros, BPF_ANY);
	key = 0;
	bpf_map_update_elem(bpf_map__fd(skel->maps.counters), &key, zeros, BPF_ANY);
	for (key = 0; key < IRQTRACE_BPF_MAX_IRQS; key++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.line_hists), &key, &line, BPF_ANY);
	free(zeros);
}

static void on_command(struct settings *s, char *line)
{
	char why[256], text[256];
	struct settings next;
	size_t n = strlen(line);

	while (n && isspace((unsigned char)line[n - 1]))
		line[--n] = '\0';
	if (!n)
		return;
	if (!strcmp(line, "stats")) {
		/* The count lets a reader of both pipes know when it has them all. */
		say("ok stats items=%d", write_stats());
		return;
	}
	if (!strcmp(line, "clear")) {
		clear_stats();
		say("ok clear");
		return;
	}
	next = *s;
	if (!parse_setting(&next, line, false, why, sizeof(why))) {
		say("refused: %s", why);
		return;
	}
	if (apply(&next, why, sizeof(why))) {
		say("refused: %s", why);
		/* Back to what ran before, as far as the kernel lets us. */
		apply(s, why, sizeof(why));
		return;
	}
	*s = next;
	describe(s, text, sizeof(text));
	say("ok %s", text);
}

static void settings_default(struct settings *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "auto");
	s->threshold_ns = IRQTRACE_THRESHOLD_NS_DEFAULT;
	s->period_ns = IRQTRACE_PERIOD_NS_DEFAULT;
	s->floor_ns = IRQTRACE_FLOOR_NS_DEFAULT;
	s->stacks = true;
	memset(s->cpus, 0xff, sizeof(s->cpus));
	snprintf(s->cpus_text, sizeof(s->cpus_text), "all");
	snprintf(s->irqs_text, sizeof(s->irqs_text), "none");
	s->ring_bytes = 4 << 20;
}

static int load_programs(const struct settings *s)
{
	int err;

	/* The sysctl exists exactly when the kernel has the bpf() syscall. */
	if (access("/proc/sys/kernel/unprivileged_bpf_disabled", F_OK)) {
		say("this kernel has no BPF (needs CONFIG_BPF_SYSCALL)");
		return EXIT_UNSUPPORTED;
	}

	skel = irqtrace_bpf__open();
	if (!skel) {
		err = -errno;
		say("cannot open the BPF object: %s", strerror(-err));
		return EXIT_UNSUPPORTED;
	}
	bpf_map__set_max_entries(skel->maps.records, s->ring_bytes);
	configure_context();
	err = irqtrace_bpf__load(skel);
	if (!err)
		return 0;
	if (err == -EPERM || err == -EACCES)
		say("cannot load BPF programs: %s (needs root, or CAP_BPF and CAP_PERFMON)", strerror(-err));
	else
		say("the kernel refused the BPF programs: %s (run with -v for the verifier's log)", strerror(-err));
	return exit_code_for(err);
}

int main(int argc, char **argv)
{
	static struct settings s;
	struct signalfd_siginfo si;
	sigset_t stop_signals;
	int sfd;
	struct ring_buffer *rb = NULL;
	char why[256], text[256], line[4096];
	size_t used = 0;
	int i, code, err;

	settings_default(&s);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v")) {
			verbose = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return EXIT_OK;
		} else if (!parse_setting(&s, argv[i], true, why, sizeof(why))) {
			say("%s", why);
			return EXIT_USAGE;
		}
	}
	libbpf_set_print(print_libbpf);
	nr_cpus = libbpf_num_possible_cpus();
	if (nr_cpus <= 0) {
		say("cannot count the CPUs: %s", strerror(-nr_cpus));
		return EXIT_UNSUPPORTED;
	}
	for (i = 0; i < IRQTRACE_BPF_MAX_CPUS; i++)
		now.sampled_fd[i] = -1;
	now.irqs_off = "off";

	/* SIGTERM and SIGINT arrive as readable data in the poll loop. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigprocmask(SIG_BLOCK, &stop_signals, NULL);
	sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
	if (sfd < 0) {
		say("signalfd: %s", strerror(errno));
		return EXIT_IO;
	}
	signal(SIGPIPE, SIG_IGN);

	code = load_programs(&s);
	if (code)
		goto out;
	/* method=auto is decided by this, once, while nothing is attached. */
	exact_available();
	attach_context();
	err = apply(&s, why, sizeof(why));
	if (err) {
		say("%s", why);
		code = exit_code_for(err);
		goto out;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.records), on_record, NULL, NULL);
	if (!rb) {
		say("cannot map the ring buffer: %s", strerror(errno));
		code = EXIT_UNSUPPORTED;
		goto out;
	}
	describe(&s, text, sizeof(text));
	say("tracing: %s", text);

	for (;;) {
		struct pollfd fds[3] = {
			{ .fd = ring_buffer__epoll_fd(rb), .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
		};

		if (poll(fds, 3, 100) < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			code = EXIT_IO;
			break;
		}
		ring_buffer__consume(rb);
		fflush(stdout);
		if ((fds[2].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si))
			break;
		if (fds[1].revents & (POLLIN | POLLHUP)) {
			ssize_t got = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
			char *start, *nl;

			if (got <= 0)
				break;	/* end of stdin: stop */
			used += got;
			line[used] = '\0';
			start = line;
			while ((nl = strchr(start, '\n'))) {
				*nl = '\0';
				on_command(&s, start);
				start = nl + 1;
			}
			used -= start - line;
			memmove(line, start, used);
			if (used == sizeof(line) - 1) {
				say("refused: a line longer than %zu bytes", sizeof(line) - 1);
				used = 0;
			}
		}
	}
	/* Detach first, then drain what the programs wrote until then. */
	detach_exact();
	detach_sampled();
	detach_lines();
	detach_context();
	if (rb)
		ring_buffer__consume(rb);
	fflush(stdout);
	say("stopped: %llu records", (unsigned long long)records_written);
out:
	ring_buffer__free(rb);
	detach_exact();
	detach_sampled();
	detach_lines();
	detach_context();
	irqtrace_bpf__destroy(skel);
	return code;
}
