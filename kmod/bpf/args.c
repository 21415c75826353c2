// SPDX-License-Identifier: GPL-2.0
/*
 * irqtrace-bpf: its settings, the kernel module's parameters as key=value,
 * parsed and checked here (at start from argv, at run time from stdin).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/* "0-3,6" into a bitmap of at most max bits; false on a bad list. */
static bool parse_list(const char *text, unsigned int max, void (*set)(void *, unsigned int),
		       void *arg, char *why, size_t len)
{
	const char *p = text;

	if (!*p) {
		snprintf(why, len, "empty list");
		return false;
	}
	while (*p) {
		char *end;
		unsigned long a, b;

		if (!isdigit((unsigned char)*p))
			goto bad;
		a = strtoul(p, &end, 10);
		b = a;
		p = end;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				goto bad;
			b = strtoul(p, &end, 10);
			p = end;
		}
		if (a > b || b >= max) {
			snprintf(why, len, "%lu-%lu is outside 0..%u", a, b, max - 1);
			return false;
		}
		for (; a <= b; a++)
			set(arg, a);
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	return true;
bad:
	snprintf(why, len, "'%s' is not a list like 0-3,6", text);
	return false;
}

static void set_cpu(void *arg, unsigned int cpu)
{
	((__u64 *)arg)[cpu / 64] |= 1ULL << (cpu % 64);
}

static void set_irq(void *arg, unsigned int irq)
{
	((unsigned char *)arg)[irq] = 1;
}

/* "0-3,6" into a CPU bitmap of IRQTRACE_BPF_MAX_CPUS bits (set bits are added). */
bool parse_cpu_list(const char *text, __u64 *mask, char *why, size_t len)
{
	return parse_list(text, IRQTRACE_BPF_MAX_CPUS, set_cpu, mask, why, len);
}

static bool parse_u64(const char *value, __u64 *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*value))
		return false;
	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *value, bool *out)
{
	if (!strcmp(value, "1") || !strcmp(value, "y") || !strcmp(value, "Y")) {
		*out = true;
		return true;
	}
	if (!strcmp(value, "0") || !strcmp(value, "n") || !strcmp(value, "N")) {
		*out = false;
		return true;
	}
	return false;
}

/* Applies "key=value" to s; on refusal, why says so in one line. */
bool parse_setting(struct settings *s, const char *line, bool at_start, char *why, size_t len)
{
	char key[32];
	const char *value = strchr(line, '=');
	size_t klen;
	__u64 v;
	bool b;

	if (!value || value == line || (size_t)(value - line) >= sizeof(key)) {
		snprintf(why, len, "'%s' is not key=value", line);
		return false;
	}
	klen = value - line;
	memcpy(key, line, klen);
	key[klen] = '\0';
	value++;

	if (!strcmp(key, "method")) {
		if (strcmp(value, "auto") && strcmp(value, "exact") && strcmp(value, "hybrid") &&
		    strcmp(value, "sampled") && strcmp(value, "off")) {
			snprintf(why, len, "method: '%s' is not auto, exact, hybrid, sampled or off", value);
			return false;
		}
		snprintf(s->method, sizeof(s->method), "%s", value);
	} else if (!strcmp(key, "threshold_ns")) {
		if (!parse_u64(value, &v) || v < IRQTRACE_THRESHOLD_NS_MIN || v > IRQTRACE_THRESHOLD_NS_MAX) {
			snprintf(why, len, "threshold_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_THRESHOLD_NS_MIN,
				 (unsigned long long)IRQTRACE_THRESHOLD_NS_MAX);
			return false;
		}
		s->threshold_ns = v;
	} else if (!strcmp(key, "period_ns")) {
		if (!parse_u64(value, &v) || v < IRQTRACE_PERIOD_NS_MIN || v > IRQTRACE_PERIOD_NS_MAX) {
			snprintf(why, len, "period_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_PERIOD_NS_MIN,
				 (unsigned long long)IRQTRACE_PERIOD_NS_MAX);
			return false;
		}
		s->period_ns = v;
	} else if (!strcmp(key, "sample_floor_ns")) {
		_Static_assert(IRQTRACE_FLOOR_NS_MIN == 0, "a u64 needs only the maximum checked");
		if (!parse_u64(value, &v) || v > IRQTRACE_FLOOR_NS_MAX) {
			snprintf(why, len, "sample_floor_ns: '%s' is outside %llu..%llu", value,
				 (unsigned long long)IRQTRACE_FLOOR_NS_MIN,
				 (unsigned long long)IRQTRACE_FLOOR_NS_MAX);
			return false;
		}
		s->floor_ns = v;
	} else if (!strcmp(key, "stacks") || !strcmp(key, "idle")) {
		if (!parse_bool(value, &b)) {
			snprintf(why, len, "%s: '%s' is not 0 or 1", key, value);
			return false;
		}
		*(key[0] == 's' ? &s->stacks : &s->idle) = b;
	} else if (!strcmp(key, "softirqs")) {
		if (!parse_bool(value, &b) || b) {
			snprintf(why, len, "softirqs: the eBPF backend cannot measure softirqs off (no pinned BPF timer before Linux 6.7); use the kernel module");
			return false;
		}
	} else if (!strcmp(key, "cpus")) {
		__u64 cpus[IRQTRACE_BPF_MAX_CPUS / 64] = {};
		char sub[96];

		if (!strcmp(value, "all")) {
			memset(cpus, 0xff, sizeof(cpus));
		} else if (!parse_cpu_list(value, cpus, sub, sizeof(sub))) {
			snprintf(why, len, "cpus: %s", sub);
			return false;
		}
		memcpy(s->cpus, cpus, sizeof(cpus));
		snprintf(s->cpus_text, sizeof(s->cpus_text), "%s", value);
	} else if (!strcmp(key, "irqs")) {
		static unsigned char irqs[IRQTRACE_BPF_MAX_IRQS];
		char sub[96];

		memset(irqs, 0, sizeof(irqs));
		if (strcmp(value, "all") && strcmp(value, "none") &&
		    !parse_list(value, IRQTRACE_BPF_MAX_IRQS, set_irq, irqs, sub, sizeof(sub))) {
			snprintf(why, len, "irqs: %s", sub);
			return false;
		}
		s->irqs_all = !strcmp(value, "all");
		memcpy(s->irqs, irqs, sizeof(irqs));
		snprintf(s->irqs_text, sizeof(s->irqs_text), "%s", value);
	} else if (!strcmp(key, "ring_bytes")) {
		if (!at_start) {
			snprintf(why, len, "ring_bytes: can only be set at start");
			return false;
		}
		if (!parse_u64(value, &v) || v < 4096 || v > (1U << 30) || (v & (v - 1))) {
			snprintf(why, len, "ring_bytes: '%s' is not a power of two in 4096..1073741824", value);
			return false;
		}
		s->ring_bytes = v;
	} else {
		snprintf(why, len, "'%s' is not a setting (method, threshold_ns, period_ns, sample_floor_ns, stacks, idle, cpus, irqs, softirqs, ring_bytes)", key);
		return false;
	}
	return true;
}

bool irq_lines_wanted(const struct settings *s)
{
	unsigned int i;

	if (s->irqs_all)
		return true;
	for (i = 0; i < IRQTRACE_BPF_MAX_IRQS; i++)
		if (s->irqs[i])
			return true;
	return false;
}

void settings_default(struct settings *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "auto");
	s->threshold_ns = IRQTRACE_THRESHOLD_NS_DEFAULT;
	s->period_ns = IRQTRACE_PERIOD_NS_DEFAULT;
	s->floor_ns = IRQTRACE_FLOOR_NS_DEFAULT;
	s->stacks = true;
	memset(s->cpus, 0xff, sizeof(s->cpus));
	snprintf(s->cpus_text, sizeof(s->cpus_text), "all");
	snprintf(s->irqs_text, sizeof(s->irqs_text), "none");
	s->ring_bytes = 4 << 20;
}
