//! Path globs for `watch.triggers[].paths`: `*` and `?` within one path segment, `**` for any
//! number of segments; a pattern without `/` matches a file name at any depth (as in
//! `.gitignore`).

/// True when `path` (relative, `/`-separated) matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches("./");
    let pats: Vec<&str> = if pattern.contains('/') {
        pattern.split('/').collect()
    } else {
        vec!["**", pattern]
    };
    let parts: Vec<&str> = path.split('/').collect();
    segments(&pats, &parts)
}

fn segments(pats: &[&str], parts: &[&str]) -> bool {
    match pats.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|skip| segments(rest, &parts[skip..])),
        Some((p, rest)) => match parts.split_first() {
            Some((part, tail)) => segment(p.as_bytes(), part.as_bytes()) && segments(rest, tail),
            None => false,
        },
    }
}

fn segment(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
        (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => segment(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_segments_and_any_depth() {
        assert!(matches("src/**", "src/a/b.rs"));
        assert!(matches("src/**/*.rs", "src/main.rs"));
        assert!(matches("src/**/*.rs", "src/a/b/c.rs"));
        assert!(!matches("src/**/*.rs", "tests/a.rs"));
        assert!(matches("*.md", "docs/guide/intro.md"));
        assert!(matches("README.?d", "README.md"));
        assert!(!matches("src/*.rs", "src/a/b.rs"));
        assert!(matches("./lib/*.py", "lib/x.py"));
    }
}
