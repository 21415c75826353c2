// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: the histograms and counters the programs keep, written as
 * the kernel module's /dev/irqtrace_stats items ("stats"), and cleared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loader.h"

static __u64 hist_count(const struct irqtrace_bpf_hist_data *h)
{
	__u64 n = 0;
	int i;

	for (i = 0; i < IRQTRACE_HIST_BUCKETS; i++)
		n += h->buckets[i];
	return n;
}

static void fill_hist(struct irqtrace_hist *out, __u8 kind, __u8 method,
		      const struct irqtrace_bpf_hist_data *in)
{
	memset(out, 0, sizeof(*out));
	out->hdr.magic = IRQTRACE_MAGIC_HIST;
	out->hdr.version = IRQTRACE_ABI_VERSION;
	out->hdr.size = sizeof(*out);
	out->kind = kind;
	out->method = method;
	out->backend = IRQTRACE_BACKEND_EBPF;
	out->count = hist_count(in);
	out->sum_ns = in->sum_ns;
	out->max_ns = in->max_ns;
	memcpy(out->buckets, in->buckets, sizeof(out->buckets));
}

/* Counters per CPU, then each CPU's histograms, then each IRQ line's: as the module. */
int write_stats(void)
{
	struct irqtrace_bpf_hist_data *hists = calloc(nr_cpus * IRQTRACE_BPF_HIST_NR, sizeof(*hists));
	struct irqtrace_bpf_counters *counters = calloc(nr_cpus, sizeof(*counters));
	__u8 method = !strcmp(attached_method(), "exact") ? IRQTRACE_METHOD_EXACT :
		      !strcmp(attached_method(), "hybrid") ? IRQTRACE_METHOD_HYBRID :
		      IRQTRACE_METHOD_SAMPLED;
	__u8 running_method = strcmp(attached_method(), "off") ? method : 0;
	struct irqtrace_bpf_hist_data line;
	struct irqtrace_hist h;
	int cpu, items = 0;
	__u32 key, irq;

	if (!hists || !counters) {
		say("stats: out of memory");
		goto out;
	}
	key = 0;
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &key, counters);
	for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
		bpf_map_lookup_elem(bpf_map__fd(skel->maps.hists), &key, hists + key * nr_cpus);
	for (cpu = 0; cpu < nr_cpus; cpu++) {
		struct irqtrace_counters c = {
			.hdr = { IRQTRACE_MAGIC_COUNTERS, IRQTRACE_ABI_VERSION, sizeof(c) },
			.backend = IRQTRACE_BACKEND_EBPF,
			.irqs_off_method = running_method,
			.running = attached_lines() ? IRQTRACE_RUNNING_IRQ_LINES : 0,
			.cpu = cpu,
			.recorded = counters[cpu].recorded,
			.dropped_ring = counters[cpu].dropped_ring,
			.idle_excluded = counters[cpu].idle_excluded,
			.samples = counters[cpu].samples,
		};

		for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
			c.seen += hist_count(&hists[key * nr_cpus + cpu]);
		write_out(&c, sizeof(c));
		items++;
	}
	for (cpu = 0; cpu < nr_cpus; cpu++) {
		fill_hist(&h, IRQTRACE_KIND_IRQS_OFF, method, &hists[IRQTRACE_BPF_HIST_IRQS_OFF * nr_cpus + cpu]);
		h.cpu = cpu;
		write_out(&h, sizeof(h));
		items++;
		fill_hist(&h, IRQTRACE_KIND_SOFTIRQS_OFF, IRQTRACE_METHOD_SAMPLED,
			  &hists[IRQTRACE_BPF_HIST_SOFTIRQS_OFF * nr_cpus + cpu]);
		h.cpu = cpu;
		write_out(&h, sizeof(h));
		items++;
	}
	for (irq = 0; irq < IRQTRACE_BPF_MAX_IRQS; irq++) {
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.line_hists), &irq, &line) || !hist_count(&line))
			continue;
		fill_hist(&h, IRQTRACE_KIND_IRQ_LINE, IRQTRACE_METHOD_EXACT, &line);
		h.irq = irq;
		write_out(&h, sizeof(h));
		items++;
	}
	fflush(stdout);
out:
	free(hists);
	free(counters);
	return items;
}

void clear_stats(void)
{
	void *zeros = calloc(nr_cpus, sizeof(struct irqtrace_bpf_hist_data));
	struct irqtrace_bpf_hist_data line = {};
	__u32 key;

	if (!zeros) {
		say("clear: out of memory");
		return;
	}
	for (key = 0; key < IRQTRACE_BPF_HIST_NR; key++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.hists), &key, zeros, BPF_ANY);
	key = 0;
	bpf_map_update_elem(bpf_map__fd(skel->maps.counters), &key, zeros, BPF_ANY);
	for (key = 0; key < IRQTRACE_BPF_MAX_IRQS; key++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.line_hists), &key, &line, BPF_ANY);
	free(zeros);
}
