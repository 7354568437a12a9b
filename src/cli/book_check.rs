//! The book and the hints cannot drift from the binary: every `autowrkers …` command in the
//! book's shell examples, the README and the messages of the source parses with the real clap
//! definition.

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::args::Cli;

    /// Splits a command line like a shell would for these examples: spaces, and single or
    /// double quotes around a word.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut any = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    any = true;
                }
                (None, ' ') => {
                    if any || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    any = false;
                }
                (None, c) => word.push(c),
            }
        }
        if any || !word.is_empty() {
            out.push(word);
        }
        out
    }

    /// The `autowrkers` commands of the shell blocks (```sh) of a Markdown text.
    fn commands(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_sh = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_sh = !in_sh && (trimmed == "```sh" || trimmed == "```bash");
                continue;
            }
            if !in_sh {
                continue;
            }
            let command = trimmed.split(" # ").next().unwrap_or("").trim();
            if command.starts_with("autowrkers ") && !command.contains('|') {
                out.push(command.to_owned());
            }
        }
        out
    }

    #[test]
    fn every_command_in_the_book_and_readme_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("book/src")).expect("book") {
            files.push(entry.expect("entry").path());
        }
        let mut checked = 0;
        let mut wrong = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for command in commands(&text) {
                checked += 1;
                if let Err(e) = Cli::try_parse_from(words(&command)) {
                    let first = e.to_string().lines().next().unwrap_or("").to_owned();
                    wrong.push(format!("{}: `{command}`: {first}", file.display()));
                }
            }
        }
        assert!(checked > 20, "only {checked} commands found");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Every backticked `autowrkers …` command in the Rust sources (messages, hints and docs),
    /// with its placeholders filled in as a user would.
    fn hints(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        // Messages, not doc comments (which name commands without their arguments).
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut rest = code.as_str();
        while let Some(start) = rest.find("`autowrkers ") {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            let hint = after[..end].replace("\\\"", "\"");
            rest = &after[end + 1..];
            // Placeholders and shell plumbing are not part of the command.
            if hint.contains('|') || hint.contains('>') || hint.contains("__sandbox") {
                continue;
            }
            let filled = hint
                .replace("\"…\"", "x")
                .replace("--scope {}", "--scope global")
                .replace("--limit N", "--limit 5")
                .replace(" …", "")
                .replace('…', "");
            let mut command = String::new();
            let mut in_braces = false;
            for c in filled.chars() {
                match c {
                    '{' => in_braces = true,
                    '}' => {
                        in_braces = false;
                        command.push_str("3f2a");
                    }
                    _ if in_braces => {}
                    c => command.push(c),
                }
            }
            if command.trim() != "autowrkers" {
                out.push(command.trim().to_owned());
            }
        }
        out
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("src")
            .map(|e| e.expect("entry").path())
        {
            if entry.is_dir() {
                rust_files(&entry, out);
            } else if entry.extension().is_some_and(|x| x == "rs") {
                out.push(entry);
            }
        }
    }

    #[test]
    fn every_command_the_binary_suggests_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        let mut checked = 0;
        let mut wrong = Vec::new();
        for file in files {
            if file.ends_with("cli/book_check.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            for command in hints(&text) {
                checked += 1;
                if let Err(e) = Cli::try_parse_from(words(&command)) {
                    let first = e.to_string().lines().next().unwrap_or("").to_owned();
                    wrong.push(format!("{}: `{command}`: {first}", file.display()));
                }
            }
        }
        assert!(checked > 20, "only {checked} hints found");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_ci_example_is_valid_yaml_and_its_commands_parse() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/github-actions.yml");
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
        let mut checked = 0;
        for job in doc["jobs"].as_mapping().expect("jobs").values() {
            for step in job["steps"].as_sequence().expect("steps") {
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                for line in script.lines().map(str::trim) {
                    let Some(rest) = line.strip_prefix("autowrkers ") else {
                        continue;
                    };
                    // GitHub's expressions stand for a value; the redirection is the shell's.
                    let mut command = format!("autowrkers {rest}");
                    while let (Some(a), Some(b)) = (command.find("${{"), command.find("}}")) {
                        command.replace_range(a..b + 2, "1");
                    }
                    let command = command.split(" > ").next().unwrap_or("").to_owned();
                    checked += 1;
                    if let Err(e) = Cli::try_parse_from(words(&command)) {
                        panic!("`{command}`: {e}");
                    }
                }
            }
        }
        assert!(checked >= 1, "no autowrkers command in the example");
    }
}
