/* SPDX-License-Identifier: GPL-2.0 */
/*
 * irqtrace eBPF backend: what the BPF programs (irqtrace.bpf.c) and their
 * loader (irqtrace-bpf.c) share besides the uapi record format.
 */
#ifndef _IRQTRACE_BPF_H
#define _IRQTRACE_BPF_H

#include "../include/irqtrace_context.h"
#include "../include/uapi/irqtrace.h"

/* CPUs and IRQ lines the programs can tell apart. */
#define IRQTRACE_BPF_MAX_CPUS		256
#define IRQTRACE_BPF_MAX_IRQS		4096

/* Index of the per-CPU histograms in the hists map. */
enum irqtrace_bpf_hist {
	IRQTRACE_BPF_HIST_IRQS_OFF,
	IRQTRACE_BPF_HIST_SOFTIRQS_OFF,
	IRQTRACE_BPF_HIST_NR,
};

/*
 * Configuration the programs read on every event. It lives in .data, which
 * the loader maps: a change takes effect on the next event, without reload.
 */
struct irqtrace_bpf_config {
	__u64 threshold_ns;
	__u64 period_ns;
	__u64 floor_ns;		/* sampled: lateness below this is not a section */
	__u64 own_timer_fn;	/* perf_swevent_hrtimer: the sampler's own hrtimer */
	/*
	 * The steal clock (KVM guests): the per-CPU offset of struct
	 * kvm_steal_time (the steal_time symbol) and the address of
	 * __per_cpu_offset[], from /proc/kallsyms; 0 when either is absent
	 */
	__u64 steal_time;
	__u64 per_cpu_offset;
	/*
	 * hybrid: the per-CPU offsets of __preempt_count and of
	 * irq_stat.__softirq_pending (x86), to tell the softirqs irq_exit
	 * runs from local_bh_enable()'s; 0 when absent (newer kernels keep
	 * them in pcpu_hot): then a softirq within the floor of an
	 * interrupt's exit ends its section whoever runs it
	 */
	__u64 preempt_count;
	__u64 softirq_pending;
/* struct kvm_steal_time's steal (u64) and version (u32): the uapi layout, <asm/kvm_para.h> */
#define IRQTRACE_BPF_STEAL_OFF		0
#define IRQTRACE_BPF_STEAL_VERSION_OFF	8
	__u32 hrtimer_function_off;	/* offsetof(struct hrtimer, function) */
	__u32 hrtimer_is_hard_off;	/* offsetof(struct hrtimer, is_hard) */
	__u32 stacks;		/* capture kernel stacks in records */
	__u32 count_idle;	/* measure the idle task's sections too */
	__u32 irqs_all;		/* irq-line: every IRQ, else the targets map */
	__u32 all_cpus;		/* every CPU: no need to look at cpus */
	__u32 context_all_cpus;	/* irq lines watched: the context probes serve every CPU */
	__u32 hybrid;		/* sampled runs as hybrid: interrupts timed from their entry */
	/*
	 * Bumped by the loader when it attaches probes anew: each CPU then
	 * starts its state afresh on its next event (irqtrace_bpf_cpu.epoch),
	 * itself, with no write from the loader to race its programs. What a
	 * detach cut in two (an entry whose exit came while detached, a section
	 * whose enable did) would otherwise name or time sections after it.
	 */
	__u64 epoch;
	__u64 cpus[IRQTRACE_BPF_MAX_CPUS / 64];	/* bitmap of CPUs measured */
};

struct irqtrace_bpf_hist_data {
	__u64 sum_ns;
	__u64 max_ns;
	__u64 buckets[IRQTRACE_HIST_BUCKETS];
};

struct irqtrace_bpf_counters {
	__u64 recorded;
	__u64 dropped_ring;
	__u64 idle_excluded;
	__u64 samples;
};

/*
 * struct hrtimer's layout where the kernel has no BTF to ask (the loader
 * asks /sys/kernel/btf/vmlinux when it exists): unchanged since Linux 5.4.
 */
#define IRQTRACE_BPF_HRTIMER_FUNCTION_OFF	40
#define IRQTRACE_BPF_HRTIMER_IS_HARD_OFF	59

/*
 * hybrid: the last outermost interrupt, its handler done but its section's
 * end not seen yet (interrupts come back on in irq_exit's softirqs or at the
 * return, after the exit tracepoint); start == 0 when none. The record is
 * written later, maybe in another context: the task and stack are kept.
 */
struct irqtrace_bpf_intr_done {
	__u64 start;		/* at the entry */
	__u64 exit;		/* at the exit tracepoint: the end if nothing says later */
	__u64 self;		/* the sampler's own callback time in it */
	__u64 own_after_exit;	/* these probes' own time at the exit, after it */
	__u64 gen;		/* irq_gen at the exit */
	__u64 pid_tgid;		/* the interrupted task */
	__u64 cgroup_id;
	char comm[IRQTRACE_COMM_LEN];
	struct irqtrace_where where;
	__u32 softirqs_next;	/* irq_exit will run softirqs ... */
	__u32 softirq_count;	/* ... with this preempt count */
	/* the stack at the exit (irqtrace_bpf_cpu.intr_frames), if over the threshold by then */
	__u32 nr_frames;
	__u32 pad;
};

/* Per-CPU state of the exact and sampled methods and of the context probes. */
struct irqtrace_bpf_cpu {
	__u64 off_ts;		/* exact: open section's start, 0 when none */
	__u64 off_ip;
	__u64 off_parent_ip;
	__u64 off_pid_tgid;	/* exact: the task that opened the section */
	struct irqtrace_where off_where;	/* exact: where it began, or its longest handler */
	__u64 off_where_ns;
	__u64 expected;		/* sampled: next expiry of the perf timer's grid */
	__u64 seq;		/* records emitted on this CPU */
	__u64 epoch;		/* the cfg.epoch this state is of */
	struct irqtrace_handler hard_now;
	struct irqtrace_handler vec_now;	/* the x86 system vector running now */
	__u64 vec_inner;	/* a hard handler (or the sampler's timer) ran inside vec_now */
	/*
	 * sampled: the longest hard handler done since the last sample. Not
	 * the last one: a short timer (the tick) that ran after a long one and
	 * before the late sample would take the sample's section for itself.
	 */
	struct irqtrace_handler hard_held;
	struct irqtrace_handler soft_now;
	/* sampled: the longest softirq done since the last sample */
	struct irqtrace_handler soft_held;
	/* sampled: the steal clock at the last sample, once one was taken */
	__u64 steal_at_sample;
	__u64 steal_known;
	/* hybrid: outermost interrupts entered; a section's probes compare it */
	__u64 irq_gen;
	/* hybrid: the outermost interrupt open now: its entry, 0 when none */
	__u64 intr_start;
	__u64 intr_self;	/* the sampler's own callback time in it */
	__u64 own_timer_start;	/* the sampler's callback's entry */
	struct irqtrace_where intr_where;	/* its longest inner handler */
	__u64 intr_where_ns;
	__u64 intr_is_vector;	/* it is an x86 system vector (else a device IRQ's handler) */
	struct irqtrace_bpf_intr_done intr_done;
	struct irqtrace_hooked hooked[IRQTRACE_HOOKED_RECENT];
	__u64 hooked_next;
	/* Last, and not cleared with the rest at a new epoch: intr_done's stack. */
	__u64 intr_frames[IRQTRACE_MAX_FRAMES];
};

/* One IRQ line's state: depth and the task and stack that took it 0 -> 1. */
struct irqtrace_bpf_line {
	__u64 depth;
	__u64 start_ns;
	__u64 pid_tgid;
	__u64 cgroup_id;
	__u64 disable_ip;
	__u32 cpu;
	__u32 nr_frames;
	char comm[IRQTRACE_COMM_LEN];
	struct irqtrace_where where;	/* where the disabling call was made */
	__u64 frames[IRQTRACE_MAX_FRAMES];
};

#endif /* _IRQTRACE_BPF_H */
