/* SPDX-License-Identifier: GPL-2.0 */
/*
 * irqtrace-bpf, the eBPF backend's loader: what its parts share.
 */
#ifndef _IRQTRACE_LOADER_H
#define _IRQTRACE_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#include "irqtrace_bpf.h"
#include "irqtrace.skel.h"

#define NAME "irqtrace-bpf"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Exit codes: what failed. */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 2,		/* bad configuration */
	EXIT_UNSUPPORTED = 3,	/* the kernel lacks what a method needs */
	EXIT_PERMISSION = 4,	/* not allowed to load or attach */
	EXIT_IO = 5,		/* stdout closed or broken */
};

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

/* irqtrace-bpf.c */
extern struct irqtrace_bpf *skel;
extern int nr_cpus;
void say(const char *fmt, ...);

/* Why hybrid hooks no lock or scheduler function here (the kernel module does). */
#define HYBRID_NO_LOCKS \
	"a BPF program on a lock function runs the BPF machinery's own locks (its ring buffer's spinlock) inside it: " \
	"the nested calls go unseen, and probes on lock functions have deadlocked (bcc #2300)"

void write_out(const void *data, size_t size);

/* args.c */
void settings_default(struct settings *s);
bool parse_setting(struct settings *s, const char *line, bool at_start, char *why, size_t len);
bool irq_lines_wanted(const struct settings *s);
bool parse_cpu_list(const char *text, __u64 *mask, char *why, size_t len);

/* attach.c */
void attach_init(void);
bool exact_available(void);
int apply(const struct settings *s, char *why, size_t len);
void detach_all(void);
const char *attached_method(void);
bool attached_lines(void);

/* kernel_info.c */
void configure_context(void);

/* stats.c */
int write_stats(void);
void clear_stats(void);

#endif /* _IRQTRACE_LOADER_H */
