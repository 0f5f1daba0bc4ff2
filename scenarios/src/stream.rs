//! Parallel work whose results stream out in order: items are handed to the workers in
//! index order, and each result is passed to `emit` as soon as it and every result before it
//! are ready. `check`, `mutants` and `corpus` print their rows this way, so the first row
//! appears as soon as it is done, the output is the same for any number of workers, and an
//! interrupted run keeps every row already printed.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `work(i)` for `i in 0..n` on the rayon pool and calls `emit(i, result)` on the calling
/// thread in order of `i`. `emit` returning `Break` stops handing out new items (items in
/// progress finish and are dropped).
pub fn in_order<R: Send>(
    n: usize,
    work: impl Fn(usize) -> R + Sync,
    mut emit: impl FnMut(usize, R) -> ControlFlow<()>,
) {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        let (next, stop, work) = (&next, &stop, &work);
        scope.spawn(move || {
            let workers = rayon::current_num_threads().min(n.max(1));
            rayon::scope(|s| {
                for _ in 0..workers {
                    let tx = tx.clone();
                    s.spawn(move |_| loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || tx.send((i, work(i))).is_err() {
                            break;
                        }
                    });
                }
            });
        });
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                if emit(want, r).is_break() {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                want += 1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_out_in_order_and_break_stops_the_work() {
        let mut seen = Vec::new();
        in_order(
            50,
            |i| i * i,
            |i, r| {
                seen.push((i, r));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(seen, (0..50).map(|i| (i, i * i)).collect::<Vec<_>>());
        let mut first = Vec::new();
        in_order(
            1000,
            |i| i,
            |i, _| {
                first.push(i);
                if i == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(first, vec![0, 1, 2, 3]);
    }
}
