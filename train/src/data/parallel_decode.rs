//! Decoding many videos at once: worker threads take the next video, a bounded queue holds
//! what they decoded, and the consumer sees the results in dataset order (so a cache written
//! from them does not depend on the number of workers or their timing).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

/// Runs `decode(i)` for `i in 0..count` on `workers` threads, with at most `queue` results
/// waiting, and hands each result to `consume(i, result)` in order of `i`. `consume` returns
/// `Ok(false)` to stop early (the workers then finish the video in hand and end) or an error,
/// which is returned.
pub fn decode_in_order<T: Send, E>(
    count: usize,
    workers: usize,
    queue: usize,
    decode: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> Result<bool, E>,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<(usize, T)>(queue.max(1));
        for _ in 0..workers.max(1) {
            let (tx, next, stop, decode) = (tx.clone(), &next, &stop, &decode);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || tx.send((i, decode(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut in_order = || {
            let mut waiting = BTreeMap::new();
            let mut want = 0;
            for (i, result) in rx.iter() {
                waiting.insert(i, result);
                while let Some(result) = waiting.remove(&want) {
                    if !consume(want, result)? {
                        return Ok(());
                    }
                    want += 1;
                }
            }
            Ok(())
        };
        let outcome = in_order();
        // Stopped early or failed: let the workers go (a send to a dropped queue fails).
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_arrive_in_order_whatever_the_timing() {
        // Early items take longest, so they finish last.
        let slow_first = |i: usize| {
            std::thread::sleep(Duration::from_millis((20 - i as u64) * 2));
            i * 10
        };
        let mut seen = Vec::new();
        decode_in_order(20, 4, 2, slow_first, |i, v| {
            seen.push((i, v));
            Ok::<_, ()>(true)
        })
        .unwrap();
        assert_eq!(seen, (0..20).map(|i| (i, i * 10)).collect::<Vec<_>>());
    }

    #[test]
    fn an_early_stop_or_an_error_ends_the_workers() {
        let decoded = AtomicUsize::new(0);
        let decode = |i: usize| {
            decoded.fetch_add(1, Ordering::Relaxed);
            i
        };
        let mut seen = 0;
        decode_in_order(10_000, 3, 2, decode, |i, _| {
            seen += 1;
            Ok::<_, ()>(i < 4)
        })
        .unwrap();
        assert_eq!(seen, 5);
        assert!(decoded.load(Ordering::Relaxed) < 100, "the workers went on decoding");
        let err = decode_in_order(10_000, 3, 2, |i| i, |i, _| if i == 7 { Err(format!("bad {i}")) } else { Ok(true) });
        assert_eq!(err, Err("bad 7".to_owned()));
    }
}
