//! API keys (seed §2.3, DESIGN §6): the environment first, then `~/.autowrkers/provider_keys.age`.
//!
//! The key file is an age file (mode 0600) holding a YAML map `provider → key`. It is encrypted
//! either to an X25519 identity kept in `~/.autowrkers/identity.txt` (mode 0600, made on first
//! use), or — when `AUTOWRKERS_PASSPHRASE` is set at setup — with that passphrase (scrypt), which
//! must then be given again (`AUTOWRKERS_PASSPHRASE`, or a hidden prompt on a terminal) to read
//! it. The threat model is in the book (providers chapter): the identity file keeps keys out of
//! backups, screenshots and copies of the key file alone; the passphrase also protects them at
//! rest against someone who can read the whole folder.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use age::secrecy::{ExposeSecret, SecretString};

use crate::secret::Secret;
use crate::store::Home;

/// Why the key store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is passphrase-protected and no passphrase was given.
    #[error("{0} is protected by a passphrase: set AUTOWRKERS_PASSPHRASE (or run on a terminal)")]
    NeedPassphrase(PathBuf),
    /// Decryption failed (wrong passphrase or identity, damaged file).
    #[error("cannot decrypt {path}: {message}")]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// What age said.
        message: String,
    },
}

/// Where a key came from, for `provider list` (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable.
    Env(String),
    /// The encrypted key file.
    Store,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(var) => write!(f, "env {var}"),
            Self::Store => f.write_str("key store"),
        }
    }
}

/// Keys from the environment and the key file, decrypted at most once, only when needed.
pub struct Keys {
    home: Home,
    store: OnceLock<Result<BTreeMap<String, String>, String>>,
}

impl Keys {
    /// The home these keys belong to.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Keys for the user of `home`.
    pub fn new(home: &Home) -> Self {
        Self {
            home: home.clone(),
            store: OnceLock::new(),
        }
    }

    /// The key of `provider`: the first set variable of `env_vars`, else the key store's entry.
    pub fn get(&self, provider: &str, env_vars: &[&str]) -> Option<(Secret, KeySource)> {
        for var in env_vars {
            if let Ok(v) = std::env::var(var)
                && !v.trim().is_empty()
            {
                return Some((Secret::new(v.trim()), KeySource::Env((*var).to_owned())));
            }
        }
        let stored = self
            .store
            .get_or_init(|| load(&self.home).map_err(|e| e.to_string()));
        stored
            .as_ref()
            .ok()?
            .get(provider)
            .map(|k| (Secret::new(k.clone()), KeySource::Store))
    }

    /// Why the key store could not be read, if it could not.
    pub fn store_error(&self) -> Option<String> {
        self.store
            .get_or_init(|| load(&self.home).map_err(|e| e.to_string()))
            .as_ref()
            .err()
            .cloned()
    }
}

fn key_file(home: &Home) -> PathBuf {
    home.root().join("provider_keys.age")
}

fn identity_file(home: &Home) -> PathBuf {
    home.root().join("identity.txt")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn passphrase(path: &Path) -> Result<SecretString, KeyError> {
    if let Ok(p) = std::env::var("AUTOWRKERS_PASSPHRASE") {
        return Ok(SecretString::from(p));
    }
    if std::io::stdin().is_terminal() {
        let p = read_hidden(&format!("passphrase for {}: ", path.display())).map_err(io(path))?;
        return Ok(SecretString::from(p));
    }
    Err(KeyError::NeedPassphrase(path.to_path_buf()))
}

/// Decrypts the key file; an absent file is an empty store.
pub fn load(home: &Home) -> Result<BTreeMap<String, String>, KeyError> {
    let path = key_file(home);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let fail = |message: String| KeyError::Decrypt {
        path: path.clone(),
        message,
    };
    let decryptor = age::Decryptor::new(&bytes[..]).map_err(|e| fail(e.to_string()))?;
    let mut plain = Vec::new();
    let mut reader = if decryptor.is_scrypt() {
        let identity = age::scrypt::Identity::new(passphrase(&path)?);
        decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| fail(e.to_string()))?
    } else {
        let id_path = identity_file(home);
        let text = std::fs::read_to_string(&id_path).map_err(io(&id_path))?;
        let identity: age::x25519::Identity = identity_line(&text)
            .parse()
            .map_err(|e: &str| fail(e.to_owned()))?;
        decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| fail(e.to_string()))?
    };
    reader.read_to_end(&mut plain).map_err(io(&path))?;
    // The parser's message could quote a key: say what is wrong without it.
    let damaged = || fail("its content is not a YAML map of names to keys".to_owned());
    let text = String::from_utf8(plain).map_err(|_| damaged())?;
    crate::spec::from_yaml(&text, &path).map_err(|_| damaged())
}

/// Encrypts `keys` into the key file (mode 0600): with `AUTOWRKERS_PASSPHRASE` when it is set
/// or the existing file uses a passphrase, else to the identity file (created, 0600).
pub fn save(home: &Home, keys: &BTreeMap<String, String>) -> Result<PathBuf, KeyError> {
    let path = key_file(home);
    std::fs::create_dir_all(home.root()).map_err(io(home.root()))?;
    let plain = crate::spec::to_yaml(keys).unwrap_or_default();
    let existing_scrypt = std::fs::read(&path)
        .ok()
        .and_then(|b| age::Decryptor::new(&b[..]).ok().map(|d| d.is_scrypt()))
        .unwrap_or(false);
    let encryptor = if std::env::var_os("AUTOWRKERS_PASSPHRASE").is_some() || existing_scrypt {
        age::Encryptor::with_user_passphrase(passphrase(&path)?)
    } else {
        let identity = identity(home)?;
        let recipient = identity.to_public();
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| KeyError::Decrypt {
                path: path.clone(),
                message: e.to_string(),
            })?
    };
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).map_err(io(&path))?;
    writer.write_all(plain.as_bytes()).map_err(io(&path))?;
    writer.finish().map_err(io(&path))?;
    write_private(&path, &out)?;
    Ok(path)
}

fn identity(home: &Home) -> Result<age::x25519::Identity, KeyError> {
    let path = identity_file(home);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return identity_line(&text)
            .parse()
            .map_err(|e: &str| KeyError::Decrypt {
                path: path.clone(),
                message: e.to_owned(),
            });
    }
    let identity = age::x25519::Identity::generate();
    let text = format!(
        "# autowrkers key-store identity: keep private\n{}\n",
        identity.to_string().expose_secret()
    );
    write_private(&path, text.as_bytes())?;
    Ok(identity)
}

/// The identity in an identity file: its one line that is not a comment.
fn identity_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("")
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    crate::store::write_private(path, bytes).map_err(io(path))
}

/// Reads a line from the terminal without echoing it.
pub fn read_hidden(prompt: &str) -> std::io::Result<String> {
    let term = console::Term::stderr();
    term.write_str(prompt)?;
    let line = term.read_secure_line()?;
    term.write_line("")?;
    Ok(line)
}
