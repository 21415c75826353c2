// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace: the hypervisor's share of a sampled section, from the steal clock.
 *
 * A vCPU that the host deschedules stops wherever it is; when it runs again
 * its timer interrupts come late, exactly as if a section had kept interrupts
 * off, and the sampled method would blame whatever task ran. The guest
 * knows the time it lost: KVM writes it to the per-CPU struct kvm_steal_time
 * that the guest registered (steal_time, read by kvm_steal_clock() behind
 * paravirt_steal_clock()). None of these is exported to modules, so the
 * loader finds the per-CPU variable in /proc/kallsyms and passes its offset
 * (steal_time_offset); this reads it with copy_from_kernel_nofault(). An
 * offset is taken only if it is the steal clock: on a KVM guest the one the
 * guest registered with the host (MSR_KVM_STEAL_TIME says where); without
 * that MSR (not a KVM guest: nothing writes a steal clock, and the tests
 * stand in for the host) one that reads as a steal clock. A sample whose
 * lateness is at least half steal is the hypervisor's (irqtrace_mostly_steal()
 * in include/irqtrace_context.h, shared with the eBPF backend).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/moduleparam.h>
#include <linux/percpu.h>
#include <linux/sizes.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>

#ifdef CONFIG_X86
#include <asm/kvm_para.h>
#include <asm/msr.h>
#include <asm/set_memory.h>
#endif

#include "internal.h"

/* The per-CPU offset of the guest's struct kvm_steal_time, 0 when none. */
static unsigned long steal_time_offset __read_mostly;

/* x86-64's static per-CPU variables lie far below this (steal_time: 0x34080 on Debian 6.1). */
#define STEAL_OFFSET_MAX	SZ_1M

#ifdef CONFIG_X86
/*
 * This CPU's steal time in ns, read as kvm_steal_clock() does (the host
 * makes version odd while it writes); false if it cannot be read.
 */
static bool read_steal(unsigned long offset, u64 *steal)
{
	const struct kvm_steal_time *src;
	unsigned int tries;
	u32 v0, v1;

	src = raw_cpu_ptr((const struct kvm_steal_time __percpu *)offset);
	for (tries = 0; tries < 4; tries++) {
		if (copy_from_kernel_nofault(&v0, &src->version, sizeof(v0)))
			return false;
		/* Pairs with the host's version bumps around its write (virt_rmb()). */
		smp_rmb();
		if (copy_from_kernel_nofault(steal, &src->steal, sizeof(*steal)))
			return false;
		/* The version after the value: unchanged and even, the value is whole. */
		smp_rmb();
		if (copy_from_kernel_nofault(&v1, &src->version, sizeof(v1)))
			return false;
		if (!(v0 & 1) && v0 == v1)
			return true;
	}
	return false;
}
#else
static bool read_steal(unsigned long offset, u64 *steal)
{
	return false;
}
#endif
NOKPROBE_SYMBOL(read_steal);

/*
 * This CPU's steal clock, ns, and the offset it was read at: false without
 * one, or if it could not be read (a mark taken then would count all the
 * steal since boot at the next sample).
 */
bool irqtrace_steal_clock(u64 *steal, unsigned long *offset)
{
	*offset = READ_ONCE(steal_time_offset);
	return *offset && read_steal(*offset, steal);
}
NOKPROBE_SYMBOL(irqtrace_steal_clock);

/*
 * The steal since this CPU's last hard sample, 0 if it cannot say (the first
 * sample, an offset changed since, a read that failed); moves the mark here.
 * Called by the hard sampler on every sample, late or not.
 */
u64 irqtrace_steal_mark(struct irqtrace_cpu *c)
{
	unsigned long offset;
	u64 steal, since = 0;

	if (!irqtrace_steal_clock(&steal, &offset)) {
		c->steal_known = false;
		return 0;
	}
	if (c->steal_known && c->steal_offset == offset && steal > c->steal_at_sample)
		since = steal - c->steal_at_sample;
	c->steal_at_sample = steal;
	c->steal_offset = offset;
	c->steal_known = true;
	return since;
}
NOKPROBE_SYMBOL(irqtrace_steal_mark);

/*
 * The steal since that mark, leaving it: for a section a hook measured,
 * which the window since the last sample holds (the sampler's interrupt
 * would have ended it otherwise).
 */
u64 irqtrace_steal_since_mark(struct irqtrace_cpu *c)
{
	unsigned long offset;
	u64 steal;

	if (!c->steal_known || !irqtrace_steal_clock(&steal, &offset) ||
	    offset != c->steal_offset || steal <= c->steal_at_sample)
		return 0;
	return steal - c->steal_at_sample;
}
NOKPROBE_SYMBOL(irqtrace_steal_since_mark);

#ifdef CONFIG_X86
/* Whether offset is this CPU's steal clock (preemption off). */
static bool steal_clock_at(unsigned long offset)
{
	const struct kvm_steal_time *st;
	u64 msr, steal;

	if (!offset || offset >= STEAL_OFFSET_MAX || !IS_ALIGNED(offset, sizeof(u64)) ||
	    !read_steal(offset, &steal))
		return false;
	st = raw_cpu_ptr((const struct kvm_steal_time __percpu *)offset);
	/* A KVM guest with steal time: where it registered the clock with the host. */
	if (!rdmsrl_safe(MSR_KVM_STEAL_TIME, &msr) && (msr & KVM_MSR_ENABLED))
		return msr == (slow_virt_to_phys((void *)st) | KVM_MSR_ENABLED);
	/* None: it must read as a steal clock, no more steal than time since boot. */
	return steal <= ktime_get_boottime_ns();
}
#else
static bool steal_clock_at(unsigned long offset)
{
	return false;
}
#endif

static int steal_time_offset_set(const char *val, const struct kernel_param *kp)
{
	unsigned long offset;
	bool ok;

	if (kstrtoul(val, 0, &offset)) {
		pr_warn("steal_time_offset refused: expected a number (0: none)\n");
		return -EINVAL;
	}
	if (offset) {
		preempt_disable();
		ok = steal_clock_at(offset);
		preempt_enable();
		if (!ok) {
			pr_warn("steal_time_offset=%#lx refused: no steal clock there on this kernel\n",
				offset);
			return -EINVAL;
		}
	}
	WRITE_ONCE(steal_time_offset, offset);
	return 0;
}

static const struct kernel_param_ops steal_time_offset_ops = {
	.set = steal_time_offset_set,
	.get = param_get_ulong,
};
module_param_cb(steal_time_offset, &steal_time_offset_ops, &steal_time_offset, 0644);
MODULE_PARM_DESC(steal_time_offset,
		 "Per-CPU offset of the guest's steal clock (the steal_time symbol in /proc/kallsyms, KVM guests): a sampled section that is mostly steal is marked as the hypervisor's (default: 0, none)");
