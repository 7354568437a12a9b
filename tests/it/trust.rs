//! Trust boundaries (DESIGN §12), tested by their real effects: a model acting as a confused or
//! prompt-injected one would, against real git repositories and the real sandbox.

use std::net::TcpListener;
use std::path::Path;

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, SECRET, all_files, git, implementer_only, run};

const OPENAI_MARK: &str = "sk-openai-5a5a5a-must-not-leak";
const GITHUB_MARK: &str = "ghp_must_not_leak_1234";
const SSH_MARK: &str = "PRIVATE-SSH-KEY-must-not-leak";

const VERIFIER: &str = "  - id: verify\n    name: verify\n    role: verifier\n    provider_config: {provider_type: none}\n    output_artifact_type: verification_report\n    success_pattern: null\n    order: 2\n";

/// The tool results the model got back in its second call.
fn tool_results(server: &FakeLlm) -> Vec<String> {
    server.calls("implementer")[1].body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn assert_nowhere(haystack: &str, what: &str) {
    for mark in [OPENAI_MARK, GITHUB_MARK, SSH_MARK, SECRET] {
        assert!(!haystack.contains(mark), "{what} holds a secret: {mark}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_implementer_reaches_no_secret_no_branch_and_nothing_outside() {
    let outside = tempfile::tempdir().expect("outside");
    let escaped = outside.path().join("escaped");
    let fake_home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(fake_home.path().join(".ssh")).expect("mkdir");
    std::fs::write(fake_home.path().join(".ssh/id_x"), SSH_MARK).expect("key");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    // The verifier's command (the model wrote the code it runs) is held to the same rules.
    let p = Project::git(&[
        ("a.txt", "a\n"),
        (
            ".autowrkers/config.yaml",
            "verify:\n  test: \"cat /proc/*/environ 2>/dev/null | tr '\\\\0' '\\\\n' | grep -E 'KEY|TOKEN'; env\"\n",
        ),
    ]);
    let user_git = p.path().join(".git");
    let command = format!(
        "env > env.txt; cat {home}/.ssh/id_x > stolen.txt 2>&1; cat /proc/*/environ >> stolen.txt 2>&1; \
         touch {escaped}; cd / && touch {escaped}2; cd - >/dev/null; \
         bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2> net.txt; echo \"net exit $?\" >> net.txt",
        home = fake_home.path().display(),
        escaped = escaped.display(),
    );
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tools(vec![
                (
                    "write_file",
                    json!({"path": ".git", "content": format!("gitdir: {}\n", user_git.display())}),
                ),
                (
                    "write_file",
                    json!({"path": "a.txt", "content": "changed\n"}),
                ),
                ("run_command", json!({"command": command})),
            ]),
        ),
        Rule::new("implementer", Some(1), Reply::text("/complete")),
    ])
    .await;
    let head_before = git(&p.path(), &["rev-parse", "main"]);
    p.write("t.yaml", &(implementer_only(&server.url(), "") + VERIFIER));
    let mut cmd = p.cmd();
    cmd.env("HOME", fake_home.path())
        .env("OPENAI_API_KEY", OPENAI_MARK)
        .env("GITHUB_TOKEN", GITHUB_MARK)
        .args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    // 1. The `.git` pointer was refused; the user's branch and index are untouched.
    let results = tool_results(&server);
    assert!(results[0].contains("off limits"), "{}", results[0]);
    assert_eq!(git(&p.path(), &["rev-parse", "main"]), head_before);
    assert_eq!(
        git(
            &p.path(),
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
    // The work landed on the execution's own branch.
    let branch = p.state()["workspace"]["branch"]
        .as_str()
        .expect("branch")
        .to_owned();
    assert_eq!(
        git(&p.path(), &["show", &format!("{branch}:a.txt")]),
        "changed\n"
    );

    // 2. No key reached the command, hence not the model, the branch or the artifacts.
    let env_txt = p.on_branch("env.txt");
    assert!(env_txt.contains("PATH="), "{env_txt}");
    assert_nowhere(&env_txt, "the command's environment");
    let stolen = p.on_branch("stolen.txt");
    assert_nowhere(&stolen, "stolen.txt");
    for record in server.log() {
        assert_nowhere(&record.body.to_string(), "a request to the model");
    }
    let report = std::fs::read_to_string(p.execution().join("artifacts/1/verify.json"))
        .expect("verification report");
    assert!(report.contains("PATH="), "the verifier ran: {report}");
    for (path, bytes) in all_files(&p.execution()) {
        assert_nowhere(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
        );
    }

    // 3. Nothing outside the worktree was written, and the network was closed.
    assert!(!escaped.exists(), "wrote outside the worktree");
    assert!(!Path::new(&format!("{}2", escaped.display())).exists());
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_err(), "a TCP connection got through");
    let net = p.on_branch("net.txt");
    assert!(net.contains("net exit 1"), "{net}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_the_repository_and_hard_links_are_safe() {
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("target.txt");
    std::fs::write(&target, "outside\n").expect("write");
    let p = Project::git(&[("a.txt", "a\n")]);
    std::fs::hard_link(&target, p.path().join("linked.txt")).expect("hard link");
    let config_before = std::fs::read(p.path().join(".git/config")).expect("config");
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tools(vec![
                (
                    "write_file",
                    json!({"path": ".git/hooks/post-commit", "content": "#!/bin/sh\ntouch pwned\n"}),
                ),
                ("write_file", json!({"path": "linked.txt", "content": "model\n"})),
                (
                    "run_command",
                    json!({"command": "echo '#!/bin/sh' > .git/hooks/pre-commit; echo '[x]' >> .git/config; cat .git/config"}),
                ),
                // The runner's folder: where a model could approve its own gate or swap the
                // verification commands.
                (
                    "write_file",
                    json!({"path": ".autowrkers/config.yaml", "content": "verify:\n  test: \"true\"\n"}),
                ),
                (
                    "run_command",
                    json!({"command": "touch .autowrkers/evil; ln -s /etc/passwd .autowrkers/link; ls .autowrkers"}),
                ),
            ]),
        ),
        Rule::new("implementer", Some(1), Reply::text("/complete")),
    ])
    .await;
    let out = p
        .run_template(&implementer_only(&server.url(), ""), &["--in-place"])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let results = tool_results(&server);
    assert!(results[0].contains("off limits"), "{}", results[0]);
    assert!(!p.path().join(".git/hooks/post-commit").exists());
    assert!(!p.path().join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read(p.path().join(".git/config")).expect("config"),
        config_before
    );
    assert!(
        !results[2].contains("[core]"),
        "read .git/config: {}",
        results[2]
    );
    assert!(results[3].contains("off limits"), "{}", results[3]);
    assert!(
        results[4].contains("Read-only file system"),
        "{}",
        results[4]
    );
    assert!(
        results[4].contains("executions"),
        "still readable: {}",
        results[4]
    );
    assert!(!p.path().join(".autowrkers/evil").exists());
    assert!(std::fs::symlink_metadata(p.path().join(".autowrkers/link")).is_err());
    // The link was replaced, not written through.
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "outside\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("linked.txt")).expect("linked"),
        "model\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_the_kernel_cannot_build_fails_closed() {
    let (server, _h) = FakeLlm::start(vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tool("run_command", json!({"command": "touch ran.txt"})),
        ),
        Rule::new("implementer", None, Reply::text("/complete")),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &implementer_only(&server.url(), ""));
    let mut cmd = p.cmd();
    // A helper that cannot set anything up stands for a kernel without namespaces/Landlock.
    cmd.env("AUTOWRKERS_SANDBOX_HELPER", "/bin/false").args([
        "run",
        "--task",
        "x",
        "--template",
        "t.yaml",
    ]);
    let out = run(cmd).await;
    assert_ne!(out.code, 0);
    let state = p.state();
    let error = state["phase_executions"][0]["error_message"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("--sandbox full-access"), "{state}");
    assert!(
        server.calls("implementer").is_empty(),
        "no model call before the sandbox"
    );

    // With the explicit opt-in the same run completes.
    let mut cmd = p.cmd();
    cmd.env("AUTOWRKERS_SANDBOX_HELPER", "/bin/false").args([
        "run",
        "--task",
        "x",
        "--template",
        "t.yaml",
        "--sandbox",
        "full-access",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_view_refuses_a_tampered_path() {
    let (server, _h) = crate::support::completing_server().await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let out = p
        .run_template(&implementer_only(&server.url(), ""), &[])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state_path = p.execution().join("state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("json");
    let id = state["id"].as_str().expect("id").to_owned();
    state["artifacts"][0]["file_path"] = json!("../../../../../../../../etc/passwd");
    std::fs::write(&state_path, state.to_string()).expect("tamper");
    let mut cmd = p.cmd();
    cmd.args(["workflow", "artifact", "view", &id[..8], "impl"]);
    let out = run(cmd).await;
    assert_ne!(out.code, 0);
    assert!(!out.stdout.contains("root:"), "{}", out.stdout);
    assert!(out.stderr.contains("artifacts/"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cli_gets_its_prompt_on_stdin_and_only_its_own_key() {
    // A stand-in for the `claude` binary: it records what it was given, then reports as
    // Claude Code does. The real CLIs are driven in agent_clis.rs.
    let bin = tempfile::tempdir().expect("bin");
    let script = bin.path().join("claude");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat > prompt.txt\nenv | cut -d= -f1 | sort > cli-env.txt\necho \"$*\" > cli-args.txt\n\
         echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"done /complete\",\"total_cost_usd\":0.001,\"usage\":{\"input_tokens\":10,\"output_tokens\":5},\"permission_denials\":[]}'\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    // A prompt above Linux's 128 KiB limit for one argument.
    let big = "lorem ipsum ".repeat(16_000);
    let template = format!(
        "name: x\nphases:\n  - id: impl\n    name: impl\n    role: implementer\n    provider_config:\n      provider_type: claude_code\n      model_name: claude-fake\n      api_url: http://127.0.0.1:9\n      extra_params: {{binary: \"{}\", api_key_env: FAKE_LLM_KEY}}\n    prompt_template: \"{big}END-OF-PROMPT\"\n    output_artifact_type: code_diff\n    success_pattern: /complete\n    order: 1\n",
        script.display()
    );
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write("t.yaml", &template);
    let mut cmd = p.cmd();
    cmd.env("OPENAI_API_KEY", OPENAI_MARK)
        .env("GITHUB_TOKEN", GITHUB_MARK)
        .args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let show = |f: &str| p.on_branch(f);
    let prompt = show("prompt.txt");
    assert!(prompt.len() > 128 * 1024, "{} bytes", prompt.len());
    assert!(prompt.contains("END-OF-PROMPT"));
    let args = show("cli-args.txt");
    assert!(!args.contains("lorem"), "prompt in argv");
    // The standing instructions go through Claude's own channel, a file.
    assert!(args.contains("--append-system-prompt-file"), "{args}");
    assert!(
        !prompt.contains("in a pipeline where several models"),
        "system prompt on stdin"
    );
    let names: Vec<String> = show("cli-env.txt").lines().map(str::to_owned).collect();
    assert!(names.contains(&"ANTHROPIC_API_KEY".to_owned()), "{names:?}");
    for other in ["OPENAI_API_KEY", "GITHUB_TOKEN", "FAKE_LLM_KEY"] {
        assert!(
            !names.contains(&other.to_owned()),
            "{other} reached the CLI"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_cannot_write_the_worktree_and_sandbox_network_opens_the_network() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let p = Project::git(&[
        ("a.txt", "a\n"),
        (
            ".autowrkers/config.yaml",
            &format!(
                "verify:\n  lint: \"touch ro.txt\"\n  test: \"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}'\"\n"
            ),
        ),
    ]);
    let verifier = VERIFIER.replace(
        "order: 2",
        "order: 1\n    sandbox: read-only\n    sandbox_network: true",
    );
    let out = p
        .run_template(&format!("name: x\nphases:\n{verifier}"), &[])
        .await;
    assert_ne!(out.code, 0, "the lint check cannot pass");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(p.execution().join("artifacts/1/verify.json")).expect("report"),
    )
    .expect("json");
    assert_ne!(report["checks"][0]["exit_code"], 0, "{report}");
    assert_eq!(report["checks"][1]["exit_code"], 0, "{report}");
    let workspace = p.state()["workspace"]["dir"]
        .as_str()
        .expect("dir")
        .to_owned();
    assert!(!Path::new(&workspace).join("ro.txt").exists());
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_ok(), "the allowed connection arrived");
}

/// Live processes of this machine whose command line is exactly `sleep <seconds>`.
fn sleeping(seconds: &str) -> Vec<i32> {
    let wanted = format!("sleep\0{seconds}\0");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
        })
        .collect()
}

/// A project whose verification check starts a daemon (`sleep 7<port>`, out of the check's
/// process group and session), waits until it runs, then does `then`. Returns the project and
/// the daemon's argument. A port is a number no other test of this process holds; neither the
/// script nor grep's pattern holds the number itself, so only the daemon matches.
fn project_with_a_daemon(port: u16, then: &str) -> (Project, String) {
    let seconds = format!("7{port}");
    let (head, last) = seconds.split_at(seconds.len() - 1);
    let script = format!(
        "P={port}; setsid sleep \"7$P\" </dev/null >/dev/null 2>&1 & n=0; \
         until grep -qs '{head}[{last}]' /proc/[0-9]*/cmdline; do n=$((n+1)); [ $n -lt 100000 ] || exit 3; done; \
         {then}"
    );
    let p = Project::git(&[
        ("a.txt", "a\n"),
        (
            ".autowrkers/config.yaml",
            &format!(
                "verify:\n  test: {}\n",
                serde_json::to_string(&script).expect("json")
            ),
        ),
    ]);
    (p, seconds)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_a_check_starts_does_not_outlive_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    // The check ends once its daemon runs.
    let (p, seconds) = project_with_a_daemon(port, "true");
    let verifier = VERIFIER.replace("order: 2", "order: 1");
    let out = p
        .run_template(&format!("name: x\nphases:\n{verifier}"), &[])
        .await;
    let left = sleeping(&seconds);
    for pid in &left {
        // SAFETY: kill(2) of a process this test's run started.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "outlived the run: {left:?}");
    assert_eq!(
        out.code, 0,
        "the daemon ran: {}\n{}",
        out.stdout, out.stderr
    );
}

/// Waits (at most `secs`) until the process `pid` has ended; false when it still runs.
fn ends_within(pid: i32, secs: i32) -> bool {
    // SAFETY: pidfd_open(2) and poll(2) on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return true; // already gone
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut p, 1, secs * 1000) == 1;
        libc::close(fd);
        ready
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runner_takes_its_running_check_with_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    // Word to the test, then the check waits for its daemon (`setsid` made the session in
    // place: the daemon is still the shell's child).
    let (p, daemon) =
        project_with_a_daemon(port, "bash -c \"echo up > /dev/tcp/127.0.0.1/$P\"; wait");
    let verifier = VERIFIER.replace("order: 2", "order: 1\n    sandbox_network: true");
    p.write("t.yaml", &format!("name: x\nphases:\n{verifier}"));
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let mut runner = tokio::process::Command::from(cmd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    tokio::select! {
        accepted = listener.accept() => { accepted.expect("accept"); }
        ended = runner.wait() => panic!("the run ended before its check was running: {ended:?}"),
    }
    let running = sleeping(&daemon);
    assert_eq!(running.len(), 1, "the daemon runs: {running:?}");
    runner.start_kill().expect("kill -9 the runner");
    runner.wait().await.expect("reaped");
    let left: Vec<i32> = tokio::task::spawn_blocking(move || {
        running
            .into_iter()
            .filter(|pid| !ends_within(*pid, 30))
            .collect()
    })
    .await
    .expect("join");
    for pid in &left {
        // SAFETY: kill(2) of a process this test's run started.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "still running after the runner was killed: {left:?}"
    );
}
