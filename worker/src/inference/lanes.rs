//! Inference lanes: numbered units of work (model calls) computed by several
//! lanes side by side and handed to one consumer strictly in unit order.
//!
//! Owns the claiming of units, the bound on how far the lanes may run ahead
//! of the consumer, reordering, and stopping every lane on the first error or
//! panic. The consumer sees exactly what a one-lane loop would show it, in the
//! same order, so a run's result does not depend on the number of lanes.
//! Does not own what a unit is ([`super::segmentation`] makes one a batch of
//! windows of one pass) nor which sessions a lane uses.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc};

use super::error::InferenceError;

/// Units a lane may run ahead of the consumer, per lane: enough that no lane
/// waits in steady state, few enough that the finished units waiting for
/// their turn stay a handful of batches.
const AHEAD_PER_LANE: usize = 2;

/// Which units are claimed and consumed, shared by the lanes and the consumer.
struct Claims {
    next: usize,
    consumed: usize,
    stop: bool,
}

/// Computes units `0..units` with `compute(lane, unit)` on `lanes` threads and
/// hands each result to `consume(unit, result)` in unit order, on the calling
/// thread. One lane (or fewer than two units) runs on the calling thread with
/// no thread started. The first error, from a unit or from the consumer, ends
/// the run: the lanes finish the unit in hand and stop.
pub(super) fn run_in_order<T, C, F>(
    lanes: usize,
    units: usize,
    compute: C,
    mut consume: F,
) -> Result<(), InferenceError>
where
    T: Send,
    C: Fn(usize, usize) -> Result<T, InferenceError> + Sync,
    F: FnMut(usize, T) -> Result<(), InferenceError>,
{
    if lanes <= 1 || units <= 1 {
        for unit in 0..units {
            consume(unit, compute(0, unit)?)?;
        }
        return Ok(());
    }
    let ahead = AHEAD_PER_LANE * lanes;
    let claims = Mutex::new(Claims { next: 0, consumed: 0, stop: false });
    let turn = Condvar::new();
    let lock = || claims.lock().unwrap_or_else(PoisonError::into_inner);
    let (tx, rx) = mpsc::channel::<(usize, Result<T, InferenceError>)>();

    std::thread::scope(|scope| {
        for lane in 0..lanes {
            let (tx, compute, turn, lock) = (tx.clone(), &compute, &turn, &lock);
            scope.spawn(move || {
                while let Some(unit) = claim(lock(), turn, units, ahead) {
                    let result = catch_unwind(AssertUnwindSafe(|| compute(lane, unit))).unwrap_or_else(|panic| {
                        let reason = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic without a message".into());
                        Err(InferenceError::Lane { lane, unit, reason })
                    });
                    let failed = result.is_err();
                    if tx.send((unit, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);

        let mut waiting: BTreeMap<usize, Result<T, InferenceError>> = BTreeMap::new();
        let mut deliver = || -> Result<(), InferenceError> {
            for unit in 0..units {
                let result = loop {
                    if let Some(r) = waiting.remove(&unit) {
                        break r;
                    }
                    match rx.recv() {
                        Ok((u, r)) => {
                            waiting.insert(u, r);
                        }
                        Err(_) => {
                            let reason = "every lane stopped before this unit was computed".to_string();
                            return Err(InferenceError::Lane { lane: 0, unit, reason });
                        }
                    }
                };
                consume(unit, result?)?;
                lock().consumed = unit + 1;
                turn.notify_all();
            }
            Ok(())
        };
        let outcome = deliver();
        // Error or not, no lane claims another unit; waiting lanes wake and leave.
        lock().stop = true;
        turn.notify_all();
        outcome
    })
}

/// The next unit for a lane, waiting while it would run more than `ahead`
/// units beyond the consumer; `None` when all are claimed or the run stopped.
fn claim(mut c: MutexGuard<'_, Claims>, turn: &Condvar, units: usize, ahead: usize) -> Option<usize> {
    while !c.stop && c.next < units && c.next >= c.consumed + ahead {
        c = turn.wait(c).unwrap_or_else(PoisonError::into_inner);
    }
    if c.stop || c.next >= units {
        return None;
    }
    c.next += 1;
    Some(c.next - 1)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Units with uneven durations, so that lanes finish out of order.
    fn slow_square(unit: usize) -> usize {
        std::thread::sleep(Duration::from_millis(((unit * 7) % 5) as u64));
        unit * unit
    }

    #[test]
    fn results_arrive_in_unit_order_whatever_the_lanes() {
        for lanes in [1, 2, 3, 5] {
            let mut seen = Vec::new();
            let used = Mutex::new(vec![0usize; lanes]);
            run_in_order(
                lanes,
                40,
                |lane, unit| {
                    used.lock().unwrap()[lane] += 1;
                    Ok(slow_square(unit))
                },
                |unit, sq| {
                    seen.push((unit, sq));
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, (0..40).map(|u| (u, u * u)).collect::<Vec<_>>(), "{lanes} lanes");
            let used = used.into_inner().unwrap();
            assert_eq!(used.iter().sum::<usize>(), 40);
            if lanes > 1 {
                assert!(used.iter().filter(|&&n| n > 0).count() > 1, "{lanes} lanes shared the work: {used:?}");
            }
        }
    }

    #[test]
    fn lanes_never_run_further_ahead_than_the_bound() {
        let consumed = AtomicUsize::new(0);
        let worst = AtomicUsize::new(0);
        run_in_order(
            2,
            30,
            |_, unit| {
                let lead = unit - consumed.load(Ordering::SeqCst).min(unit);
                worst.fetch_max(lead, Ordering::SeqCst);
                Ok(unit)
            },
            |unit, _| {
                std::thread::sleep(Duration::from_millis(2));
                consumed.store(unit + 1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert!(worst.load(Ordering::SeqCst) < 2 * AHEAD_PER_LANE, "{}", worst.load(Ordering::SeqCst));
        assert!(worst.load(Ordering::SeqCst) > 0, "the lanes did run ahead");
    }

    #[test]
    fn a_unit_error_stops_the_run_and_reaches_the_caller() {
        let computed = AtomicUsize::new(0);
        let mut consumed = Vec::new();
        let err = run_in_order(
            2,
            1000,
            |_, unit| {
                computed.fetch_add(1, Ordering::SeqCst);
                if unit == 7 { Err(InferenceError::Plan { reason: "unit 7 is bad".into() }) } else { Ok(unit) }
            },
            |unit, _| {
                consumed.push(unit);
                Ok(())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("unit 7 is bad"), "{err}");
        assert_eq!(consumed, (0..7).collect::<Vec<_>>());
        assert!(computed.load(Ordering::SeqCst) < 7 + 2 * 2 * AHEAD_PER_LANE, "the lanes stopped");
    }

    #[test]
    fn a_consumer_error_and_a_panic_stop_the_lanes() {
        let err = run_in_order(
            3,
            500,
            |_, unit| Ok(unit),
            |unit, _| if unit == 3 { Err(InferenceError::Plan { reason: "full".into() }) } else { Ok(()) },
        )
        .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");

        let err =
            run_in_order(2, 50, |_, unit| if unit == 5 { panic!("kernel exploded") } else { Ok(unit) }, |_, _| Ok(()))
                .unwrap_err();
        assert!(matches!(&err, InferenceError::Lane { unit: 5, reason, .. } if reason == "kernel exploded"), "{err}");
    }
}
