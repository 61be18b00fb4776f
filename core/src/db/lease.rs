//! What the reaper does with a job whose worker vanished (its lease expired):
//! the budget for lost workers, kept apart from the attempts a job spends on
//! its own errors. A lost worker spends no attempt; the job waits a backoff
//! that doubles per loss and runs again, unless it was the only job on
//! `poison_after` workers that vanished (a study that crashes its worker) or
//! lost `max_expiries` workers in all. Pure: the store applies the verdict.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::later;

/// The budget for lost workers (`worker.poison_after_crashes`,
/// `worker.max_lease_expiries`, and the queue's retry backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// A job that was the only one running on this many vanished workers is poison.
    pub poison_after: u32,
    /// A job whose workers vanished this many times in all is given up.
    pub max_expiries: u32,
    /// The wait after the first loss; it doubles per loss up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// The reaper's decision for one expired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseVerdict {
    /// Queued again (the attempt given back), published after `not_before`.
    Requeue { not_before: DateTime<Utc>, error: String },
    /// Given up: dead, and dead-lettered by the scheduler.
    Dead { error: String },
}

impl LeasePolicy {
    /// The verdict after `worker` vanished while holding the job, which has
    /// now lost `lost` workers, `lost_alone` of them while it was the only
    /// job they ran (both counting this one).
    pub fn verdict(&self, worker: &str, lost: i64, lost_alone: i64, now: DateTime<Utc>) -> LeaseVerdict {
        if lost_alone >= i64::from(self.poison_after) {
            return LeaseVerdict::Dead {
                error: format!(
                    "poison: the only job running on {lost_alone} workers that vanished (last {worker}); \
                     lease expired {lost} times"
                ),
            };
        }
        if lost >= i64::from(self.max_expiries) {
            return LeaseVerdict::Dead { error: format!("lease expired {lost} times (last worker {worker})") };
        }
        let wait = self.backoff(lost);
        LeaseVerdict::Requeue {
            not_before: later(now, wait),
            error: format!(
                "lease expired (worker {worker}; lost {lost} of {} workers, the attempt is not counted; \
                 runs again after {} s)",
                self.max_expiries,
                wait.as_secs()
            ),
        }
    }

    /// The wait before the job runs again after its `lost`-th lost worker.
    pub fn backoff(&self, lost: i64) -> Duration {
        let doublings = u32::try_from(lost.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.backoff_initial.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LeasePolicy {
        LeasePolicy {
            poison_after: 3,
            max_expiries: 6,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_lost_worker_requeues_with_a_doubling_backoff() {
        let p = policy();
        assert_eq!(p.backoff(1), Duration::from_secs(10));
        assert_eq!(p.backoff(2), Duration::from_secs(20));
        assert_eq!(p.backoff(3), Duration::from_secs(40));
        assert_eq!(p.backoff(4), Duration::from_secs(60), "capped");
        assert_eq!(p.backoff(1_000), Duration::from_secs(60), "no overflow");
        match p.verdict("w1", 2, 1, now()) {
            LeaseVerdict::Requeue { not_before, error } => {
                assert_eq!(not_before, now() + chrono::TimeDelta::seconds(20));
                assert!(error.contains("worker w1") && error.contains("not counted"), "{error}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn the_only_job_on_several_vanished_workers_is_poison() {
        let p = policy();
        assert!(matches!(p.verdict("w", 2, 2, now()), LeaseVerdict::Requeue { .. }));
        match p.verdict("w3", 3, 3, now()) {
            LeaseVerdict::Dead { error } => assert!(error.starts_with("poison: the only job running on 3"), "{error}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn losses_beside_other_jobs_are_not_poison_but_have_a_cap() {
        let p = policy();
        // Five losses, each while the worker ran other jobs too: not poison.
        assert!(matches!(p.verdict("w", 5, 0, now()), LeaseVerdict::Requeue { .. }));
        match p.verdict("w", 6, 2, now()) {
            LeaseVerdict::Dead { error } => assert!(error.starts_with("lease expired 6 times"), "{error}"),
            v => panic!("{v:?}"),
        }
    }
}
