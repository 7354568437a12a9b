//! The little terminal control the live view needs, through the `console` crate: keys one at a
//! time without echo (Ctrl-C still interrupts: console raises SIGINT for it), and the width.

use console::{Key, Term};

/// Reads keys on a thread and sends each plain character key as a byte.
pub fn spawn_key_reader(tx: tokio::sync::mpsc::UnboundedSender<u8>) {
    std::thread::spawn(move || {
        let term = Term::stdout();
        if !term.is_term() {
            return;
        }
        while let Ok(key) = term.read_key() {
            let byte = match key {
                Key::Char(c) if c.is_ascii() => c as u8,
                Key::Enter => b'\n',
                _ => continue,
            };
            if tx.send(byte).is_err() {
                break;
            }
        }
    });
}

/// Columns of the terminal on stdout (80 when unknown).
pub fn width() -> usize {
    match Term::stdout().size_checked() {
        Some((_, cols)) if cols > 0 => usize::from(cols),
        _ => 80,
    }
}
