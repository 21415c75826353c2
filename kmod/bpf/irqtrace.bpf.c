// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace eBPF backend: the kernel module's measurements as BPF programs.
 *
 *   irq_disable, irq_enable   exact irqs-off sections, raw tracepoints on
 *                             preemptirq:irq_disable/irq_enable
 *   sample                    sampled irqs-off: a perf cpu-clock event per
 *                             CPU, whose lateness over its grid is the length
 *                             of the section that held it back
 *   disable_line, enable_line IRQ-line masking, kprobes on disable_irq*,
 *                             enable_irq, with the depth per IRQ in a map
 *   hard_*, soft_*, timer_*,  the interrupt context a section ran in: raw
 *   vec_*                     tracepoints on irq_handler_entry/exit,
 *                             softirq_entry/exit, hrtimer_expire_entry/exit
 *                             and x86's irq_vectors <vector>_entry/exit
 *                             (as kmod/context.c, by the rules of
 *                             include/irqtrace_context.h: a section of a
 *                             handler is the handler's, and one on an idle
 *                             CPU is not the idle loop's); attached while a
 *                             method or irq lines run
 *
 * No CO-RE and no kernel BTF: everything comes from helpers and from the
 * programs' own arguments, so the programs load on kernels built without
 * DEBUG_INFO_BTF. Records go through one BPF ring buffer, in the uapi layout,
 * with up to IRQTRACE_MAX_FRAMES frames; the loader trims each stack to start
 * at the section's site and writes the record with its real size.
 *
 * Time: bpf_ktime_get_ns(), CLOCK_MONOTONIC (ktime_get_mono_fast_ns), the
 * only clock BPF has; it serves for start times and durations alike.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "irqtrace_bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct irqtrace_bpf_config cfg = {
	.threshold_ns = IRQTRACE_THRESHOLD_NS_DEFAULT,
	.period_ns = IRQTRACE_PERIOD_NS_DEFAULT,
	.floor_ns = IRQTRACE_FLOOR_NS_DEFAULT,
	.hrtimer_function_off = IRQTRACE_BPF_HRTIMER_FUNCTION_OFF,
	.hrtimer_is_hard_off = IRQTRACE_BPF_HRTIMER_IS_HARD_OFF,
	.stacks = 1,
	.all_cpus = 1,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irqtrace_bpf_cpu);
} cpu_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IRQTRACE_BPF_HIST_NR);
	__type(key, __u32);
	__type(value, struct irqtrace_bpf_hist_data);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irqtrace_bpf_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IRQTRACE_BPF_MAX_IRQS);
	__type(key, __u32);
	__type(value, struct irqtrace_bpf_line);
} lines SEC(".maps");

/* Apart from lines, so that clearing them cannot disturb a depth. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IRQTRACE_BPF_MAX_IRQS);
	__type(key, __u32);
	__type(value, struct irqtrace_bpf_hist_data);
} line_hists SEC(".maps");

/* irq-line targets when cfg.irqs_all is 0: non-zero for a traced IRQ. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IRQTRACE_BPF_MAX_IRQS);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

/* Size set by the loader before load (ring_bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} records SEC(".maps");

static __always_inline __u64 log2_u32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/* Bucket i holds [2^i, 2^(i+1)) ns; 0 goes to bucket 0, as in the module. */
static __always_inline __u32 bucket_of(__u64 ns)
{
	__u32 hi = ns >> 32;

	return (hi ? log2_u32(hi) + 32 : log2_u32(ns)) & (IRQTRACE_HIST_BUCKETS - 1);
}

/* A per-CPU histogram, updated with interrupts off: plain arithmetic. */
static __always_inline void hist_add(__u32 id, __u64 ns)
{
	struct irqtrace_bpf_hist_data *h = bpf_map_lookup_elem(&hists, &id);

	if (!h)
		return;
	h->buckets[bucket_of(ns)]++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

/* A histogram several CPUs may update at once (irq-line). */
static __always_inline void hist_add_atomic(struct irqtrace_bpf_hist_data *h, __u64 ns)
{
	__u64 max = h->max_ns;

	__sync_fetch_and_add(&h->buckets[bucket_of(ns)], 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	if (ns > max)
		__sync_val_compare_and_swap(&h->max_ns, max, ns);
}

static __always_inline struct irqtrace_bpf_counters *my_counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/* This CPU's state; of an earlier attach (cfg.epoch), started afresh: the records' seq goes on. */
static __always_inline struct irqtrace_bpf_cpu *my_state(void)
{
	struct irqtrace_bpf_cpu *c;
	__u32 zero = 0;
	__u64 seq;

	c = bpf_map_lookup_elem(&cpu_state, &zero);
	if (c && c->epoch != cfg.epoch) {
		seq = c->seq;
		__builtin_memset(c, 0, sizeof(*c));
		c->seq = seq;
		c->epoch = cfg.epoch;
	}
	return c;
}

static __always_inline bool cpu_wanted(__u32 cpu)
{
	if (cpu >= IRQTRACE_BPF_MAX_CPUS)
		return false;
	return cfg.cpus[cpu / 64] & (1ULL << (cpu % 64));
}

static __always_inline bool line_wanted(__u32 irq)
{
	__u8 *on;

	if (irq >= IRQTRACE_BPF_MAX_IRQS)
		return false;
	if (cfg.irqs_all)
		return true;
	on = bpf_map_lookup_elem(&targets, &irq);
	return on && *on;
}

/*
 * A record, reserved at its largest: the loader writes only nr_frames of the
 * frames. A full ring drops the record and counts it. Its header, kind,
 * method, this CPU's next seq, and this CPU as where it started and ended
 * (irq-line sets where it started) are filled here.
 */
static __always_inline struct irqtrace_record *reserve(struct irqtrace_bpf_counters *n,
						       struct irqtrace_bpf_cpu *c,
						       __u8 kind, __u8 method)
{
	struct irqtrace_record *rec;
	__u32 cpu;

	rec = bpf_ringbuf_reserve(&records, IRQTRACE_RECORD_MAX_SIZE, 0);
	if (!rec) {
		__sync_fetch_and_add(&n->dropped_ring, 1);
		return NULL;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->hdr.magic = IRQTRACE_MAGIC_RECORD;
	rec->hdr.version = IRQTRACE_ABI_VERSION;
	rec->backend = IRQTRACE_BACKEND_EBPF;
	rec->kind = kind;
	rec->method = method;
	rec->seq = __sync_fetch_and_add(&c->seq, 1) + 1;
	cpu = bpf_get_smp_processor_id();
	rec->cpu = cpu;
	rec->enable_cpu = cpu;
	return rec;
}

static __always_inline void submit(struct irqtrace_record *rec, struct irqtrace_bpf_counters *n)
{
	rec->hdr.size = IRQTRACE_RECORD_SIZE(rec->nr_frames);
	bpf_ringbuf_submit(rec, 0);
	__sync_fetch_and_add(&n->recorded, 1);
}

/* Stack of the context ctx describes, innermost first. */
static __always_inline void capture_stack(void *ctx, struct irqtrace_record *rec)
{
	long bytes;

	if (!cfg.stacks)
		return;
	bytes = bpf_get_stack(ctx, rec->frames, IRQTRACE_MAX_FRAMES * sizeof(__u64), 0);
	if (bytes > 0)
		rec->nr_frames = bytes / sizeof(__u64);
	if (rec->nr_frames == IRQTRACE_MAX_FRAMES)
		rec->flags |= IRQTRACE_F_STACK_TRUNCATED;
}

static __always_inline void set_where(struct irqtrace_record *rec, const struct irqtrace_where *w)
{
	rec->context = w->context;
	rec->context_nr = w->nr;
	rec->context_fn = w->fn;
}

static __always_inline void context_now(const struct irqtrace_bpf_cpu *c, struct irqtrace_where *w)
{
	irqtrace_where_now(&c->hard_now, &c->vec_now, &c->soft_now, w);
}

/*
 * This CPU's state if the context probes serve a method on it: the methods
 * run on the CPUs of cpus, the irq lines on every CPU. Raw tracepoints are
 * global; elsewhere the probes end here.
 */
static __always_inline struct irqtrace_bpf_cpu *context_state(void)
{
	if (!cfg.all_cpus && !cfg.context_all_cpus && !cpu_wanted(bpf_get_smp_processor_id()))
		return NULL;
	return my_state();
}

static __always_inline void hard_entered(__u32 context, __u32 nr, __u64 fn)
{
	struct irqtrace_bpf_cpu *c = context_state();

	if (!c)
		return;
	c->vec_inner = 1;
	c->hard_now.where.context = context;
	c->hard_now.where.nr = nr;
	c->hard_now.where.fn = fn;
	c->hard_now.start = bpf_ktime_get_ns();
	c->hard_now.end = 0;
}

static __always_inline void hard_done(void)
{
	struct irqtrace_bpf_cpu *c = context_state();
	__u64 now = bpf_ktime_get_ns();

	if (!c || !c->hard_now.where.context)
		return;
	c->hard_now.end = now;
	irqtrace_hold_longest(&c->hard_held, &c->hard_now);
	irqtrace_section_handler(c->off_ts, &c->hard_now, now, &c->off_where, &c->off_where_ns);
	c->hard_now.where.context = IRQTRACE_CONTEXT_TASK;
}

SEC("raw_tp")
int hard_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 handler = 0;

	/* struct irqaction's first member is its handler. */
	bpf_probe_read_kernel(&handler, sizeof(handler), (void *)ctx->args[1]);
	hard_entered(IRQTRACE_CONTEXT_HARDIRQ, (__u32)ctx->args[0], handler);
	return 0;
}

SEC("raw_tp")
int hard_exit(struct bpf_raw_tracepoint_args *ctx)
{
	hard_done();
	return 0;
}

/* A hard-mode hrtimer's callback function, else 0. */
static __always_inline __u64 hard_timer_fn(void *timer)
{
	__u64 fn = 0;
	__u8 hard = 0;

	bpf_probe_read_kernel(&hard, sizeof(hard), timer + (cfg.hrtimer_is_hard_off & 0xfff));
	if (!hard)
		return 0;
	bpf_probe_read_kernel(&fn, sizeof(fn), timer + (cfg.hrtimer_function_off & 0xfff));
	return fn;
}

/* A hard-mode hrtimer other than the sampler's own perf timer: its callback function, else 0. */
static __always_inline __u64 foreign_hard_timer(void *timer)
{
	__u64 fn = hard_timer_fn(timer);

	return fn == cfg.own_timer_fn ? 0 : fn;
}

SEC("raw_tp")
int timer_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 fn = hard_timer_fn((void *)ctx->args[0]);
	struct irqtrace_bpf_cpu *c;

	if (fn && fn != cfg.own_timer_fn) {
		hard_entered(IRQTRACE_CONTEXT_TIMER, 0, fn);
	} else if (fn) {
		/* The sampler's own timer: no handler, and the vector that runs it is none either. */
		c = context_state();
		if (c)
			c->vec_inner = 1;
	}
	return 0;
}

SEC("raw_tp")
int timer_exit(struct bpf_raw_tracepoint_args *ctx)
{
	if (foreign_hard_timer((void *)ctx->args[0]))
		hard_done();
	return 0;
}

/* An x86 system vector's handler (local timer, IPI, irq_work...): its context until a hard handler runs inside. */
SEC("raw_tp")
int vec_entry(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();

	if (!c)
		return 0;
	c->vec_inner = 0;
	c->vec_now.where.context = IRQTRACE_CONTEXT_VECTOR;
	c->vec_now.where.nr = (__u32)ctx->args[0];
	c->vec_now.where.fn = 0;
	c->vec_now.start = bpf_ktime_get_ns();
	c->vec_now.end = 0;
	return 0;
}

SEC("raw_tp")
int vec_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();

	if (!c || !c->vec_now.where.context)
		return 0;
	irqtrace_vector_done(&c->vec_now, bpf_ktime_get_ns(), c->vec_inner, &c->hard_held, 1,
			     c->off_ts, &c->off_where, &c->off_where_ns);
	return 0;
}

SEC("raw_tp")
int soft_entry(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();

	if (!c)
		return 0;
	c->soft_now.where.context = IRQTRACE_CONTEXT_SOFTIRQ;
	c->soft_now.where.nr = (__u32)ctx->args[0];
	c->soft_now.where.fn = 0;
	c->soft_now.start = bpf_ktime_get_ns();
	c->soft_now.end = 0;
	return 0;
}

SEC("raw_tp")
int soft_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();

	if (!c || !c->soft_now.where.context)
		return 0;
	c->soft_now.end = bpf_ktime_get_ns();
	irqtrace_hold_longest(&c->soft_held, &c->soft_now);
	c->soft_now.where.context = IRQTRACE_CONTEXT_TASK;
	return 0;
}

static __always_inline void fill_current(struct irqtrace_record *rec)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	rec->pid = (__u32)pid_tgid;
	rec->tgid = pid_tgid >> 32;
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	rec->cgroup_id = bpf_get_current_cgroup_id();
}

/*
 * exact. trace_hardirqs_off() fires irq_disable only on the transition to
 * off and trace_hardirqs_on() fires irq_enable just before the transition
 * back; neither fires in NMI context. Both run with interrupts off.
 */
SEC("raw_tp")
int irq_disable(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = my_state();

	if (!c || (!cfg.all_cpus && !cpu_wanted(bpf_get_smp_processor_id())))
		return 0;
	c->off_ip = ctx->args[0];
	c->off_parent_ip = ctx->args[1];
	c->off_pid_tgid = bpf_get_current_pid_tgid();
	context_now(c, &c->off_where);
	c->off_where_ns = 0;
	/* Last: the start as close to the caller's as the program can get. */
	c->off_ts = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp")
int irq_enable(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct irqtrace_bpf_counters *n;
	struct irqtrace_bpf_cpu *c = my_state();
	struct irqtrace_record *rec;
	__u64 start, delta;

	if (!c)
		return 0;
	start = c->off_ts;
	/* No open section: it began before the programs were attached. */
	if (!start)
		return 0;
	c->off_ts = 0;
	/* The idle loop (pid 0 on every CPU); a handler that ran on an idle CPU is measured. */
	if ((__u32)c->off_pid_tgid == 0 && !c->off_where.context && !cfg.count_idle) {
		n = my_counters();
		if (n)
			n->idle_excluded++;
		return 0;
	}
	delta = now - start;
	hist_add(IRQTRACE_BPF_HIST_IRQS_OFF, delta);
	if (delta < cfg.threshold_ns)
		return 0;

	n = my_counters();
	if (!n)
		return 0;
	rec = reserve(n, c, IRQTRACE_KIND_IRQS_OFF, IRQTRACE_METHOD_EXACT);
	if (!rec)
		return 0;
	rec->flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT;
	rec->start_by = IRQTRACE_EDGE_TRACEPOINT;
	rec->end_by = IRQTRACE_EDGE_TRACEPOINT;
	rec->start_ns = start;
	rec->duration_ns = delta;
	rec->disable_ip = c->off_ip;
	rec->disable_parent_ip = c->off_parent_ip;
	rec->enable_ip = ctx->args[0];
	rec->enable_parent_ip = ctx->args[1];
	set_where(rec, &c->off_where);
	fill_current(rec);
	/*
	 * Another pid closes it: the section spanned a context switch
	 * (__schedule keeps interrupts off across it). The opener is known by
	 * pid only; the closer is current.
	 */
	if (rec->pid != (__u32)c->off_pid_tgid) {
		rec->enable_pid = rec->pid;
		rec->enable_tgid = rec->tgid;
		__builtin_memcpy(rec->enable_comm, rec->comm, sizeof(rec->comm));
		rec->flags |= IRQTRACE_F_ENABLER_VALID;
		rec->pid = (__u32)c->off_pid_tgid;
		rec->tgid = c->off_pid_tgid >> 32;
		__builtin_memset(rec->comm, 0, sizeof(rec->comm));
	}
	capture_stack(ctx, rec);
	submit(rec, n);
	return 0;
}

/*
 * This CPU's steal clock, ns, read as kvm_steal_clock() does (the host makes
 * version odd while it writes; two tries): false without one, or unread.
 */
static __always_inline bool steal_clock(__u64 *steal)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 base, src;
	__u32 v0, v1;
	int i;

	if (!cfg.steal_time || !cfg.per_cpu_offset || cpu >= IRQTRACE_BPF_MAX_CPUS)
		return false;
	/* __per_cpu_offset[cpu]: this CPU's per-CPU base. */
	if (bpf_probe_read_kernel(&base, sizeof(base),
				  (void *)(cfg.per_cpu_offset + cpu * sizeof(__u64))))
		return false;
	src = base + cfg.steal_time;
#pragma unroll
	for (i = 0; i < 2; i++) {
		if (bpf_probe_read_kernel(&v0, sizeof(v0), (void *)(src + IRQTRACE_BPF_STEAL_VERSION_OFF)) ||
		    bpf_probe_read_kernel(steal, sizeof(*steal), (void *)(src + IRQTRACE_BPF_STEAL_OFF)) ||
		    bpf_probe_read_kernel(&v1, sizeof(v1), (void *)(src + IRQTRACE_BPF_STEAL_VERSION_OFF)))
			return false;
		if (!(v0 & 1) && v0 == v1)
			return true;
	}
	return false;
}

/*
 * The steal since this CPU's last sample, 0 if it cannot say (the first, or
 * a read that failed: a mark taken then would count all steal since boot).
 */
static __always_inline __u64 steal_since_sample(struct irqtrace_bpf_cpu *c)
{
	__u64 steal, since = 0;

	if (!steal_clock(&steal)) {
		c->steal_known = 0;
		return 0;
	}
	if (c->steal_known && steal > c->steal_at_sample)
		since = steal - c->steal_at_sample;
	c->steal_at_sample = steal;
	c->steal_known = 1;
	return since;
}

/*
 * sampled. The perf cpu-clock event's hrtimer is forwarded on a fixed grid
 * of period_ns; the program never sees the expiry, so it tracks the grid:
 * each sample moves the estimate to the first grid point after now, and a
 * sample that comes before the estimate (which can only be early by the
 * estimate's own error) moves the grid back to it. Lateness over the grid
 * is how long interrupts kept the timer out, give or take a period.
 */
SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 period = cfg.period_ns;
	struct irqtrace_bpf_counters *n = my_counters();
	struct irqtrace_bpf_cpu *c = my_state();
	struct irqtrace_handler held, held_soft;
	struct irqtrace_where where;
	struct irqtrace_record *rec;
	__u64 expected, late, stolen;
	bool hypervisor;

	if (!c || !n || !period)
		return 0;
	n->samples++;
	/* Every sample moves the steal mark: the next window starts here. */
	stolen = steal_since_sample(c);
	/* Each sample judges the handlers done since the one before. */
	held = c->hard_held;
	c->hard_held.where.context = 0;
	held_soft = c->soft_held;
	c->soft_held.where.context = 0;
	expected = c->expected;
	if (!expected || now < expected || now - expected > 1000 * period) {
		/* First sample, or the grid was lost: start it here. */
		c->expected = now + period;
		return 0;
	}
	late = now - expected;
	c->expected = expected + (late / period + 1) * period;
	/* Later than this is a section; less is the timer interrupt's own latency. */
	if (late < cfg.floor_ns)
		return 0;
	/*
	 * What held the timer back: a softirq it interrupted (not the local
	 * timer's vector the sample runs in), or a handler that took half of it.
	 */
	irqtrace_where_now(&c->hard_now, NULL, &c->soft_now, &where);
	irqtrace_interrupted_held(&c->soft_now, now, late, &where);
	if (!where.context && (__u32)bpf_get_current_pid_tgid() == 0) {
		/*
		 * The idle loop: its own wait is not a section, a handler's in it
		 * is (a softirq's too: a timer interrupt can come after the
		 * softirq that held it back has ended, late under emulation).
		 */
		late = irqtrace_idle_handler(irqtrace_longer(&held, &held_soft), now, late, &where);
		if (!where.context && !cfg.count_idle) {
			n->idle_excluded++;
			return 0;
		}
		if (late < cfg.floor_ns)
			return 0;
	} else {
		/*
		 * But first a hard handler that took half of it: one that came
		 * inside the softirq counts in the softirq's time too.
		 */
		irqtrace_held_by(&held, now, late, &where);
	}
	/* The host's, not this CPU's: in no histogram, a record marked so. */
	hypervisor = irqtrace_mostly_steal(stolen, late);
	if (!hypervisor)
		hist_add(IRQTRACE_BPF_HIST_IRQS_OFF, late);
	if (late < cfg.threshold_ns)
		return 0;

	rec = reserve(n, c, IRQTRACE_KIND_IRQS_OFF, IRQTRACE_METHOD_SAMPLED);
	if (!rec)
		return 0;
	/* The section was first seen at the missed expiry (or the idle CPU's handler began). */
	rec->start_ns = now - late;
	rec->duration_ns = late;
	rec->error_ns = period;
	/* Begun up to a period before the missed sample; ended as it came. */
	rec->start_by = IRQTRACE_EDGE_SAMPLE;
	rec->end_by = IRQTRACE_EDGE_SAMPLE;
	rec->flags = IRQTRACE_F_END_EXACT | (hypervisor ? IRQTRACE_F_HYPERVISOR : 0);
	set_where(rec, &where);
	fill_current(rec);
	/* Interrupted in the kernel: where interrupts came back on. */
	if (!(ctx->regs.cs & 3)) {
		rec->enable_ip = PT_REGS_IP(&ctx->regs);
		rec->flags |= IRQTRACE_F_SITES_VALID;
	}
	capture_stack(ctx, rec);
	submit(rec, n);
	return 0;
}

/*
 * irq-line. The depth per IRQ is the module's, not the kernel's: a section
 * starts at 0 -> 1 and ends at 1 -> 0, on whatever CPU. An enable at depth 0
 * (masked before tracing began) is ignored.
 */
SEC("kprobe")
int disable_line(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 irq = PT_REGS_PARM1(ctx);
	struct irqtrace_bpf_line *st;
	__u64 site = 0;
	long bytes;

	if (!line_wanted(irq))
		return 0;
	st = bpf_map_lookup_elem(&lines, &irq);
	if (!st || __sync_fetch_and_add(&st->depth, 1) != 0)
		return 0;
	st->start_ns = now;
	st->pid_tgid = bpf_get_current_pid_tgid();
	st->cgroup_id = bpf_get_current_cgroup_id();
	st->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(st->comm, sizeof(st->comm));
	{
		struct irqtrace_bpf_cpu *c = my_state();

		if (c)
			context_now(c, &st->where);
		else
			__builtin_memset(&st->where, 0, sizeof(st->where));
	}
	/* At the function's entry its return address is on top of the stack. */
	BPF_KPROBE_READ_RET_IP(site, ctx);
	st->disable_ip = site;
	st->nr_frames = 0;
	if (cfg.stacks) {
		bytes = bpf_get_stack(ctx, st->frames, sizeof(st->frames), 0);
		if (bytes > 0)
			st->nr_frames = bytes / sizeof(__u64);
	}
	return 0;
}

SEC("kprobe")
int enable_line(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 irq = PT_REGS_PARM1(ctx);
	struct irqtrace_bpf_counters *n;
	struct irqtrace_bpf_hist_data *h;
	struct irqtrace_bpf_line *st;
	struct irqtrace_bpf_cpu *c;
	struct irqtrace_record *rec;
	__u64 depth, delta, site = 0;
	int tries;

	if (!line_wanted(irq))
		return 0;
	st = bpf_map_lookup_elem(&lines, &irq);
	if (!st)
		return 0;
	for (tries = 0; tries < 8; tries++) {
		depth = st->depth;
		if (depth == 0)
			return 0;
		if (__sync_val_compare_and_swap(&st->depth, depth, depth - 1) == depth)
			break;
	}
	if (tries == 8 || depth != 1)
		return 0;

	delta = now - st->start_ns;
	h = bpf_map_lookup_elem(&line_hists, &irq);
	if (h)
		hist_add_atomic(h, delta);
	if (delta < cfg.threshold_ns)
		return 0;
	n = my_counters();
	c = my_state();
	if (!n || !c)
		return 0;
	rec = reserve(n, c, IRQTRACE_KIND_IRQ_LINE, IRQTRACE_METHOD_EXACT);
	if (!rec)
		return 0;
	BPF_KPROBE_READ_RET_IP(site, ctx);
	rec->flags = IRQTRACE_F_SITES_VALID | IRQTRACE_F_ENABLER_VALID |
		     IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT;
	rec->cpu = st->cpu;
	rec->irq = irq;
	rec->start_ns = st->start_ns;
	rec->duration_ns = delta;
	rec->cgroup_id = st->cgroup_id;
	rec->pid = (__u32)st->pid_tgid;
	rec->tgid = st->pid_tgid >> 32;
	__builtin_memcpy(rec->comm, st->comm, sizeof(rec->comm));
	rec->disable_ip = st->disable_ip;
	rec->enable_ip = site;
	set_where(rec, &st->where);
	{
		__u64 pid_tgid = bpf_get_current_pid_tgid();

		rec->enable_pid = (__u32)pid_tgid;
		rec->enable_tgid = pid_tgid >> 32;
		bpf_get_current_comm(rec->enable_comm, sizeof(rec->enable_comm));
	}
	rec->nr_frames = st->nr_frames <= IRQTRACE_MAX_FRAMES ? st->nr_frames : 0;
	__builtin_memcpy(rec->frames, st->frames, sizeof(st->frames));
	submit(rec, n);
	return 0;
}
