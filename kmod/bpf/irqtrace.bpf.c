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

/*
 * A per-CPU histogram, updated with interrupts off (hybrid's softirq probe
 * too, but for an interrupt's probes that may come inside: a count lost then
 * at worst): plain arithmetic.
 */
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
		/* Not the stack kept for hybrid: intr_done.nr_frames says what of it is valid. */
		__builtin_memset(c, 0, __builtin_offsetof(struct irqtrace_bpf_cpu, intr_frames));
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
 * hybrid (the sampled method with cfg.hybrid): an interrupt's section timed
 * from its outermost handler's entry tracepoint to where interrupts come
 * back on, as kmod/hybrid.c does, with the same rules; the sampler measures
 * the rest, skipping what these measured. No lock or scheduler function is
 * hooked (the loader says why): those sections stay sampled.
 *
 * BPF cannot turn interrupts off: an interrupt that comes while a softirq's
 * probe reads the last interrupt's state (softirqs run with interrupts on)
 * runs its own probes first, and ends that section at its exit itself. The
 * softirq's probe copies the state, then takes it only if it is still the
 * one it judged (a compare-and-swap of its start): each section is written
 * once, and never with another interrupt's task or stack.
 */
#define IRQTRACE_BPF_NEED_RESCHED	0x80000000u	/* x86: folded into __preempt_count */
#define IRQTRACE_BPF_SOFTIRQ_OFFSET	(1u << 8)
#define IRQTRACE_BPF_HARDIRQ_OFFSET	(1u << 16)
/* SOFTIRQ_MASK | HARDIRQ_MASK | NMI_MASK */
#define IRQTRACE_BPF_IN_INTERRUPT	0x00ffff00u
/* x86's RESCHEDULE_VECTOR: its entry code runs no softirqs on the way out. */
#define IRQTRACE_BPF_RESCHEDULE_VECTOR	0xfd

static __always_inline bool steal_clock(__u64 *steal);

/* This CPU's per-CPU area (__per_cpu_offset[cpu]); false if unknown. */
static __always_inline bool percpu_base(__u64 *base)
{
	__u32 cpu = bpf_get_smp_processor_id();

	if (!cfg.per_cpu_offset || cpu >= IRQTRACE_BPF_MAX_CPUS)
		return false;
	return !bpf_probe_read_kernel(base, sizeof(*base),
				      (void *)(cfg.per_cpu_offset + cpu * sizeof(__u64)));
}

/* The preempt count in the per-CPU area at base, without the resched bit; false if unknown. */
static __always_inline bool preempt_count_at(__u64 base, __u32 *count)
{
	if (!cfg.preempt_count ||
	    bpf_probe_read_kernel(count, sizeof(*count), (void *)(base + cfg.preempt_count)))
		return false;
	*count &= ~IRQTRACE_BPF_NEED_RESCHED;
	return true;
}

/* This CPU's preempt count without the resched bit; false if unknown. */
static __always_inline bool preempt_count_now(__u32 *count)
{
	__u64 base;

	return percpu_base(&base) && preempt_count_at(base, count);
}

/*
 * Whether irq_exit will run softirqs after the outermost handler own, which
 * runs now; *count is the preempt count it runs them with, 0 when unknown
 * (then: yes, unless none is pending).
 */
static __always_inline __u32 softirqs_next(const struct irqtrace_where *own, __u32 *count)
{
	__u16 pending = 1;
	__u64 base;
	__u32 pc;

	*count = 0;
	if (own->context == IRQTRACE_CONTEXT_VECTOR && own->nr == IRQTRACE_BPF_RESCHEDULE_VECTOR)
		return 0;
	/* One read of this CPU's base serves both (on every interrupt's exit). */
	if (!percpu_base(&base))
		return 1;
	if (cfg.softirq_pending &&
	    !bpf_probe_read_kernel(&pending, sizeof(pending), (void *)(base + cfg.softirq_pending)) &&
	    !pending)
		return 0;
	if (!preempt_count_at(base, &pc))
		return 1;
	/* What __irq_exit_rcu() will see: the count without this hardirq. */
	pc -= IRQTRACE_BPF_HARDIRQ_OFFSET;
	if (pc & IRQTRACE_BPF_IN_INTERRUPT)
		return 0;
	*count = pc + IRQTRACE_BPF_SOFTIRQ_OFFSET;
	return 1;
}

/* Steal since the sampler's last mark, without moving it; 0 if unknown. */
static __always_inline __u64 steal_since_mark(const struct irqtrace_bpf_cpu *c)
{
	__u64 steal;

	if (!c->steal_known || !steal_clock(&steal) || steal < c->steal_at_sample)
		return 0;
	return steal - c->steal_at_sample;
}

/* Remembers a section a probe measured, for the sampler's next sample. */
static __always_inline void hooked_done(struct irqtrace_bpf_cpu *c, __u64 start, __u64 end,
					__u8 start_by, __u8 end_by)
{
	__u64 i = c->hooked_next++ % IRQTRACE_HOOKED_RECENT;
	struct irqtrace_hooked *h = &c->hooked[i];

	h->start = start;
	h->end = end;
	h->start_by = start_by;
	h->end_by = end_by;
}

/* The hooked section that ended last at or before end, if it ended at or after from. */
static __always_inline const struct irqtrace_hooked *
last_hooked(const struct irqtrace_bpf_cpu *c, __u64 from, __u64 end)
{
	return irqtrace_last_hooked(c->hooked, from, end);
}

/*
 * The last outermost interrupt's section, begun at start (intr_done.start
 * when the caller judged it), ends at end, timed by end_by: remembered for
 * the sampler, counted from the floor on (a handler's is never the idle
 * loop's), written if over the threshold.
 */
static __always_inline void intr_section_end(struct irqtrace_bpf_cpu *c, __u64 start, __u64 end,
					     __u32 end_by)
{
	struct irqtrace_bpf_intr_done *d = &c->intr_done;
	struct irqtrace_bpf_counters *n;
	struct irqtrace_record *rec;
	__u64 gen = c->irq_gen;
	char comm[IRQTRACE_COMM_LEN];
	struct irqtrace_where where;
	__u64 own, delta, pid_tgid, cgroup_id;
	__u32 nr;
	bool host;

	if (!start)
		return;
	/* A copy first: an interrupt after the swap below may fill the state anew. */
	where = d->where;
	pid_tgid = d->pid_tgid;
	cgroup_id = d->cgroup_id;
	__builtin_memcpy(comm, d->comm, sizeof(comm));
	nr = d->nr_frames;
	/* The sampler's own callback is no handler's time, nor these probes' past the exit. */
	own = d->self + (end > d->exit ? d->own_after_exit : 0);
	/* Taken once; if an interrupt came since it was judged, that one ended it at its exit. */
	if (__sync_val_compare_and_swap(&d->start, start, 0) != start)
		return;
	if (end < start + own)
		return;
	delta = end - start - own;
	hooked_done(c, start, end, IRQTRACE_EDGE_HANDLER, end_by);
	host = false;
	if (delta >= cfg.floor_ns) {
		host = irqtrace_mostly_steal(steal_since_mark(c), delta);
		if (!host)
			hist_add(IRQTRACE_BPF_HIST_IRQS_OFF, delta);
	}
	if (delta < cfg.threshold_ns)
		return;
	n = my_counters();
	if (!n)
		return;
	rec = reserve(n, c, IRQTRACE_KIND_IRQS_OFF, IRQTRACE_METHOD_HYBRID);
	if (!rec)
		return;
	rec->flags = IRQTRACE_F_START_EXACT | IRQTRACE_F_END_EXACT |
		     (host ? IRQTRACE_F_HYPERVISOR : 0);
	rec->start_by = IRQTRACE_EDGE_HANDLER;
	rec->end_by = end_by;
	rec->start_ns = start;
	rec->duration_ns = delta;
	set_where(rec, &where);
	rec->pid = (__u32)pid_tgid;
	rec->tgid = pid_tgid >> 32;
	rec->cgroup_id = cgroup_id;
	__builtin_memcpy(rec->comm, comm, sizeof(rec->comm));
	if (nr > IRQTRACE_MAX_FRAMES)
		nr = IRQTRACE_MAX_FRAMES;
	/*
	 * Taken at the exit, or none: here is elsewhere. An interrupt since the
	 * swap may have written another stack over it: then none.
	 */
	if (nr && !bpf_probe_read_kernel(rec->frames, sizeof(c->intr_frames), c->intr_frames) &&
	    c->irq_gen == gen)
		rec->nr_frames = nr;
	if (rec->nr_frames == IRQTRACE_MAX_FRAMES)
		rec->flags |= IRQTRACE_F_STACK_TRUNCATED;
	submit(rec, n);
}

/*
 * Whether the last interrupt's section can have ended at end, after its
 * exit: within the floor of it (more is a section of its own), and with no
 * hooked section ended since.
 */
static __always_inline bool intr_ends_at(const struct irqtrace_bpf_cpu *c, __u64 end)
{
	const struct irqtrace_bpf_intr_done *d = &c->intr_done;

	return end >= d->exit && end - d->exit < cfg.floor_ns && !last_hooked(c, d->exit, end);
}

/* An outermost interrupt entered at now: a vector's, or a device IRQ's handler. */
static __always_inline void intr_entered(struct irqtrace_bpf_cpu *c, __u64 now, bool vector)
{
	c->irq_gen++;
	c->intr_start = now;
	c->intr_self = 0;
	c->intr_where.context = IRQTRACE_CONTEXT_TASK;
	c->intr_where.nr = 0;
	c->intr_where.fn = 0;
	c->intr_where_ns = 0;
	c->intr_is_vector = vector;
}

/*
 * The outermost interrupt's handler (own) exited at now: its section stays
 * open until interrupts come back on (irq_exit's softirqs, the sampler's
 * held-back timer), else it ends at this exit when anything else comes.
 */
static __always_inline void intr_exited(void *ctx, struct irqtrace_bpf_cpu *c, __u64 now,
					const struct irqtrace_where *own)
{
	struct irqtrace_bpf_intr_done *d = &c->intr_done;
	__u64 start = c->intr_start, after;
	long bytes;

	c->intr_start = 0;
	intr_section_end(c, d->start, d->exit, IRQTRACE_EDGE_HANDLER);
	if (!start)
		return;
	d->exit = now;
	d->self = c->intr_self;
	d->gen = c->irq_gen;
	d->pid_tgid = bpf_get_current_pid_tgid();
	d->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(d->comm, sizeof(d->comm));
	d->where = c->intr_where.context ? c->intr_where : *own;
	d->softirqs_next = softirqs_next(own, &d->softirq_count);
	d->nr_frames = 0;
	if (cfg.stacks && now - start >= c->intr_self + cfg.threshold_ns) {
		bytes = bpf_get_stack(ctx, c->intr_frames, sizeof(c->intr_frames), 0);
		if (bytes > 0)
			d->nr_frames = bytes / sizeof(__u64);
	}
	/* Taking the stack: in this section, if it ends later. */
	after = bpf_ktime_get_ns();
	d->own_after_exit = after > now ? after - now : 0;
	d->start = start;
}

/*
 * A softirq starts at now: if irq_exit runs it right after the last
 * interrupt, interrupts came on just before. It is that run if softirqs were
 * due at the exit, no interrupt came since, the task and (where it can be
 * read) the preempt count are irq_exit's, within the floor, with no hooked
 * section between (kmod/hybrid.c: irqtrace_hybrid_softirq_entry()).
 */
static __always_inline void intr_softirq_entered(struct irqtrace_bpf_cpu *c, __u64 now)
{
	struct irqtrace_bpf_intr_done *d = &c->intr_done;
	__u64 start = d->start;
	__u32 pc;
	bool ours;

	if (!start)
		return;
	ours = d->softirqs_next && d->gen == c->irq_gen &&
	       d->pid_tgid == bpf_get_current_pid_tgid() &&
	       (!d->softirq_count || (preempt_count_now(&pc) && pc == d->softirq_count)) &&
	       intr_ends_at(c, now);
	intr_section_end(c, start, ours ? now : d->exit, IRQTRACE_EDGE_HANDLER);
}

/*
 * The sampler's timer runs, in the interrupt whose entry opened it, with its
 * expiry estimated by the grid: if it was due before the last interrupt's
 * exit, that section held it back, and it came as interrupts came on: its
 * entry is that section's end (if no other interrupt came between, the task
 * is the same, and within the floor: an emulated timer raised late would
 * come past the true end).
 */
static __always_inline void intr_timer_due(struct irqtrace_bpf_cpu *c, __u64 expiry)
{
	struct irqtrace_bpf_intr_done *d = &c->intr_done;
	__u64 start = d->start;
	bool held;

	if (!start)
		return;
	held = expiry && d->gen + 1 == c->irq_gen && c->intr_start && expiry <= d->exit &&
	       d->pid_tgid == bpf_get_current_pid_tgid() && intr_ends_at(c, c->intr_start);
	intr_section_end(c, start, held ? c->intr_start : d->exit,
			 held ? IRQTRACE_EDGE_SAMPLE : IRQTRACE_EDGE_HANDLER);
}

/*
 * A late sample's window [*start (the expiry), *end (now)], as hybrid sees
 * it: false if the probes measured that section already. The interrupt the
 * sample runs in came as interrupts came on: its entry is the end. Hooked
 * sections that ended in the window cut it, from the last back, by the rule
 * both sides share (irqtrace_cut_by_hooked()).
 */
static __always_inline bool hybrid_window(const struct irqtrace_bpf_cpu *c, __u64 *start,
					  __u64 *end, __u8 *end_by)
{
	const struct irqtrace_hooked *h;
	enum irqtrace_cut cut;
	int i;

	if (c->intr_start) {
		if (c->intr_start <= *start)
			return false;	/* the expiry fell in this interrupt: its section */
		*end = c->intr_start;
	}
	for (i = 0; i < IRQTRACE_HOOKED_RECENT; i++) {
		h = last_hooked(c, *start, *end);
		if (!h)
			break;
		cut = irqtrace_cut_by_hooked(h, cfg.floor_ns, start, end, end_by);
		if (cut == IRQTRACE_CUT_THEIRS)
			return false;
		if (cut == IRQTRACE_CUT_DONE)
			break;
	}
	return *end > *start;
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
	__u64 now = bpf_ktime_get_ns();

	if (!c)
		return;
	c->vec_inner = 1;
	c->hard_now.where.context = context;
	c->hard_now.where.nr = nr;
	c->hard_now.where.fn = fn;
	c->hard_now.start = now;
	c->hard_now.end = 0;
	/* hybrid: the outermost handler of an interrupt with no x86 vector around it. */
	if (cfg.hybrid && !c->vec_now.where.context && !c->intr_start)
		intr_entered(c, now, false);
}

static __always_inline void hard_done(void *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();
	__u64 now = bpf_ktime_get_ns();

	if (!c || !c->hard_now.where.context)
		return;
	c->hard_now.end = now;
	irqtrace_hold_longest(&c->hard_held, &c->hard_now);
	irqtrace_section_handler(c->off_ts, &c->hard_now, now, &c->off_where, &c->off_where_ns);
	if (cfg.hybrid && c->intr_start) {
		if (!c->intr_is_vector)
			intr_exited(ctx, c, now, &c->hard_now.where);
		else
			/* The longest handler inside the open interrupt names its section. */
			irqtrace_section_handler(c->intr_start, &c->hard_now, now, &c->intr_where,
						 &c->intr_where_ns);
	}
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
	hard_done(ctx);
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
		if (c) {
			c->vec_inner = 1;
			c->own_timer_start = bpf_ktime_get_ns();
		}
	}
	return 0;
}

SEC("raw_tp")
int timer_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 fn = hard_timer_fn((void *)ctx->args[0]);
	struct irqtrace_bpf_cpu *c;

	if (fn && fn != cfg.own_timer_fn) {
		hard_done(ctx);
	} else if (fn && cfg.hybrid) {
		/* hybrid: the interrupt's section is its handlers', not the sampler's. */
		c = context_state();
		if (c && c->intr_start && c->own_timer_start)
			c->intr_self += bpf_ktime_get_ns() - c->own_timer_start;
	}
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
	if (cfg.hybrid)
		intr_entered(c, c->vec_now.start, true);
	return 0;
}

SEC("raw_tp")
int vec_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct irqtrace_bpf_cpu *c = context_state();
	struct irqtrace_where own;
	__u64 now = bpf_ktime_get_ns();

	if (!c || !c->vec_now.where.context)
		return 0;
	own = c->vec_now.where;
	irqtrace_vector_done(&c->vec_now, now, c->vec_inner, &c->hard_held, 1,
			     c->off_ts, &c->off_where, &c->off_where_ns);
	if (cfg.hybrid && c->intr_start && c->intr_is_vector)
		intr_exited(ctx, c, now, &own);
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
	/* hybrid: irq_exit turned interrupts on just before running it. */
	if (cfg.hybrid)
		intr_softirq_entered(c, c->soft_now.start);
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
	__u64 base, src;
	__u32 v0, v1;
	int i;

	if (!cfg.steal_time || !percpu_base(&base))
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
 * Whether a sample at now keeps to the grid whose next expiry is expected:
 * not the first, not early, not after a gap of a thousand periods.
 */
static __always_inline bool on_grid(__u64 expected, __u64 now, __u64 period)
{
	return expected && now >= expected && now - expected <= 1000 * period;
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
	__u8 end_by = IRQTRACE_EDGE_SAMPLE;
	struct irqtrace_where where;
	struct irqtrace_record *rec;
	__u64 expected, late, stolen, start, end;
	bool hypervisor;

	if (!c || !n || !period)
		return 0;
	n->samples++;
	/*
	 * hybrid: a timer due before the last interrupt's exit says where that
	 * interrupt ended; not if the grid is lost (the check below).
	 */
	if (cfg.hybrid)
		intr_timer_due(c, on_grid(c->expected, now, period) ? c->expected : 0);
	/* Every sample moves the steal mark: the next window starts here. */
	stolen = steal_since_sample(c);
	/* Each sample judges the handlers done since the one before. */
	held = c->hard_held;
	c->hard_held.where.context = 0;
	held_soft = c->soft_held;
	c->soft_held.where.context = 0;
	expected = c->expected;
	if (!on_grid(expected, now, period)) {
		/* First sample, or the grid was lost: start it here. */
		c->expected = now + period;
		return 0;
	}
	late = now - expected;
	c->expected = expected + (late / period + 1) * period;
	/* Later than this is a section; less is the timer interrupt's own latency. */
	if (late < cfg.floor_ns)
		return 0;
	start = expected;
	end = now;
	if (cfg.hybrid) {
		/* Handlers are timed by their probes: what is left is another section, or none. */
		if (!hybrid_window(c, &start, &end, &end_by))
			return 0;
		late = end - start;
		if (late < cfg.floor_ns)
			return 0;
		irqtrace_where_now(&c->hard_now, NULL, &c->soft_now, &where);
		irqtrace_interrupted_held(&c->soft_now, end, late, &where);
		/* Only the idle loop's own wait is left here. */
		if (!where.context && (__u32)bpf_get_current_pid_tgid() == 0 && !cfg.count_idle) {
			n->idle_excluded++;
			return 0;
		}
		goto judged;
	}
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
	start = now - late;
judged:
	/* The host's, not this CPU's: in no histogram, a record marked so. */
	hypervisor = irqtrace_mostly_steal(stolen, late);
	if (!hypervisor)
		hist_add(IRQTRACE_BPF_HIST_IRQS_OFF, late);
	if (late < cfg.threshold_ns)
		return 0;

	rec = reserve(n, c, IRQTRACE_KIND_IRQS_OFF,
		      cfg.hybrid ? IRQTRACE_METHOD_HYBRID : IRQTRACE_METHOD_SAMPLED);
	if (!rec)
		return 0;
	/* The section was first seen at the missed expiry (or the idle CPU's handler began). */
	rec->start_ns = start;
	rec->duration_ns = late;
	rec->error_ns = period;
	/*
	 * Begun up to a period before the missed sample; ended as it came (or,
	 * hybrid, where a hooked section began that it ran into).
	 */
	rec->start_by = IRQTRACE_EDGE_SAMPLE;
	rec->end_by = end_by;
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
