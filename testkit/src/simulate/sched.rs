//! Deterministic interleaving of concurrent operations, one store call at a time.
//!
//! Every store call of the simulated nodes first passes a [`Pause`]: the first poll returns
//! `Pending` (waking its task at once) and records that the operation reached a scheduling
//! point. [`interleave`] polls one operation at a time; whenever the polled operation stops at
//! a scheduling point, the next operation to advance is drawn from the seed. So each *turn* is
//! exactly one store call of one operation, and the order in which store calls take effect —
//! the interleaving of loads and compare-and-swaps of concurrent clients — is a function of the
//! seed alone, whatever executor runs it. (An operation pending on real I/O keeps its turn
//! until the I/O completes, so real adapters keep the same determinism of call order.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use crate::faults::{Fault, Op};

/// SplitMix64: small, fast, and its whole output is determined by the seed.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `per_mille`/1000.
    pub(crate) fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// A new generator for a sub-stream.
    pub(crate) fn fork(&mut self) -> SplitMix {
        SplitMix(self.next())
    }
}

/// Something a store wrapper noticed during the current turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A fault was injected into a store call of operation `op`.
    Fault { op: usize, call: Op, fault: Fault },
    /// An invariant probe failed right after a store call of operation `op`.
    Breach {
        op: usize,
        rule: &'static str,
        detail: String,
    },
}

/// Shared between the scheduler and every simulated store: who is running, whether it just
/// reached a scheduling point, and what happened.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    yielded: AtomicBool,
    current: AtomicUsize,
    notes: Mutex<Vec<Note>>,
}

impl Gate {
    fn begin(&self, op: usize) {
        self.current.store(op, Ordering::SeqCst);
        self.yielded.store(false, Ordering::SeqCst);
    }

    fn take_yielded(&self) -> bool {
        self.yielded.swap(false, Ordering::SeqCst)
    }

    /// The operation whose turn it is.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    pub(crate) fn note(&self, n: Note) {
        match self.notes.lock() {
            Ok(mut v) => v.push(n),
            Err(p) => p.into_inner().push(n),
        }
    }

    pub(crate) fn take_notes(&self) -> Vec<Note> {
        match self.notes.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// A scheduling point: completes on the second poll.
    pub(crate) fn pause(&self) -> Pause<'_> {
        Pause {
            gate: self,
            done: false,
        }
    }
}

/// See [`Gate::pause`].
pub(crate) struct Pause<'a> {
    gate: &'a Gate,
    done: bool,
}

impl Future for Pause<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        self.done = true;
        self.gate.yielded.store(true, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A boxed operation future.
pub(crate) type OpFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `futs` to completion, interleaving them one store call at a time in an order drawn
/// from `rng`. Returns their outputs in input order.
pub(crate) async fn interleave<'a, T>(
    futs: Vec<OpFuture<'a, T>>,
    gate: &Gate,
    rng: &mut SplitMix,
) -> Vec<T> {
    let n = futs.len();
    let mut running: Vec<Option<OpFuture<'a, T>>> = futs.into_iter().map(Some).collect();
    let mut outs: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut active: Option<usize> = None;
    std::future::poll_fn(|cx| {
        loop {
            let i = match active {
                Some(i) => i,
                None => {
                    let open: Vec<usize> = (0..n).filter(|&i| running[i].is_some()).collect();
                    if open.is_empty() {
                        return Poll::Ready(());
                    }
                    let i = open[rng.below(open.len() as u64) as usize];
                    active = Some(i);
                    i
                }
            };
            let Some(fut) = running[i].as_mut() else {
                active = None;
                continue;
            };
            gate.begin(i);
            match fut.as_mut().poll(cx) {
                Poll::Ready(v) => {
                    outs[i] = Some(v);
                    running[i] = None;
                    active = None;
                }
                Poll::Pending => {
                    if gate.take_yielded() {
                        // At a scheduling point: let the seed pick who goes next.
                        active = None;
                    } else {
                        // Waiting on real I/O: keep the turn.
                        return Poll::Pending;
                    }
                }
            }
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn interleaving_follows_the_seed() {
        let run = |seed| {
            let gate = Gate::default();
            let log = Arc::new(Mutex::new(Vec::new()));
            let futs: Vec<OpFuture<'_, usize>> = (0..3)
                .map(|i: usize| {
                    let log = log.clone();
                    let gate = &gate;
                    Box::pin(async move {
                        for step in 0..3 {
                            gate.pause().await;
                            log.lock().unwrap().push((i, step));
                        }
                        i
                    }) as OpFuture<'_, usize>
                })
                .collect();
            let out =
                futures::executor::block_on(interleave(futs, &gate, &mut SplitMix::new(seed)));
            assert_eq!(out, vec![0, 1, 2]);
            log.lock().unwrap().clone()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert_eq!(run(3).len(), 9);
    }
}
