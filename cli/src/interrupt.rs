//! Ctrl-C (SIGINT) and SIGTERM as a request to stop: a long run finishes its current step,
//! saves a checkpoint and exits cleanly; a second signal ends the process at once.
//! (burn-train's dashboard puts the terminal in raw mode, where Ctrl-C is a key press, not a
//! signal: there `q` then `s` stops the run the same way.)

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap and `_exit`.
    if REQUESTED.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(130) }
    }
}

/// Routes SIGINT and SIGTERM to [`requested`].
pub fn install() {
    #[cfg(unix)]
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Gives SIGINT and SIGTERM their default action back (end the process at once), for work
/// after the last checkpoint that has nothing to save.
pub fn restore_default() {
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
