//! The names of everything the queue declares, derived from one prefix, and
//! the retry schedule. Pure: both backends use it, and the docs describe it
//! (docs/queue-and-storage.md).

use std::time::Duration;

use super::{QueueError, QueueOptions};

/// The routing key of job messages on the jobs exchange.
pub const JOB_ROUTING_KEY: &str = "job";
/// The queue's priority range: routine = 1, stat = 2.
pub const MAX_PRIORITY: u8 = 2;

/// Headers on dead-lettered (and retried) messages.
pub const HEADER_LAST_ERROR: &str = "x-neurobatch-last-error";
pub const HEADER_DEAD_REASON: &str = "x-neurobatch-dead-reason";
pub const HEADER_ATTEMPTS: &str = "x-neurobatch-attempts";
/// Errors longer than this are cut (at a character boundary) before they go into a header.
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Direct exchange the scheduler publishes to, and where retries come back.
    pub jobs_exchange: String,
    /// The durable priority queue the workers consume.
    pub jobs_queue: String,
    /// Direct exchange in front of the per-delay retry queues.
    pub retry_exchange: String,
    /// Fanout exchange and queue for jobs that will not be retried.
    pub dead_exchange: String,
    pub dead_queue: String,
    /// Topic exchange for review events (`<reason>.<model>`).
    pub review_exchange: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            jobs_exchange: format!("{prefix}.jobs"),
            jobs_queue: format!("{prefix}.jobs"),
            retry_exchange: format!("{prefix}.retry"),
            dead_exchange: format!("{prefix}.dead"),
            dead_queue: format!("{prefix}.dead"),
            review_exchange: format!("{prefix}.review"),
        }
    }

    /// The retry queue for one delay. Named by the delay, not the attempt,
    /// so a changed schedule declares new queues instead of clashing with
    /// the arguments of existing ones.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.{}ms", self.retry_exchange, delay.as_millis())
    }

    /// The routing key that leads to [`Names::retry_queue`] on the retry exchange.
    pub fn retry_routing_key(delay: Duration) -> String {
        format!("delay.{}ms", delay.as_millis())
    }
}

impl QueueOptions {
    /// How long a job waits after its attempt `failed_attempt` (1-based)
    /// failed: `retry_initial · 2^(failed_attempt−1)`, at most `retry_max`.
    pub fn retry_delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(31);
        let factor = 1u32 << exp;
        self.retry_initial.checked_mul(factor).map_or(self.retry_max, |d| d.min(self.retry_max))
    }

    /// The distinct delays of the schedule, one per retry queue.
    pub fn retry_delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts).map(|a| self.retry_delay(a)).collect();
        delays.dedup();
        delays
    }

    pub fn validate(&self) -> Result<(), QueueError> {
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 100
            || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(QueueError::Options(format!(
                "prefix `{p}`: expected 1 to 100 letters, digits, `_`, `-` or `.`"
            )));
        }
        if self.max_attempts == 0 {
            return Err(QueueError::Options("max_attempts: at least 1".into()));
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return Err(QueueError::Options("retry delays: need 0 < retry_initial <= retry_max".into()));
        }
        if self.retry_max > Duration::from_secs(u64::from(u32::MAX) / 1000) {
            return Err(QueueError::Options("retry_max: at most 49 days (the broker's TTL limit)".into()));
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return Err(QueueError::Options("reconnect delays: need 0 < reconnect_initial <= reconnect_max".into()));
        }
        if self.connection_name.is_empty() || self.connection_name.len() > 200 {
            return Err(QueueError::Options("connection_name: 1 to 200 characters".into()));
        }
        Ok(())
    }

    /// The wait before reconnect try `n` (0-based): doubling from
    /// `reconnect_initial`, at most `reconnect_max`.
    pub(crate) fn reconnect_delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.min(20);
        self.reconnect_initial.checked_mul(factor).map_or(self.reconnect_max, |d| d.min(self.reconnect_max))
    }
}

/// An error message cut to [`MAX_ERROR_BYTES`] at a character boundary.
pub(crate) fn clip_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// AMQP topic matching: `*` is one word, `#` zero or more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|skip| go(rest, &k[skip..])),
            Some((&w, rest)) => match k.split_first() {
                Some((&kw, krest)) => (w == "*" || w == kw) && go(rest, krest),
                None => false,
            },
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> QueueOptions {
        QueueOptions {
            max_attempts: 5,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(100),
            ..QueueOptions::default()
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let o = opts();
        let got: Vec<u64> = (1..=5).map(|a| o.retry_delay(a).as_secs()).collect();
        assert_eq!(got, vec![30, 60, 100, 100, 100]);
        assert_eq!(o.retry_delays(), vec![Duration::from_secs(30), Duration::from_secs(60), Duration::from_secs(100)]);
        assert_eq!(o.retry_delay(200), Duration::from_secs(100));
        let single = QueueOptions { max_attempts: 1, ..opts() };
        assert!(single.retry_delays().is_empty());
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new("t1");
        assert_eq!(n.jobs_queue, "t1.jobs");
        assert_eq!(n.dead_queue, "t1.dead");
        assert_eq!(n.review_exchange, "t1.review");
        assert_eq!(n.retry_queue(Duration::from_millis(1500)), "t1.retry.1500ms");
        assert_eq!(Names::retry_routing_key(Duration::from_millis(1500)), "delay.1500ms");
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            QueueOptions { prefix: String::new(), ..opts() },
            QueueOptions { prefix: "a b".into(), ..opts() },
            QueueOptions { max_attempts: 0, ..opts() },
            QueueOptions { retry_max: Duration::from_secs(1), ..opts() },
            QueueOptions { retry_max: Duration::from_secs(60 * 86400), ..opts() },
        ] {
            assert!(matches!(bad.validate(), Err(QueueError::Options(_))), "{bad:?}");
        }
        assert!(opts().validate().is_ok());
    }

    #[test]
    fn errors_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_BYTES);
        let clipped = clip_error(&long);
        assert!(clipped.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(clip_error("short"), "short");
    }

    #[test]
    fn topic_patterns_match_like_rabbitmq() {
        assert!(topic_matches("#", "high_uncertainty.brain"));
        assert!(topic_matches("high_uncertainty.*", "high_uncertainty.brain"));
        assert!(!topic_matches("high_uncertainty.*", "out_of_distribution.brain"));
        assert!(topic_matches("*.brain", "out_of_distribution.brain"));
        assert!(topic_matches("#.brain", "brain"));
        assert!(!topic_matches("*.brain", "brain"));
        assert!(topic_matches("a.#.c", "a.b.b.c"));
        assert!(!topic_matches("a.b", "a.b.c"));
    }
}
