// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: what the context probes need to know of the running kernel,
 * found before the programs load: struct hrtimer's layout from its BTF, and
 * from /proc/kallsyms the sampled method's own timer function, where the
 * steal clock is, and hybrid's preempt count and pending softirqs.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "loader.h"

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

/*
 * offsetof(type, member) from the kernel's BTF, type a struct's name or a
 * typedef's (irq_cpustat_t), or fallback without it.
 */
static __u32 member_offset(const struct btf *btf, const char *type, const char *member,
			   __u32 fallback)
{
	const struct btf_member *m;
	const struct btf_type *t;
	int id, i;

	if (!btf)
		return fallback;
	id = btf__find_by_name_kind(btf, type, BTF_KIND_STRUCT);
	if (id < 0) {
		id = btf__find_by_name_kind(btf, type, BTF_KIND_TYPEDEF);
		if (id >= 0)
			id = btf__resolve_type(btf, id);
	}
	if (id < 0)
		return fallback;
	t = btf__type_by_id(btf, id);
	if (!t || !btf_is_struct(t))
		return fallback;
	m = btf_members(t);
	for (i = 0; i < btf_vlen(t); i++, m++)
		if (!strcmp(btf__name_by_offset(btf, m->name_off), member))
			return btf_member_bit_offset(t, i) / 8;
	return fallback;
}

/* member_offset()'s fallback for a member the kernel's BTF does not have. */
#define NO_MEMBER ((__u32)-1)

/* What the context probes need to know of this kernel, before load. */
void configure_context(void)
{
	struct btf *btf = access("/sys/kernel/btf/vmlinux", R_OK) ? NULL : btf__load_vmlinux_btf();

	if (libbpf_get_error(btf))
		btf = NULL;
	__u64 irq_stat;
	__u32 pending_off;

	skel->data->cfg.hrtimer_function_off = member_offset(btf, "hrtimer", "function", IRQTRACE_BPF_HRTIMER_FUNCTION_OFF);
	skel->data->cfg.hrtimer_is_hard_off = member_offset(btf, "hrtimer", "is_hard", IRQTRACE_BPF_HRTIMER_IS_HARD_OFF);
	/* The sampled method's perf timer is not a handler of anything. */
	skel->data->cfg.own_timer_fn = kernel_symbol("perf_swevent_hrtimer");
	/* A KVM guest's steal clock: a sampled section that is mostly steal is the host's. */
	skel->data->cfg.steal_time = kernel_symbol("steal_time");
	skel->data->cfg.per_cpu_offset = kernel_symbol("__per_cpu_offset");
	/*
	 * hybrid: the preempt count and the pending softirqs (x86's per-CPU
	 * variables up to 6.1; later kernels keep them in pcpu_hot), to tell
	 * irq_exit's softirqs from local_bh_enable()'s.
	 */
	skel->data->cfg.preempt_count = kernel_symbol("__preempt_count");
	irq_stat = kernel_symbol("irq_stat");
	/* First in x86's irq_cpustat_t up to 6.1; later kernels keep it elsewhere (BTF says). */
	pending_off = member_offset(btf, "irq_cpustat_t", "__softirq_pending", btf ? NO_MEMBER : 0);
	skel->data->cfg.softirq_pending = irq_stat && pending_off != NO_MEMBER ? irq_stat + pending_off : 0;
	btf__free(btf);
}
