//! Tying a child process's life to its parent's.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;

/// Makes the child that `command` starts receive SIGKILL when the thread that spawns it
/// exits (PR_SET_PDEATHSIG), so a parent killed with SIGKILL leaves no orphan behind, and
/// refuses to start it (the spawn fails with ESRCH) when that parent is already gone.
///
/// The death signal fires when the *spawning thread* exits, not the process: spawn from a
/// thread that lives as long as the parent (e.g. the main thread), never from
/// `spawn_blocking` or another short-lived thread.
#[allow(unsafe_code)]
pub fn set_die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed. prctl(2) and getppid(2) are plain system calls;
    // the error path builds an `io::Error` from a raw errno, which does not allocate.
    // Nothing is locked, allocated or shared with the parent.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then the death signal would
            // never come, and the child must not run as an orphan.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}
