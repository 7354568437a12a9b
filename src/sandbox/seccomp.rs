//! The network wall of a sandbox without network, as a seccomp filter: `socket(2)` makes only
//! `AF_UNIX` sockets, `io_uring_setup(2)` is refused (its rings can open sockets where no filter
//! sees them), and a system call of another ABI than this binary's (32-bit `int 0x80`, x32) is
//! refused whole. With Landlock's TCP rules and its abstract-socket scope this keeps a command
//! off every network, as a network namespace of its own would, without the namespace's cost
//! (making one took two thirds of a sandboxed command's start).
//!
//! [`Filter::network_off`] builds the program (allocating); [`Filter::install`] loads it with one
//! system call, safe between `fork` and `exec`, after `no_new_privs`.

/// `AUDIT_ARCH_*` of the ABI this binary's system calls use; `None` where no filter is built.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: Option<u32> = None;

/// System call numbers at or above this are x32's on x86_64 (`__X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
const FOREIGN_NR: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const FOREIGN_NR: Option<u32> = None;

/// Offsets in `struct seccomp_data`: the call's number, its ABI, and the low half of its first
/// argument (little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// A seccomp program, ready to load.
pub(crate) struct Filter(Vec<libc::sock_filter>);

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({} instructions)", self.0.len())
    }
}

/// One BPF instruction.
fn op(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn load(offset: u32) -> libc::sock_filter {
    op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0)
}

fn ret(action: u32) -> libc::sock_filter {
    op(libc::BPF_RET | libc::BPF_K, action, 0, 0)
}

/// A program under construction whose jumps name their targets; resolved by [`Program::finish`].
struct Program {
    ops: Vec<(libc::sock_filter, Option<Target>, Option<Target>)>,
}

/// Where a conditional jump goes.
#[derive(Clone, Copy)]
enum Target {
    Allow,
    RefuseSocket,
    Refuse,
}

impl Program {
    fn push(&mut self, op: libc::sock_filter) {
        self.ops.push((op, None, None));
    }

    /// `if A == k goto yes else goto no`; `None` falls through to the next instruction.
    fn jump(&mut self, test: u32, k: u32, yes: Option<Target>, no: Option<Target>) {
        self.ops
            .push((op(libc::BPF_JMP | test | libc::BPF_K, k, 0, 0), yes, no));
    }

    /// The instructions, followed by the three returns the jumps lead to.
    fn finish(self) -> Vec<libc::sock_filter> {
        let n = self.ops.len();
        let at = |t: Target| match t {
            Target::Allow => n,
            Target::RefuseSocket => n + 1,
            Target::Refuse => n + 2,
        };
        let mut out: Vec<libc::sock_filter> = self
            .ops
            .into_iter()
            .enumerate()
            .map(|(i, (mut op, yes, no))| {
                // Offsets count from the instruction after the jump; a program this short
                // keeps them far below u8::MAX.
                let offset = |t: Option<Target>| t.map_or(0, |t| (at(t) - i - 1) as u8);
                op.jt = offset(yes);
                op.jf = offset(no);
                op
            })
            .collect();
        out.push(ret(libc::SECCOMP_RET_ALLOW));
        out.push(ret(
            libc::SECCOMP_RET_ERRNO | (libc::EACCES as u32 & libc::SECCOMP_RET_DATA)
        ));
        out.push(ret(
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA)
        ));
        out
    }
}

impl Filter {
    /// The filter of a command without network; `None` on an architecture it is not written
    /// for (the sandbox then keeps the network namespace).
    pub fn network_off() -> Option<Self> {
        let arch = NATIVE_ARCH?;
        let mut p = Program { ops: Vec::new() };
        p.push(load(ARCH));
        p.jump(libc::BPF_JEQ, arch, None, Some(Target::Refuse));
        p.push(load(NR));
        if let Some(foreign) = FOREIGN_NR {
            p.jump(libc::BPF_JGE, foreign, Some(Target::Refuse), None);
        }
        p.jump(
            libc::BPF_JEQ,
            libc::SYS_io_uring_setup as u32,
            Some(Target::Refuse),
            None,
        );
        p.jump(
            libc::BPF_JEQ,
            libc::SYS_socket as u32,
            None,
            Some(Target::Allow),
        );
        p.push(load(ARG0_LOW));
        p.jump(
            libc::BPF_JEQ,
            libc::AF_UNIX as u32,
            Some(Target::Allow),
            Some(Target::RefuseSocket),
        );
        Some(Self(p.finish()))
    }

    /// Loads the filter into this process (and so into everything it executes). System calls
    /// only; `no_new_privs` must be set first. Returns `errno` on failure.
    pub fn install(&self) -> Result<(), i32> {
        let prog = libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at instructions owned by `self`, alive for the call; the
        // kernel copies them.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }
}
