//! `autowrkers`: thin on purpose. Parsing, dispatch and exit codes live in `cli`; everything
//! else is the library.

mod cli;

fn main() -> std::process::ExitCode {
    // The sandbox helper must start before any thread does.
    if let Some(code) = autowrkers::sandbox::helper::main_if_helper() {
        return std::process::ExitCode::from(code);
    }
    keep_freed_memory();
    cli::main()
}

/// Keeps up to 32 MiB of freed memory for reuse instead of handing it back to the kernel at
/// each `free`. glibc trims a thread's heap with `madvise`, and each trim makes every other
/// processor running this process flush its TLB: the commit thread's compression buffers
/// made it trim about twelve times a phase, and those interruptions slowed the whole runner
/// down as a run went on (a 50-iteration run's last iterations took 1.3-1.5× its first; with
/// this, 1.0-1.1×). The peak memory is the same: nothing more is allocated, less is returned.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no thread has started yet.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}
