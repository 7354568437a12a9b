//! The little terminal control the live view needs: key-at-a-time input without echo for the
//! whole view (restored on drop; console only offers raw mode per key read, which leaves the
//! terminal raw when the view exits mid-read), and the terminal's width (console).

use std::io::Read;
use std::os::fd::AsRawFd;

/// Raw-ish mode on stdin while alive: no line buffering, no echo; Ctrl-C still interrupts.
pub struct KeyMode {
    saved: Option<libc::termios>,
}

impl KeyMode {
    /// Switches stdin to key-at-a-time input (no-op when stdin is not a terminal).
    pub fn enter() -> Self {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios calls on our own stdin, with a struct they fill in.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Self { saved: None };
            }
            let saved = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            saved
        };
        Self { saved: Some(saved) }
    }
}

impl Drop for KeyMode {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restores what `enter` read.
            unsafe {
                libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &saved);
            }
        }
    }
}

/// Reads keys on a thread and sends each byte.
pub fn spawn_key_reader(tx: tokio::sync::mpsc::UnboundedSender<u8>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdin.read(&mut byte) {
            if tx.send(byte[0]).is_err() {
                break;
            }
        }
    });
}

/// Columns of the terminal on stdout (80 when unknown).
pub fn width() -> usize {
    match console::Term::stdout().size_checked() {
        Some((_, cols)) if cols > 0 => usize::from(cols),
        _ => 80,
    }
}
