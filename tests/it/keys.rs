//! Keys: stored encrypted with age (mode 0600), used when the environment has none, and never
//! written or printed anywhere — even when a provider echoes one back in an error body.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use serde_json::json;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, SECRET, all_files, phase, run};

fn setup_key(
    p: &Project,
    provider: &str,
    key: &str,
    passphrase: Option<&str>,
) -> std::process::Output {
    let mut cmd = p.cmd();
    cmd.args(["provider", "setup", provider, "--key-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(pw) = passphrase {
        cmd.env("AUTOWRKERS_PASSPHRASE", pw);
    }
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{key}\n").as_bytes())
        .expect("write key");
    child.wait_with_output().expect("wait")
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_encrypted_private_and_used_from_the_store() {
    let (server, _h) = FakeLlm::start(vec![Rule::new(
        "gpt-x",
        None,
        Reply::text("```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/done"),
    )])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let out = setup_key(&p, "openai", SECRET, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = p.home.path().join("provider_keys.age");
    let bytes = std::fs::read(&file).expect("key file");
    assert!(
        !String::from_utf8_lossy(&bytes).contains(SECRET),
        "the key file holds the key in clear"
    );
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "an age file");
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let identity = p.home.path().join("identity.txt");
    assert_eq!(
        std::fs::metadata(&identity)
            .expect("identity")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let mut cmd = p.cmd();
    cmd.args(["provider", "list"]);
    let list = run(cmd).await;
    let openai = list
        .stdout
        .lines()
        .find(|l| l.starts_with("openai "))
        .expect("openai row")
        .to_owned();
    assert!(openai.contains("set (key store)"), "{openai}");
    assert!(!list.stdout.contains(SECRET) && !list.stderr.contains(SECRET));

    // A run with no key in the environment takes it from the store.
    let t = "name: x\nphases:\n".to_owned()
        + &phase(
            "p1",
            "analyzer",
            "gpt-x",
            "X",
            ("analyzer_prompt", "task_list", "/done"),
            1,
            "",
        );
    let t = t
        .replace("provider_type: openai_compatible", "provider_type: openai")
        .replace("      api_url: X\n", "")
        .replace("      extra_params: {api_key_env: FAKE_LLM_KEY}\n", "");
    p.write("t.yaml", &t);
    let mut cmd = p.cmd();
    cmd.env("OPENAI_BASE_URL", server.url())
        .args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.log()[0].authorization.as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_protects_the_store() {
    let p = Project::plain(&[]);
    let out = setup_key(&p, "anthropic", SECRET, Some("correct horse"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !p.home.path().join("identity.txt").exists(),
        "passphrase mode needs no identity file"
    );
    let mut cmd = p.cmd();
    cmd.args(["provider", "list"]);
    let locked = run(cmd).await;
    assert!(
        locked
            .stdout
            .lines()
            .any(|l| l.starts_with("anthropic") && l.contains("missing")),
        "{}",
        locked.stdout
    );
    assert!(
        locked.stderr.contains("AUTOWRKERS_PASSPHRASE"),
        "{}",
        locked.stderr
    );
    let mut cmd = p.cmd();
    cmd.env("AUTOWRKERS_PASSPHRASE", "correct horse")
        .args(["provider", "list"]);
    let open = run(cmd).await;
    assert!(
        open.stdout
            .lines()
            .any(|l| l.starts_with("anthropic") && l.contains("set (key store)")),
        "{}",
        open.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_without_a_terminal_refuses_politely() {
    let p = Project::plain(&[]);
    let mut cmd = p.cmd();
    cmd.args(["provider", "setup"]).stdin(Stdio::null());
    let out = run(cmd).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("needs a terminal") && out.stderr.contains("OPENAI_API_KEY"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_echoed_key_never_reaches_files_events_or_errors() {
    let mut denied = Reply::status(401);
    denied.echo_key = true;
    let (server, _h) = FakeLlm::start(vec![Rule::new("gpt-x", None, denied)]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let t = "name: x\nfailure_behavior: fallback_provider\nphases:\n".to_owned()
        + &phase(
            "p1",
            "analyzer",
            "gpt-x",
            &server.url(),
            ("analyzer_prompt", "task_list", "/done"),
            1,
            "",
        );
    let out = p.run_template(&t, &["--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(server.calls("gpt-x").len(), 1, "401 is not retried");
    assert!(
        out.stdout.contains("authentication failed (401)"),
        "the error is reported: {}",
        out.stdout
    );
    assert!(out.stdout.contains("[redacted]"), "{}", out.stdout);
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    for dir in [p.path().join(".autowrkers"), p.home.path().to_path_buf()] {
        for (path, bytes) in all_files(&dir) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET),
                "key leaked into {}",
                path.display()
            );
        }
    }
    let _ = json!(null);
}
