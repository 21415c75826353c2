/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * irqtrace binary format, shared by the kernel module (/dev/irqtrace), the
 * eBPF loader (its stdout) and the node agent (agent/src/records/layout.ts).
 *
 * A stream is a sequence of items. Every item starts with the same 8-byte
 * preamble (struct irqtrace_preamble): a magic that says what the item is,
 * the ABI version, and the item's total size in bytes, so a reader can skip
 * item types it does not know and detect a torn or foreign stream at once.
 *
 *   IRQTRACE_MAGIC_RECORD    one section at or above the threshold:
 *                            struct irqtrace_record followed by nr_frames
 *                            __u64 kernel addresses (innermost first)
 *   IRQTRACE_MAGIC_HIST      one per-CPU log2 histogram of all sections
 *                            (one entry per section, of its measured length)
 *   IRQTRACE_MAGIC_COUNTERS  per-CPU counters (seen, recorded, dropped, ...)
 *
 * All fields are little-endian (the format is only produced on the machine
 * that reads it, and irqtrace supports little-endian architectures only),
 * naturally aligned, and every struct size is a multiple of 8. Times are ns
 * of CLOCK_MONOTONIC (local_clock() is not used for start_ns because it is
 * not comparable across CPUs or with user space).
 *
 * Compatibility: fields are only ever appended before the frames, and the
 * version is bumped when that happens, or when a field may hold a value that
 * readers of the version before refuse (4: IRQTRACE_EDGE_SCHEDULE); readers
 * use hdr.size to find the end of an item and the version to know which
 * fields exist.
 */
#ifndef _UAPI_IRQTRACE_H
#define _UAPI_IRQTRACE_H

#include <linux/types.h>

#define IRQTRACE_ABI_VERSION		4

/* Item magics: ASCII "IRQr", "IRQh", "IRQc" read as little-endian __u32. */
#define IRQTRACE_MAGIC_RECORD		0x72515249
#define IRQTRACE_MAGIC_HIST		0x68515249
#define IRQTRACE_MAGIC_COUNTERS		0x63515249

/*
 * Configuration bounds and defaults, in ns: the one source for the module's
 * parameters, the eBPF loader's settings, the agent, the CLI and the IrqTrace
 * API (proto/build.mjs derives their TypeScript from these lines, so keep
 * each a plain decimal). A sampled section is sure to be recorded once it
 * is threshold + period long, so the defaults are one period.
 */
#define IRQTRACE_THRESHOLD_NS_MIN	1000		/* 1 us */
#define IRQTRACE_THRESHOLD_NS_MAX	60000000000	/* 60 s */
#define IRQTRACE_THRESHOLD_NS_DEFAULT	1000000		/* 1 ms */
#define IRQTRACE_PERIOD_NS_MIN		100000		/* 100 us */
#define IRQTRACE_PERIOD_NS_MAX		1000000000	/* 1 s */
#define IRQTRACE_PERIOD_NS_DEFAULT	1000000		/* 1 ms */
/*
 * The sampled method's floor: a sample later than its timer's expiry by less
 * than this is the timer interrupt's own latency, not a section (counted in
 * irqtrace_counters.samples only); one this late or later is one section, of
 * that length, in the histograms.
 */
#define IRQTRACE_FLOOR_NS_MIN		0
#define IRQTRACE_FLOOR_NS_MAX		1000000		/* 1 ms */
#define IRQTRACE_FLOOR_NS_DEFAULT	10000		/* 10 us */

#define IRQTRACE_COMM_LEN		16
#define IRQTRACE_MAX_FRAMES		32
/* Bucket i holds durations in [2^i, 2^(i+1)) ns; bucket 0 also holds 0. */
#define IRQTRACE_HIST_BUCKETS		64

/* What was disabled. */
enum irqtrace_kind {
	IRQTRACE_KIND_IRQS_OFF		= 1,	/* local irqs off on a CPU */
	IRQTRACE_KIND_SOFTIRQS_OFF	= 2,	/* local_bh_disable on a CPU */
	IRQTRACE_KIND_IRQ_LINE		= 3,	/* disable_irq..enable_irq */
};

/* How it was measured. */
enum irqtrace_method {
	IRQTRACE_METHOD_EXACT		= 1,	/* every transition seen */
	IRQTRACE_METHOD_SAMPLED		= 2,	/* late timer; see error_ns */
	/*
	 * stock kernels: each end exact where it is hookable (an irq-saving
	 * lock function, an interrupt handler's entry or exit, the sampler's
	 * late interrupt for the end), else sampled; start_by, end_by and
	 * IRQTRACE_F_START_EXACT/END_EXACT say which, per record
	 */
	IRQTRACE_METHOD_HYBRID		= 3,
};

/* What timed one end of a section (irqtrace_record.start_by, .end_by). */
enum irqtrace_edge {
	IRQTRACE_EDGE_NONE		= 0,	/* not said (IRQ lines) */
	IRQTRACE_EDGE_TRACEPOINT	= 1,	/* irq_disable/irq_enable: exact */
	IRQTRACE_EDGE_LOCK		= 2,	/* an irq-saving lock function: exact */
	/*
	 * an interrupt's own path: its handler's entry, or where its exit
	 * turned interrupts back on (the softirqs irq_exit ran; else the
	 * handler's exit tracepoint, short by the exit code's cost)
	 */
	IRQTRACE_EDGE_HANDLER		= 3,
	/*
	 * the sampler's timer: at the start, its expiry (the section began
	 * up to error_ns before); at the end, its late interrupt, which came
	 * as interrupts came back on: exact
	 */
	IRQTRACE_EDGE_SAMPLE		= 4,
	/*
	 * the scheduler's own section: at the start, the first call
	 * __schedule() makes after turning interrupts off; at the end, the
	 * entry of finish_task_switch(), in the task switched to, just before
	 * it turns them on: exact within those few instructions
	 */
	IRQTRACE_EDGE_SCHEDULE		= 5,
};

/* Which kernel side wrote the item. */
enum irqtrace_backend {
	IRQTRACE_BACKEND_KMOD		= 1,
	IRQTRACE_BACKEND_EBPF		= 2,
};

/*
 * Where a section ran (irqtrace_record.context). A section of interrupt
 * context belongs to its handler, not to the task it interrupted (whose
 * pid/comm the record still carries), and is never excluded as idle.
 */
enum irqtrace_context {
	IRQTRACE_CONTEXT_TASK		= 0,	/* a task, in process context */
	IRQTRACE_CONTEXT_HARDIRQ	= 1,	/* a device IRQ's handler: context_nr */
	IRQTRACE_CONTEXT_TIMER		= 2,	/* an hrtimer callback in hard irq context */
	IRQTRACE_CONTEXT_SOFTIRQ	= 3,	/* a softirq: context_nr is its vector */
	IRQTRACE_CONTEXT_NMI		= 4,	/* an NMI (no method sees into one) */
	/*
	 * an x86 system vector's handler, outside any handler above: the
	 * local timer, an IPI (smp_call_function, reschedule), irq_work, the
	 * APIC's own; context_nr is the vector (LOCAL_TIMER_VECTOR 0xec, ...)
	 */
	IRQTRACE_CONTEXT_VECTOR		= 5,
};

/* irqtrace_record.flags */
#define IRQTRACE_F_STACK_TRUNCATED	0x01	/* more than nr_frames frames */
#define IRQTRACE_F_ENABLER_VALID	0x02	/* enable_* task fields are set */
#define IRQTRACE_F_SITES_VALID		0x04	/* disable/enable ips are set */
#define IRQTRACE_F_START_EXACT		0x08	/* start_ns is exact, not a bound */
#define IRQTRACE_F_END_EXACT		0x10	/* start_ns + duration_ns is exact */
/*
 * Sampled: the vCPU's steal clock ran for at least half of the section: the
 * host had descheduled it, the task and handler named did not hold it
 */
#define IRQTRACE_F_HYPERVISOR		0x20

/* irqtrace_counters.running: what runs besides the irqs-off method */
#define IRQTRACE_RUNNING_SOFTIRQS	0x01	/* softirqs-off, sampled */
#define IRQTRACE_RUNNING_IRQ_LINES	0x02	/* IRQ lines, exact */

struct irqtrace_preamble {
	__u32 magic;		/* IRQTRACE_MAGIC_* */
	__u16 version;		/* IRQTRACE_ABI_VERSION of the writer */
	__u16 size;		/* bytes of the whole item, preamble included */
};

/*
 * One section. For IRQTRACE_KIND_IRQ_LINE, cpu/pid/tgid/comm describe the
 * task that took the line's depth from 0 to 1 and the enable_* fields the one
 * that brought it back to 0 (possibly on another CPU). For the other kinds the
 * enable_* task is the same task and IRQTRACE_F_ENABLER_VALID is clear.
 */
struct irqtrace_record {
	struct irqtrace_preamble hdr;	/*   0: magic RECORD */
	__u8  kind;			/*   8: enum irqtrace_kind */
	__u8  method;			/*   9: enum irqtrace_method */
	__u8  backend;			/*  10: enum irqtrace_backend */
	__u8  flags;			/*  11: IRQTRACE_F_* */
	__u16 cpu;			/*  12: CPU the section started on */
	__u16 nr_frames;		/*  14: __u64 frames after the struct */
	__u32 irq;			/*  16: IRQ number (KIND_IRQ_LINE), else 0 */
	__u32 enable_cpu;		/*  20: CPU that ended the section */
	__u64 seq;			/*  24: per-CPU record sequence, from 1 */
	__u64 start_ns;			/*  32: CLOCK_MONOTONIC at the start */
	__u64 duration_ns;		/*  40: length of the section */
	__u64 error_ns;			/*  48: max error (METHOD_SAMPLED), else 0 */
	__u64 cgroup_id;		/*  56: cgroup v2 id of the task, or 0 */
	__u32 pid;			/*  64: task (thread) id */
	__u32 tgid;			/*  68: thread-group id */
	char  comm[IRQTRACE_COMM_LEN];	/*  72: NUL-padded */
	__u32 enable_pid;		/*  88 */
	__u32 enable_tgid;		/*  92 */
	char  enable_comm[IRQTRACE_COMM_LEN];	/*  96 */
	__u64 disable_ip;		/* 112: where the section began */
	__u64 disable_parent_ip;	/* 120: its caller */
	__u64 enable_ip;		/* 128: where the section ended */
	__u64 enable_parent_ip;		/* 136: its caller */
	__u8  context;			/* 144: enum irqtrace_context */
	__u8  start_by;			/* 145: enum irqtrace_edge */
	__u8  end_by;			/* 146: enum irqtrace_edge */
	__u8  reserved;			/* 147: 0 */
	__u32 context_nr;		/* 148: IRQ (HARDIRQ), vector (SOFTIRQ), else 0 */
	__u64 context_fn;		/* 152: the handler or callback, when known, else 0 */
	__u64 lock;			/* 160: EDGE_LOCK start: the lock's address, else 0 */
	__u64 frames[];			/* 168: kernel stack, innermost first */
};

/*
 * One histogram of every section of one kind, cumulative since clear: per CPU
 * for IRQS_OFF and SOFTIRQS_OFF, per IRQ number for IRQ_LINE.
 */
struct irqtrace_hist {
	struct irqtrace_preamble hdr;	/*   0: magic HIST */
	__u8  kind;			/*   8: enum irqtrace_kind */
	__u8  method;			/*   9: enum irqtrace_method */
	__u8  backend;			/*  10: enum irqtrace_backend */
	__u8  reserved;			/*  11: 0 */
	__u32 cpu;			/*  12: CPU, or 0 for IRQ_LINE */
	__u32 irq;			/*  16: IRQ number for IRQ_LINE, else 0 */
	__u32 reserved2;		/*  20: 0 */
	__u64 count;			/*  24: sections counted */
	__u64 sum_ns;			/*  32: their total length */
	__u64 max_ns;			/*  40: the longest */
	__u64 buckets[IRQTRACE_HIST_BUCKETS];	/*  48 */
};

/*
 * One CPU's counters, cumulative since clear, and what runs now (the same in
 * every CPU's item).
 */
struct irqtrace_counters {
	struct irqtrace_preamble hdr;	/*   0: magic COUNTERS */
	__u8  backend;			/*   8: enum irqtrace_backend */
	__u8  irqs_off_method;		/*   9: enum irqtrace_method running, 0: off */
	__u8  running;			/*  10: IRQTRACE_RUNNING_* */
	__u8  reserved;			/*  11: 0 */
	__u32 cpu;			/*  12 */
	__u64 seen;			/*  16: irqs-off + softirqs-off sections
					 * measured (IRQ-line ones: per-IRQ hists)
					 */
	__u64 recorded;			/*  24: sections written as records */
	__u64 dropped_ring;		/*  32: records lost: ring full */
	__u64 dropped_guard;		/*  40: probe re-entered, not measured */
	__u64 idle_excluded;		/*  48: sections in the idle task */
	__u64 nmi_skipped;		/*  56: probe hits in NMI context */
	__u64 samples;			/*  64: sampled: timer expiries, late or not */
};

#define IRQTRACE_RECORD_SIZE(nr_frames) \
	(sizeof(struct irqtrace_record) + (nr_frames) * sizeof(__u64))
#define IRQTRACE_RECORD_MAX_SIZE IRQTRACE_RECORD_SIZE(IRQTRACE_MAX_FRAMES)

#endif /* _UAPI_IRQTRACE_H */
