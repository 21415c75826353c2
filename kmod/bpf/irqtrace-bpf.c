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
 *
 * args.c        the settings: key=value, parsed and checked
 * attach.c      what is attached, made to match the settings
 * kernel_info.c BTF and kallsyms lookups, before load
 * stats.c       histograms and counters, written and cleared
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loader.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage[] =
"usage: " NAME " [-v] [key=value ...]\n"
"\n"
"Traces how long interrupts stay off with eBPF and writes irqtrace's binary\n"
"items (kmod/include/uapi/irqtrace.h) to stdout.\n"
"\n"
"  method=auto|exact|hybrid|sampled|off\n"
"                                  irqs-off method (auto: exact if the kernel\n"
"                                  has the preemptirq tracepoints, else sampled;\n"
"                                  hybrid: sampled, with each interrupt's section\n"
"                                  timed exactly from its handler's entry)\n"
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

static bool verbose;
struct irqtrace_bpf *skel;
int nr_cpus;
static __u64 records_written;

void say(const char *fmt, ...)
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

static int exit_code_for(int err)
{
	err = err < 0 ? -err : err;
	if (err == EPERM || err == EACCES)
		return EXIT_PERMISSION;
	return EXIT_UNSUPPORTED;
}

static void describe(const struct settings *s, char *buf, size_t len)
{
	snprintf(buf, len, "method=%s irqs=%s threshold_ns=%llu period_ns=%llu sample_floor_ns=%llu stacks=%d idle=%d cpus=%s",
		 attached_method(), s->irqs_text, (unsigned long long)s->threshold_ns,
		 (unsigned long long)s->period_ns, (unsigned long long)s->floor_ns, s->stacks,
		 s->idle, s->cpus_text);
}

/* stdout carries binary items: a failed write ends the run. */
void write_out(const void *data, size_t size)
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
	attach_init();

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
	detach_all();
	if (rb)
		ring_buffer__consume(rb);
	fflush(stdout);
	say("stopped: %llu records", (unsigned long long)records_written);
out:
	ring_buffer__free(rb);
	detach_all();
	irqtrace_bpf__destroy(skel);
	return code;
}
