/*-------------------------------------------------------------------------
 * ratelimit.c
 *		Client-side rate limit per Coding team: requests are spaced evenly
 *		(GCRA), so no sliding second ever holds more than rate_limit of them.
 *
 * Coding limits each token to about 20 requests per second per Action with
 * a sliding window.  A token bucket with a one-second burst can send twice
 * the rate within one second and trip it; even spacing cannot.  Spacing
 * has 2% headroom so network jitter between our clock and Coding's never
 * puts rate_limit + 1 requests into one of its windows.
 *
 * When coding_fdw is in shared_preload_libraries, the schedule of each team
 * lives in shared memory, so all backends and the workers share one limit.
 * Otherwise each backend keeps its own (documented in the README).  Only
 * plain numbers are shared: never pointers or other process-local things.
 *
 * A schedule is one team at one rate: servers of a team with another
 * rate_limit (anyone may create one) have their own, so a server with
 * rate_limit 0.001 cannot push the team's next send 17 minutes out for
 * everyone.  And no send time is reserved more than RATE_HORIZON_US
 * ahead: a caller further back waits without holding one, so callers that
 * are cancelled while they wait (statement_timeout, say) cannot push the
 * schedule out however many they are; an unused time is also given back.
 *-------------------------------------------------------------------------
 */
#include "coding_fdw.h"

#include <time.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"

#define RATE_SLOTS		64
#define RATE_TEAM_LEN	64
#define RATE_HEADROOM	1.02
#define RATE_HORIZON_US	1000000	/* reserve at most this far ahead */

/* The next free send time of one team at one rate (CLOCK_MONOTONIC us). */
typedef struct RateSlot
{
	char		team[RATE_TEAM_LEN];
	int64		interval_us;	/* the spacing: 1 s / rate, with headroom */
	int64		next_us;
} RateSlot;

typedef struct RateShared
{
	slock_t		lock;
	RateSlot	slots[RATE_SLOTS];
} RateShared;

static RateShared *rate_shared = NULL;	/* NULL: not preloaded */
static RateSlot *rate_local = NULL;		/* this backend's own slots */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* monotonic_us: now on the system-wide monotonic clock, in microseconds. */
int64
coding_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* rate_shmem_request: ask for the shared schedule (preload only). */
static void
rate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(RateShared)));
}

/* rate_shmem_startup: attach to (or create) the shared schedule. */
static void
rate_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rate_shared = ShmemInitStruct("coding_fdw rate limit", sizeof(RateShared), &found);
	if (!found)
	{
		memset(rate_shared, 0, sizeof(RateShared));
		SpinLockInit(&rate_shared->lock);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * coding_ratelimit_init
 *		From _PG_init: share the schedule when loaded at server start.
 */
void
coding_ratelimit_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rate_shmem_startup;
}

/* coding_ratelimit_shared: whether backends share one schedule. */
bool
coding_ratelimit_shared(void)
{
	return rate_shared != NULL;
}

/*
 * take_slot
 *		The schedule slot of a team at one spacing in "slots", or NULL if
 *		there is none (a name too long for a slot shares the schedule of
 *		its first RATE_TEAM_LEN - 1 bytes).  With "create", a missing one
 *		takes an empty slot or one whose schedule is past (its next free time
 *		has come, so it holds nothing anyone waits for): the slots are never
 *		used up, however many teams and rates come and go.  Called under the
 *		lock if shared.
 */
static RateSlot *
take_slot(RateSlot *slots, const char *team, int64 interval, int64 now, bool create)
{
	char		key[RATE_TEAM_LEN];
	int			i;

	strlcpy(key, team, RATE_TEAM_LEN);
	for (i = 0; i < RATE_SLOTS; i++)
		if (slots[i].interval_us == interval && strcmp(slots[i].team, key) == 0)
			return &slots[i];
	if (!create)
		return NULL;
	for (i = 0; i < RATE_SLOTS; i++)
		if (slots[i].team[0] == '\0' || slots[i].next_us <= now)
		{
			strlcpy(slots[i].team, key, RATE_TEAM_LEN);
			slots[i].interval_us = interval;
			slots[i].next_us = 0;
			return &slots[i];
		}
	return NULL;
}

/*
 * reserve_in
 *		Reserve the slot's next send time if it is at most RATE_HORIZON_US
 *		away; else reserve nothing.  Returns whether it reserved; *at is the
 *		time reserved, or when to ask again.
 */
static bool
reserve_in(RateSlot *slot, int64 now, int64 *at)
{
	*at = Max(now, slot->next_us);
	if (*at - now > RATE_HORIZON_US)
		return false;
	slot->next_us = *at + slot->interval_us;
	return true;
}

/*
 * coding_ratelimit_reserve
 *		Reserve a send time of a team at "rate" requests per second: true
 *		with *at the time reserved (monotonic microseconds; the caller sends
 *		at or after it), or false with *at the time to ask again, when the
 *		next free time is more than RATE_HORIZON_US away.  Never waits and
 *		never raises.
 */
bool
coding_ratelimit_reserve(const char *team, double rate, int64 *at)
{
	int64		now = coding_monotonic_us();
	int64		interval;
	RateSlot   *slot;
	bool		reserved;

	*at = now;
	if (rate <= 0)
		return true;
	interval = (int64) (1000000.0 * RATE_HEADROOM / rate);

	if (rate_shared)
	{
		SpinLockAcquire(&rate_shared->lock);
		slot = take_slot(rate_shared->slots, team, interval, now, true);
		if (slot)
		{
			reserved = reserve_in(slot, now, at);
			SpinLockRelease(&rate_shared->lock);
			return reserved;
		}
		SpinLockRelease(&rate_shared->lock);
	}

	/* per backend: not preloaded, or every shared slot taken */
	if (rate_local == NULL)
		rate_local = MemoryContextAllocZero(TopMemoryContext,
											sizeof(RateSlot) * RATE_SLOTS);
	slot = take_slot(rate_local, team, interval, now, true);
	if (slot == NULL)
	{
		/* RATE_SLOTS schedules all busy this very second: ask again soon */
		*at = now + RATE_HORIZON_US / 10;
		return false;
	}
	return reserve_in(slot, now, at);
}

/*
 * coding_ratelimit_release
 *		Give back a send time that coding_ratelimit_reserve reserved and that
 *		was never used (the call was cancelled or abandoned while it waited
 *		for it), if no later reservation followed it.  The horizon bounds
 *		what unused times can cost the others; this returns the last one.
 */
void
coding_ratelimit_release(const char *team, double rate, int64 at)
{
	int64		interval;
	RateSlot   *slot;

	if (rate <= 0 || at < 0)
		return;
	interval = (int64) (1000000.0 * RATE_HEADROOM / rate);
	if (rate_shared)
	{
		SpinLockAcquire(&rate_shared->lock);
		slot = take_slot(rate_shared->slots, team, interval, 0, false);
		if (slot && slot->next_us == at + interval)
			slot->next_us = at;
		SpinLockRelease(&rate_shared->lock);
		if (slot)
			return;
	}
	if (rate_local && (slot = take_slot(rate_local, team, interval, 0, false)) != NULL &&
		slot->next_us == at + interval)
		slot->next_us = at;
}
