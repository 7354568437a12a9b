//! The environment a model's commands get: an allow-list, a private HOME and TMPDIR, and what
//! the template or config names. Keys, tokens, secrets and passwords of the runner's own
//! environment never pass unless named.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Variables that pass on their own.
const ALLOWED: [&str; 4] = ["PATH", "LANG", "TERM", "TZ"];

/// Words that make a variable secret: it passes only when named explicitly.
const SECRET_WORDS: [&str; 4] = ["KEY", "TOKEN", "SECRET", "PASSWORD"];

/// True when the name of a variable says it holds a credential.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// The clean environment: PATH, LANG, LC_*, TERM, TZ from the runner's; HOME and TMPDIR set to
/// the private folders; CARGO_HOME and RUSTUP_HOME kept pointing at the user's toolchains (the
/// private HOME would hide them); and every variable of `pass` that is set.
pub fn clean_env(home: &Path, tmp: &Path, pass: &[String]) -> Vec<(OsString, OsString)> {
    clean_env_from(std::env::vars_os(), home, tmp, pass)
}

fn clean_env_from(
    vars: impl Iterator<Item = (OsString, OsString)>,
    home: &Path,
    tmp: &Path,
    pass: &[String],
) -> Vec<(OsString, OsString)> {
    let vars: Vec<(OsString, OsString)> = vars.collect();
    let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut out: Vec<(OsString, OsString)> = vars
        .iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            let listed = ALLOWED.contains(&k.as_ref()) || k.starts_with("LC_");
            (listed && !looks_secret(&k)) || pass.iter().any(|p| *p == k)
        })
        .cloned()
        .collect();
    let real_home = get("HOME").map(PathBuf::from);
    for (name, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        let value = get(name).or_else(|| {
            real_home
                .as_ref()
                .map(|h| h.join(default))
                .filter(|p| p.is_dir())
                .map(OsString::from)
        });
        if let Some(v) = value
            && !out.iter().any(|(k, _)| k == name)
        {
            out.push((name.into(), v));
        }
    }
    out.retain(|(k, _)| k != "HOME" && k != "TMPDIR");
    out.push(("HOME".into(), home.into()));
    out.push(("TMPDIR".into(), tmp.into()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn keys_pass_only_by_name() {
        let env = clean_env_from(
            vars(&[
                ("PATH", "/usr/bin"),
                ("LC_ALL", "C"),
                ("OPENAI_API_KEY", "sk-1"),
                ("GITHUB_TOKEN", "gh"),
                ("DB_PASSWORD", "pw"),
                ("RANDOM_VAR", "x"),
                ("HOME", "/nonexistent-home"),
                ("NPM_CONFIG_REGISTRY", "r"),
            ]),
            Path::new("/p/home"),
            Path::new("/p/tmp"),
            &["GITHUB_TOKEN".to_owned(), "NPM_CONFIG_REGISTRY".to_owned()],
        );
        let names: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"PATH".to_owned()));
        assert!(names.contains(&"LC_ALL".to_owned()));
        assert!(names.contains(&"GITHUB_TOKEN".to_owned()), "named: passes");
        assert!(names.contains(&"NPM_CONFIG_REGISTRY".to_owned()));
        assert!(!names.contains(&"OPENAI_API_KEY".to_owned()));
        assert!(!names.contains(&"DB_PASSWORD".to_owned()));
        assert!(!names.contains(&"RANDOM_VAR".to_owned()));
        let home = env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| v.clone());
        assert_eq!(home, Some(OsString::from("/p/home")));
    }
}
