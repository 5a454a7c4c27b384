//! The generator behind [`OsEntropy`](crate::OsEntropy): fast key erasure over ChaCha20, one
//! per thread, keyed from the OS.
//!
//! A `getrandom` syscall per secret cost more than the rest of a rotation together, so secrets
//! come from a userspace generator instead, built so that it keeps what the syscall gave:
//! - **unpredictable:** ChaCha20 keyed with 256 bits from the OS, re-keyed from the OS after
//!   every [`RESEED_AFTER`] bytes of output;
//! - **no backtracking:** each cipher run replaces the key with the first 32 bytes of its
//!   keystream and keeps the rest as output to hand out, erasing each byte as it is handed out
//!   (Bernstein's "fast-key-erasure"), so memory read later reveals nothing already handed out;
//! - **fork-safe:** the key remembers the process id it was drawn in; a forked child, whose id
//!   differs, draws a fresh key from the OS before its first output, so parent and child never
//!   share a secret.

use std::cell::RefCell;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use zeroize::Zeroize;

use crate::entropy::EntropyError;

/// Bytes of output after which the key is drawn from the OS again.
pub(crate) const RESEED_AFTER: usize = 64 * 1024;
/// Output kept per cipher run (a run is four ChaCha blocks: the next key, then this).
const CHUNK: usize = 224;
const KEY: usize = 32;

struct State {
    key: [u8; KEY],
    /// Keystream not handed out yet: `out[next..]` (bytes before `next` are zeroed).
    out: [u8; CHUNK],
    next: usize,
    pid: u32,
    produced: usize,
}

impl State {
    fn new(key: [u8; KEY], pid: u32) -> Self {
        State {
            key,
            out: [0; CHUNK],
            next: CHUNK,
            pid,
            produced: 0,
        }
    }

    /// Runs the cipher once: the next key, and a fresh `out`.
    fn run(&mut self) {
        let mut stream = [0u8; KEY + CHUNK];
        // Each key is used for one run only, so a fixed nonce never repeats a keystream.
        ChaCha20::new(&self.key.into(), &[0u8; 12].into()).apply_keystream(&mut stream);
        self.key.copy_from_slice(&stream[..KEY]);
        self.out.copy_from_slice(&stream[KEY..]);
        self.next = 0;
        stream.zeroize();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.key.zeroize();
        self.out.zeroize();
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Fills `dest` from this thread's generator, keying it from the OS first if it has no key, has
/// produced [`RESEED_AFTER`] bytes, or was keyed in another process (a fork).
pub(crate) fn fill(dest: &mut [u8]) -> Result<(), EntropyError> {
    STATE.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| EntropyError)?;
        let pid = std::process::id();
        let fresh = match slot.as_ref() {
            Some(s) => s.pid != pid || s.produced >= RESEED_AFTER,
            None => true,
        };
        if fresh {
            let mut key = [0u8; KEY];
            getrandom::fill(&mut key).map_err(|_| EntropyError)?;
            *slot = Some(State::new(key, pid));
            key.zeroize();
        }
        let state = slot.as_mut().ok_or(EntropyError)?;
        let mut filled = 0;
        while filled < dest.len() {
            if state.next == CHUNK {
                state.run();
            }
            let take = (dest.len() - filled).min(CHUNK - state.next);
            let from = state.next..state.next + take;
            dest[filled..filled + take].copy_from_slice(&state.out[from.clone()]);
            state.out[from].zeroize();
            state.next += take;
            filled += take;
        }
        state.produced = state.produced.saturating_add(dest.len());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_fills_differ_and_are_not_zero() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, b);
    }

    #[test]
    fn the_key_is_replaced_by_every_run_and_redrawn_after_the_budget() {
        let key = || STATE.with(|c| c.borrow().as_ref().map(|s| s.key));
        let mut out = [0u8; 48];
        fill(&mut out).unwrap();
        let k1 = key().unwrap();
        let mut run = [0u8; CHUNK];
        fill(&mut run).unwrap();
        let k2 = key().unwrap();
        assert_ne!(k1, k2, "a cipher run must replace the key");
        // Handed-out bytes are erased from the state; the key is never handed out.
        let left = STATE
            .with(|c| c.borrow().as_ref().map(|s| (s.out, s.next)))
            .unwrap();
        assert!(left.0[..left.1].iter().all(|&b| b == 0));
        assert!(!run.windows(KEY).any(|w| w == k2));
        let mut big = vec![0u8; RESEED_AFTER];
        fill(&mut big).unwrap();
        let produced = STATE
            .with(|c| c.borrow().as_ref().map(|s| s.produced))
            .unwrap();
        fill(&mut out).unwrap();
        let after = STATE
            .with(|c| c.borrow().as_ref().map(|s| s.produced))
            .unwrap();
        assert!(produced >= RESEED_AFTER);
        assert_eq!(after, out.len(), "a spent key is redrawn from the OS");
    }

    #[test]
    fn a_key_drawn_in_another_process_is_redrawn() {
        let mut out = [0u8; 32];
        fill(&mut out).unwrap();
        // As a forked child sees its parent's state: same key, another process id.
        STATE.with(|c| {
            if let Some(s) = c.borrow_mut().as_mut() {
                s.pid = s.pid.wrapping_add(1);
                s.produced = 7;
            }
        });
        let before = STATE.with(|c| c.borrow().as_ref().map(|s| s.key)).unwrap();
        fill(&mut out).unwrap();
        let (pid, produced) = STATE
            .with(|c| c.borrow().as_ref().map(|s| (s.pid, s.produced)))
            .unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(
            produced,
            out.len(),
            "the inherited key was replaced, not used"
        );
        // The output is not what the inherited state would have produced.
        let mut stream = [0u8; KEY + CHUNK];
        ChaCha20::new(&before.into(), &[0u8; 12].into()).apply_keystream(&mut stream);
        assert!(!stream.windows(out.len()).any(|w| w == out));
    }
}
