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
 * (steal_time_offset); this reads it with copy_from_kernel_nofault(), so a
 * wrong offset reads as a fault, never as an oops. A sample whose lateness
 * is at least half steal is the hypervisor's (irqtrace_mostly_steal() in
 * include/irqtrace_context.h, shared with the eBPF backend).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/moduleparam.h>
#include <linux/percpu.h>
#include <linux/uaccess.h>

#ifdef CONFIG_X86
#include <asm/kvm_para.h>
#endif

#include "internal.h"

/* The per-CPU offset of the guest's struct kvm_steal_time, 0 when none. */
static unsigned long steal_time_offset __read_mostly;

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

/* This CPU's steal clock, ns; 0 without one. */
u64 irqtrace_steal_clock(void)
{
	unsigned long offset = READ_ONCE(steal_time_offset);
	u64 steal;

	return offset && read_steal(offset, &steal) ? steal : 0;
}
NOKPROBE_SYMBOL(irqtrace_steal_clock);

static int steal_time_offset_set(const char *val, const struct kernel_param *kp)
{
	unsigned long offset;
	u64 steal;
	bool ok;

	if (kstrtoul(val, 0, &offset)) {
		pr_warn("steal_time_offset refused: expected a number (0: none)\n");
		return -EINVAL;
	}
	if (offset) {
		preempt_disable();
		ok = IS_ALIGNED(offset, sizeof(u64)) && read_steal(offset, &steal);
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
