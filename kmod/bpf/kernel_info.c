// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: what the context probes need to know of the running kernel,
 * found before the programs load: struct hrtimer's layout from its BTF, and
 * from /proc/kallsyms the sampled method's own timer function and where the
 * steal clock is.
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

/* offsetof(struct hrtimer, member) from the kernel's BTF, or fallback without it. */
static __u32 hrtimer_offset(const struct btf *btf, const char *member, __u32 fallback)
{
	const struct btf_member *m;
	const struct btf_type *t;
	int id, i;

	if (!btf)
		return fallback;
	id = btf__find_by_name_kind(btf, "hrtimer", BTF_KIND_STRUCT);
	if (id < 0)
		return fallback;
	t = btf__type_by_id(btf, id);
	m = btf_members(t);
	for (i = 0; i < btf_vlen(t); i++, m++)
		if (!strcmp(btf__name_by_offset(btf, m->name_off), member))
			return btf_member_bit_offset(t, i) / 8;
	return fallback;
}

/* What the context probes need to know of this kernel, before load. */
void configure_context(void)
{
	struct btf *btf = access("/sys/kernel/btf/vmlinux", R_OK) ? NULL : btf__load_vmlinux_btf();

	if (libbpf_get_error(btf))
		btf = NULL;
	skel->data->cfg.hrtimer_function_off = hrtimer_offset(btf, "function", IRQTRACE_BPF_HRTIMER_FUNCTION_OFF);
	skel->data->cfg.hrtimer_is_hard_off = hrtimer_offset(btf, "is_hard", IRQTRACE_BPF_HRTIMER_IS_HARD_OFF);
	/* The sampled method's perf timer is not a handler of anything. */
	skel->data->cfg.own_timer_fn = kernel_symbol("perf_swevent_hrtimer");
	/* A KVM guest's steal clock: a sampled section that is mostly steal is the host's. */
	skel->data->cfg.steal_time = kernel_symbol("steal_time");
	skel->data->cfg.per_cpu_offset = kernel_symbol("__per_cpu_offset");
	btf__free(btf);
}
