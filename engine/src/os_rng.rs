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
//! - **fork-safe:** the key remembers the fork epoch it was drawn in (see [`fork`]); a forked
//!   child, whose epoch differs, draws a fresh key from the OS before its first output, so
//!   parent and child never share a secret.

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
    /// The [`fork::epoch`] the key was drawn in.
    epoch: u64,
    produced: usize,
}

impl State {
    fn new(key: [u8; KEY], epoch: u64) -> Self {
        State {
            key,
            out: [0; CHUNK],
            next: CHUNK,
            epoch,
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

/// Fork detection without a syscall per draw.
///
/// [`epoch`] is a number that differs in a forked child from its parent's: a generation that a
/// `pthread_atfork` child handler bumps in every child, read with one relaxed atomic load. It
/// replaces a per-draw `getpid` (a syscall: about a fifth of a rotation's time). Where the
/// handler is not available (another OS, or registering it failed) the epoch is the process
/// id, as before: slower, equally safe.
///
/// What the handler sees: every `fork()` of the C library (and so `daemon()`, and the fork
/// behind `std::process::Command` wherever it does not use `posix_spawn`), whichever thread
/// forks. What it does not see, and why that is safe or out of scope:
/// - `vfork()` and `posix_spawn`: the child shares the parent's memory until it execs, so a
///   draw there consumes the parent's output instead of repeating it (and Rust runs nothing
///   there anyway);
/// - `_Fork()` and raw `clone`/`fork` syscalls, which skip the C library's fork handlers: the
///   C library's own state (locks, caches) is not reset in such a child either, so only
///   async-signal-safe calls are sound there until it execs, and drawing secrets is not one.
///
/// Checking the process id as well, only when the generation changed, would prove nothing new
/// (a changed generation already means a fork); checking it on every draw is the syscall this
/// module exists to avoid.
mod fork {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    // std's atomics, not the `sync` shim: a process-wide counter bumped by the C library,
    // outside any loom model.
    /// Forks between the process that registered the handler and this one.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    /// Whether the handler is registered: then `GENERATION` moves in every forked child.
    static HANDLER: AtomicBool = AtomicBool::new(false);
    static REGISTER: Once = Once::new();

    /// Registers the handler, once per process (a forked child inherits the registration).
    /// Called before a key is drawn, so no key predates it.
    pub(super) fn watch() {
        REGISTER.call_once(|| HANDLER.store(register(), Ordering::Relaxed));
    }

    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
    ))]
    #[allow(unsafe_code)]
    fn register() -> bool {
        /// The handler: runs in the child, on the forking thread, before `fork` returns there.
        /// One atomic increment: async-signal-safe, as a fork handler must be.
        extern "C" fn forked_child() {
            GENERATION.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `pthread_atfork` only records three function pointers; the one given is a
        // plain `extern "C" fn` of this crate with no arguments, that touches nothing but a
        // static atomic, and stays valid while this crate's code is loaded (glibc removes the
        // handlers of a library it unloads). No pointer to data is passed.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) == 0 }
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
    )))]
    fn register() -> bool {
        false
    }

    /// This process's fork epoch: the generation if the handler is registered, else the
    /// process id. Which of the two is fixed once [`watch`] has run (a thread calls it before
    /// its first key), so a thread only ever compares epochs of one kind.
    #[inline]
    pub(super) fn epoch() -> u64 {
        if HANDLER.load(Ordering::Relaxed) {
            GENERATION.load(Ordering::Relaxed)
        } else {
            u64::from(std::process::id())
        }
    }

    #[cfg(test)]
    pub(super) fn handler_registered() -> bool {
        HANDLER.load(Ordering::Relaxed)
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
        let fresh = match slot.as_ref() {
            Some(s) => s.epoch != fork::epoch() || s.produced >= RESEED_AFTER,
            None => true,
        };
        if fresh {
            // Before the first key of the process: from then on every fork is seen.
            fork::watch();
            let mut key = [0u8; KEY];
            getrandom::fill(&mut key).map_err(|_| EntropyError)?;
            *slot = Some(State::new(key, fork::epoch()));
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
        // As a forked child sees its parent's state: same key, drawn in another fork epoch.
        STATE.with(|c| {
            if let Some(s) = c.borrow_mut().as_mut() {
                s.epoch = s.epoch.wrapping_add(1);
                s.produced = 7;
            }
        });
        let before = STATE.with(|c| c.borrow().as_ref().map(|s| s.key)).unwrap();
        fill(&mut out).unwrap();
        let (epoch, produced) = STATE
            .with(|c| c.borrow().as_ref().map(|s| (s.epoch, s.produced)))
            .unwrap();
        assert_eq!(epoch, fork::epoch());
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

    /// A real `fork()`: the child's first secret must not be the parent's next one (without
    /// fork detection they are equal, byte for byte: both would hand out the same buffered
    /// keystream). The child runs only `fill` (this thread's generator is keyed and the
    /// handler registered, so it neither allocates nor takes a lock), `write` and `_exit`:
    /// nothing that is unsound in the child of a multi-threaded test runner.
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn a_forked_child_never_repeats_its_parents_output() {
        let mut warm = [0u8; 32];
        fill(&mut warm).unwrap();
        assert!(fork::handler_registered(), "the fork handler is registered");
        let before = fork::epoch();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `pipe` writes two descriptors into the array it is given, which has two.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child runs only async-signal-safe code until `_exit` (see above).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // The child: byte 0 says whether fill succeeded and the epoch moved, then 32 bytes.
            let mut msg = [0u8; 33];
            let moved = fork::epoch() != before;
            msg[0] = u8::from(fill(&mut msg[1..]).is_ok() && moved);
            // SAFETY: writes `msg` (33 bytes, alive) to the pipe; `_exit` skips every
            // destructor and exit handler of the runner this child is a copy of.
            unsafe {
                libc::write(fds[1], msg.as_ptr().cast(), msg.len());
                libc::_exit(0);
            }
        }
        let mut parent = [0u8; 32];
        fill(&mut parent).unwrap();
        let mut msg = [0u8; 33];
        let mut got = 0;
        while got < msg.len() {
            // SAFETY: reads at most the rest of `msg` into it.
            let n = unsafe { libc::read(fds[0], msg[got..].as_mut_ptr().cast(), msg.len() - got) };
            assert!(n > 0, "the child sent {got} of {} bytes", msg.len());
            got += n as usize;
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        // SAFETY: closes the two descriptors `pipe` opened, once each.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(
            msg[0], 1,
            "in the child, fill failed or the epoch did not move"
        );
        assert_ne!(
            msg[1..],
            parent,
            "a forked child repeated its parent's secret"
        );
        assert_ne!(msg[1..], [0u8; 32]);
        assert_eq!(fork::epoch(), before, "the parent's epoch does not move");
    }
}
