//! The helper side of the sandbox: `autowrkers __sandbox POLICY PROGRAM ARGS…`, the same walls
//! as a command gets from the runner ([`Walls`]), raised in a process of its own before it
//! executes `PROGRAM`. The runner uses it to probe, once per binary and boot, that this kernel
//! can build them at all, with the reason in words when it cannot; a command then gets its
//! walls between `fork` and `exec`, without starting this binary a second time.
//!
//! Any step that fails stops the helper with exit code 125 and the reason on stderr, before
//! the command starts: the sandbox fails closed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::walls::Walls;
use super::{HELPER_ARG, Policy};

/// The exit code of a helper that could not build the sandbox.
pub const SETUP_FAILED: u8 = 125;

/// When this process was started as the helper, builds the sandbox and executes the command
/// (never returning on success); returns None for a normal start. Call first thing in `main`.
pub fn main_if_helper() -> Option<u8> {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next()? != HELPER_ARG {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let [policy, program, command_args @ ..] = rest.as_slice() else {
        eprintln!("autowrkers sandbox: usage: {HELPER_ARG} POLICY PROGRAM [ARGS…]");
        return Some(SETUP_FAILED);
    };
    let policy: Policy = match serde_json::from_slice(policy.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("autowrkers sandbox: bad policy: {e}");
            return Some(SETUP_FAILED);
        }
    };
    if let Err(reason) = enter(&policy) {
        eprintln!("autowrkers sandbox: {reason}");
        return Some(SETUP_FAILED);
    }
    let err = std::process::Command::new(program)
        .args(command_args)
        .exec();
    eprintln!(
        "autowrkers sandbox: cannot run {}: {err}",
        Path::new(program).display()
    );
    Some(127)
}

fn enter(policy: &Policy) -> Result<(), String> {
    match Walls::plan(policy)? {
        Some(walls) => walls.raise().map_err(|b| b.to_string()),
        None => Ok(()),
    }
}
