//! The verifier (`provider_type: none`): runs the project's lint, test and build commands in
//! the worktree, inside the phase's sandbox, and writes their evidence. A run is "completed" on this evidence, never on an
//! implementer's claim.

use std::path::Path;
use std::time::Duration;

use crate::process::run_shell;
use crate::sandbox::Sandbox;
use crate::spec::{CheckResult, VerificationReport, VerifyConfig};

const OUTPUT_TAIL: usize = 4000;

/// The commands to run and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    /// `config` or `detected:<file>`.
    pub source: String,
    /// `(name, command)` in run order: lint, build, test.
    pub commands: Vec<(&'static str, String)>,
    /// Limit per command.
    pub timeout: Duration,
    /// Verification turned off on purpose (`run --no-verify`): no checks is then a pass.
    pub off: bool,
}

/// The commands from the project config, else detected from the project's files.
pub fn resolve(config: Option<&VerifyConfig>, dir: &Path) -> Checks {
    if let Some(c) = config {
        let commands = [("lint", &c.lint), ("build", &c.build), ("test", &c.test)]
            .into_iter()
            .filter_map(|(n, cmd)| {
                cmd.clone()
                    .filter(|s| !s.trim().is_empty())
                    .map(|cmd| (n, cmd))
            })
            .collect();
        return Checks {
            source: "config".to_owned(),
            commands,
            timeout: Duration::from_secs(c.timeout_seconds),
            off: false,
        };
    }
    let timeout = Duration::from_secs(VerifyConfig::default().timeout_seconds);
    let (source, commands) = detect(dir);
    Checks {
        source,
        commands,
        timeout,
        off: false,
    }
}

fn detect(dir: &Path) -> (String, Vec<(&'static str, String)>) {
    let has = |f: &str| dir.join(f).exists();
    let own = |list: &[(&'static str, &str)]| {
        list.iter()
            .map(|(n, c)| (*n, (*c).to_owned()))
            .collect::<Vec<_>>()
    };
    if has("Cargo.toml") {
        return (
            "detected:Cargo.toml".into(),
            own(&[
                ("build", "cargo build --all-targets"),
                ("test", "cargo test"),
            ]),
        );
    }
    if has("package.json") {
        let scripts = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("scripts").cloned())
            .unwrap_or_default();
        let commands = [("lint", "lint"), ("build", "build"), ("test", "test")]
            .into_iter()
            .filter(|(_, s)| scripts.get(s).is_some())
            .map(|(n, s)| (n, format!("npm run {s}")))
            .collect();
        return ("detected:package.json".into(), commands);
    }
    if has("pyproject.toml") {
        return (
            "detected:pyproject.toml".into(),
            own(&[("test", "python3 -m pytest -q")]),
        );
    }
    if has("go.mod") {
        return (
            "detected:go.mod".into(),
            own(&[
                ("lint", "go vet ./..."),
                ("build", "go build ./..."),
                ("test", "go test ./..."),
            ]),
        );
    }
    if has("Makefile") {
        let text = std::fs::read_to_string(dir.join("Makefile")).unwrap_or_default();
        let commands = ["lint", "build", "test"]
            .into_iter()
            .filter(|t| text.lines().any(|l| l.starts_with(&format!("{t}:"))))
            .map(|t| (t, format!("make {t}")))
            .collect();
        return ("detected:Makefile".into(), commands);
    }
    ("none".into(), Vec::new())
}

/// Runs every check in `dir`, in order, and reports. No checks at all is not a pass.
pub async fn run(
    checks: &Checks,
    sandbox: &Sandbox,
    mut on_progress: impl FnMut(&str),
) -> VerificationReport {
    let mut results = Vec::new();
    for (name, command) in &checks.commands {
        on_progress(&format!("$ {command}"));
        let result = match run_shell(command, sandbox, checks.timeout, OUTPUT_TAIL).await {
            Ok(o) => CheckResult {
                name: (*name).to_owned(),
                command: command.clone(),
                exit_code: o.exit_code,
                duration_ms: o.duration.as_millis() as u64,
                timed_out: o.timed_out,
                output_tail: o.output_tail,
            },
            Err(e) => CheckResult {
                name: (*name).to_owned(),
                command: command.clone(),
                exit_code: None,
                duration_ms: 0,
                timed_out: false,
                output_tail: format!("cannot start: {e}"),
            },
        };
        on_progress(&format!(
            "{name}: exit {}",
            result
                .exit_code
                .map_or("killed".to_owned(), |c| c.to_string())
        ));
        results.push(result);
    }
    let note = match (results.is_empty(), checks.off) {
        (true, true) => Some("verification turned off (`run --no-verify`)".to_owned()),
        (true, false) => Some(
            "no verification commands: set verify.lint/test/build in .autowrkers/config.yaml"
                .to_owned(),
        ),
        _ => None,
    };
    let passed = if results.is_empty() {
        checks.off
    } else {
        results.iter().all(|r| r.exit_code == Some(0))
    };
    VerificationReport {
        passed,
        source: checks.source.clone(),
        checks: results,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_commands_from_project_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(resolve(None, dir.path()).commands.is_empty());
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"scripts": {"test": "jest", "lint": "eslint ."}}"#,
        )
        .expect("write");
        let checks = resolve(None, dir.path());
        assert_eq!(checks.source, "detected:package.json");
        assert_eq!(
            checks.commands,
            vec![
                ("lint", "npm run lint".to_owned()),
                ("test", "npm run test".to_owned())
            ]
        );
        std::fs::write(dir.path().join("Cargo.toml"), "[package]").expect("write");
        assert_eq!(
            resolve(None, dir.path()).commands[1],
            ("test", "cargo test".to_owned())
        );
        let config = VerifyConfig {
            test: Some("make check".into()),
            ..VerifyConfig::default()
        };
        let checks = resolve(Some(&config), dir.path());
        assert_eq!(
            (checks.source.as_str(), checks.commands.len()),
            ("config", 1)
        );
    }

    #[tokio::test]
    async fn no_checks_is_not_a_pass_and_exit_codes_decide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = Checks {
            source: "none".into(),
            commands: vec![],
            timeout: Duration::from_secs(5),
            off: false,
        };
        // The helper binary is not this test's: the walls are tested through the binary.
        let sandbox = crate::sandbox::Sandbox::new(&crate::sandbox::SandboxSpec {
            mode: crate::sandbox::SandboxMode::FullAccess,
            workdir: dir.path().to_path_buf(),
            network: false,
            pass_env: vec![],
            read_paths: vec![],
            protected: vec![],
        })
        .expect("sandbox");
        let report = run(&none, &sandbox, |_| {}).await;
        assert!(!report.passed && report.note.is_some());
        let checks = Checks {
            source: "config".into(),
            commands: vec![
                ("lint", "true".into()),
                ("test", "echo boom; exit 3".into()),
            ],
            timeout: Duration::from_secs(5),
            off: false,
        };
        let report = run(&checks, &sandbox, |_| {}).await;
        assert!(!report.passed);
        assert_eq!(report.checks[1].exit_code, Some(3));
        assert!(report.checks[1].output_tail.contains("boom"));
    }
}
