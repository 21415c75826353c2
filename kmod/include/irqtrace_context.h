/* SPDX-License-Identifier: GPL-2.0 */
/*
 * irqtrace: which interrupt context a section belongs to, one logic for both
 * kernel sides: the module's tracepoint probes (context.c, sampled.c) and the
 * eBPF programs (bpf/irqtrace.bpf.c). Each side keeps, per CPU, the hard
 * handler, the x86 system vector and the softirq running now and the longest
 * hard handler (or vector) and softirq done since a sample; these inlines decide from that state, on plain data only (no
 * helpers, locks or clocks: the caller passes now), so both compile them
 * (__always_inline comes from the kernel, bpf_helpers.h, or glibc for the
 * eBPF loader, which only needs the types).
 */
#ifndef _IRQTRACE_CONTEXT_H
#define _IRQTRACE_CONTEXT_H

#include <linux/types.h>

#include "uapi/irqtrace.h"

/*
 * x86's system vectors whose handlers pass no irq_handler_entry, by the names
 * of their irq_vectors tracepoints (<name>_entry/_exit(int vector)): an
 * initializer for both sides' lists. Elsewhere they do not exist.
 */
#define IRQTRACE_X86_VECTORS							\
	"local_timer", "call_function", "call_function_single", "reschedule",	\
	"irq_work", "x86_platform_ipi", "thermal_apic", "threshold_apic",	\
	"deferred_error_apic", "error_apic", "spurious_apic"

/* Where a section ran: enum irqtrace_context, its IRQ or vector, its handler. */
struct irqtrace_where {
	__u32 context;
	__u32 nr;
	__u64 fn;
};

/* A hard interrupt handler or a softirq, running (end == 0) or done. */
struct irqtrace_handler {
	struct irqtrace_where where;
	__u64 start;		/* clock at entry */
	__u64 end;		/* clock at exit, 0 while it runs */
};

/*
 * Where code on this CPU runs now: a hard handler (a device IRQ's, an hrtimer
 * callback), else the x86 system vector it runs in or that runs without one
 * (vec_now, NULL: not asked, as by a sampler that runs in the local timer's
 * vector itself), else a softirq, else a task.
 */
static __always_inline void irqtrace_where_now(const struct irqtrace_handler *hard_now,
					       const struct irqtrace_handler *vec_now,
					       const struct irqtrace_handler *soft_now,
					       struct irqtrace_where *w)
{
	if (hard_now->where.context) {
		*w = hard_now->where;
	} else if (vec_now && vec_now->where.context) {
		*w = vec_now->where;
	} else if (soft_now->where.context) {
		*w = soft_now->where;
	} else {
		w->context = IRQTRACE_CONTEXT_TASK;
		w->nr = 0;
		w->fn = 0;
	}
}

/* *held becomes h if h ran at least as long. */
static __always_inline void irqtrace_hold_longest(struct irqtrace_handler *held,
						  const struct irqtrace_handler *h)
{
	if (!held->where.context || h->end - h->start >= held->end - held->start)
		*held = *h;
}

/* The longer of two handlers done, either absent (context 0). */
static __always_inline const struct irqtrace_handler *
irqtrace_longer(const struct irqtrace_handler *a, const struct irqtrace_handler *b)
{
	if (!a->where.context)
		return b;
	if (!b->where.context)
		return a;
	return b->end - b->start > a->end - a->start ? b : a;
}

/*
 * A hard handler h ended at now inside an open irqs-off section (exact):
 * such a section began at the interrupt's entry, so the longest handler that
 * ran in it is what the section was.
 */
static __always_inline void irqtrace_section_handler(__u64 off_ts, const struct irqtrace_handler *h,
						     __u64 now, struct irqtrace_where *off_where,
						     __u64 *off_where_ns)
{
	if (off_ts && now - h->start > *off_where_ns) {
		*off_where = h->where;
		*off_where_ns = now - h->start;
	}
}

/*
 * A late sample's interrupted context *w names the section only if it ran for
 * at least half of [now - late, now] (soft: the softirq running now): one that
 * began after what held the timer back was done (a handler whose interrupt
 * ran it on its exit, the timer's own interrupt raised late under emulation)
 * did not hold it, and *w becomes a task's again.
 */
static __always_inline void irqtrace_interrupted_held(const struct irqtrace_handler *soft, __u64 now,
						      __u64 late, struct irqtrace_where *w)
{
	if (w->context == IRQTRACE_CONTEXT_SOFTIRQ &&
	    (soft->start > now || 2 * (now - soft->start) < late)) {
		w->context = IRQTRACE_CONTEXT_TASK;
		w->nr = 0;
		w->fn = 0;
	}
}

/* *w becomes last's context if last ran for at least half of [now - late, now]. */
static __always_inline void irqtrace_held_by(const struct irqtrace_handler *last, __u64 now,
					     __u64 late, struct irqtrace_where *w)
{
	__u64 from = now - late, start, end;

	if (!last->where.context || !last->end || !late)
		return;
	start = last->start > from ? last->start : from;
	end = last->end < now ? last->end : now;
	if (end > start && 2 * (end - start) >= late)
		*w = last->where;
}

/*
 * On an idle CPU: h, if it was done in [now - late, now], is the section,
 * from its entry (or the window's start) to its end; the wait before it was
 * the idle loop's (a vCPU or a deep C-state woken late), and so is any after
 * it (the CPU idled again, an IPI's handler long done), which is no section.
 * Else *w is left alone. Returns the section's length.
 */
static __always_inline __u64 irqtrace_idle_handler(const struct irqtrace_handler *h, __u64 now,
						   __u64 late, struct irqtrace_where *w)
{
	__u64 from = now - late;

	if (!h->where.context || !h->end || h->end <= from)
		return late;
	*w = h->where;
	return h->end - (h->start > from ? h->start : from);
}

/*
 * A system vector's handler h ended at now. It is a handler of its own only
 * if no hard handler ran inside it (had_inner): the local timer's vector runs
 * hrtimer callbacks (the tick's, a driver's, the sampler's own), which are the
 * more exact name for what held interrupts off, and would otherwise lose to
 * the vector that ran them, always at least as long. Such a vector is held
 * like a hard handler (held, n of them) and may name an open section.
 */
static __always_inline void irqtrace_vector_done(struct irqtrace_handler *h, __u64 now,
						 bool had_inner, struct irqtrace_handler *held,
						 int n, __u64 off_ts,
						 struct irqtrace_where *off_where,
						 __u64 *off_where_ns)
{
	int i;

	h->end = now;
	if (!had_inner) {
		for (i = 0; i < n; i++)
			irqtrace_hold_longest(&held[i], h);
		irqtrace_section_handler(off_ts, h, now, off_where, off_where_ns);
	}
	h->where.context = IRQTRACE_CONTEXT_TASK;
}

/*
 * hybrid: how many of the last sections hooks measured are kept for the
 * sampler. Several can end between a sampler's expiry and its interrupt: a
 * lock section, then the irq_work its record queued, delivered first at the
 * same enable.
 */
#define IRQTRACE_HOOKED_RECENT	4

/* hybrid: a section hooks measured, kept for the sampler's next sample. */
struct irqtrace_hooked {
	__u64 start;		/* the side's clock */
	__u64 end;
	__u8 start_by;		/* enum irqtrace_edge that timed each end */
	__u8 end_by;
};

/*
 * Of the last hooked sections, the one that ended last at or before end, if
 * it ended at or after from; NULL if none did.
 */
static __always_inline const struct irqtrace_hooked *
irqtrace_last_hooked(const struct irqtrace_hooked *hooked, __u64 from, __u64 end)
{
	const struct irqtrace_hooked *last = NULL;
	int i;

	for (i = 0; i < IRQTRACE_HOOKED_RECENT; i++) {
		const struct irqtrace_hooked *h = &hooked[i];

		if (h->end >= from && h->end <= end && (!last || h->end > last->end))
			last = h;
	}
	return last;
}

/* What irqtrace_cut_by_hooked() made of a late sample's window. */
enum irqtrace_cut {
	IRQTRACE_CUT_MORE,	/* cut at h's start: look at the hooked section before */
	IRQTRACE_CUT_DONE,	/* the window is final */
	IRQTRACE_CUT_THEIRS,	/* hooked sections cover it from the expiry on: measured already */
};

/*
 * hybrid: a late sample's window [*start (the expiry), *end (where its
 * interrupt came)], and h, the hooked section that ended last in it. One
 * that ended just before the interrupt came (less than the floor: what is
 * after it is no section) held the timer back until then, and so did any
 * ending just before it began: the window is theirs if they cover it from
 * the expiry on, else the section ended where the first of them began
 * (*end_by: the edge that timed that).
 *
 * One that ended a floor or more before the interrupt came leaves two
 * sections: after it, interrupts stayed off until the interrupt came (or
 * the vCPU was stopped); before it, from the expiry to its entry, the
 * timer was due and was not delivered, so interrupts were off then too
 * (bar the timer's own raise, late by less than the floor even under
 * emulation). The longer is the sample's: before it, cut at its start as
 * above; after it, from its end.
 */
static __always_inline enum irqtrace_cut
irqtrace_cut_by_hooked(const struct irqtrace_hooked *h, __u64 floor, __u64 *start, __u64 *end,
		       __u8 *end_by)
{
	if (*end - h->end >= floor &&
	    (h->start <= *start || *end - h->end >= h->start - *start)) {
		*start = h->end;
		return IRQTRACE_CUT_DONE;
	}
	if (h->start <= *start)
		return IRQTRACE_CUT_THEIRS;
	*end = h->start;
	*end_by = h->start_by;
	return IRQTRACE_CUT_MORE;
}

/*
 * Whether a sampled section of late ns is the hypervisor's: the vCPU's steal
 * clock ran for at least half of it. stolen is the steal since the
 * sampler's previous sample, a window that holds the section (it began
 * after that sample, or that one would have been late too): steal just
 * before the section counts in it, up to one period.
 */
static __always_inline bool irqtrace_mostly_steal(__u64 stolen, __u64 late)
{
	return late && stolen >= late - late / 2;
}

#endif /* _IRQTRACE_CONTEXT_H */
