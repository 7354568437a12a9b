//! Every next step the binary prints is a command that works: each test here makes the binary
//! print a hint, takes the backticked command from its output and runs it as printed.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::live_view::{Tmux, until, watch};
use crate::support::{Project, hint, implementer_only, run};

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_phase_pauses_and_the_printed_commands_resume_and_show_it() {
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("implementer", None, Reply::status(400)).times(1),
        Rule::new("implementer", None, Reply::text("/complete")),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let template = implementer_only(&server.url(), "").replace(
        "api_key_env: FAKE_LLM_KEY",
        "api_key_env: FAKE_LLM_KEY, retries: 0",
    );
    let out = p.run_template(&template, &[]).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("fix the cause"), "{}", out.stderr);

    let mut cmd = p.cmd();
    cmd.args(hint(&out.stderr, "workflow status", &[]));
    let status = run(cmd).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("paused"), "{}", status.stdout);

    let mut cmd = p.cmd();
    cmd.args(hint(&out.stderr, "resume", &[]));
    let resumed = run(cmd).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(p.state()["status"], "completed");
    assert_eq!(server.calls("implementer").len(), 2);

    let mut cmd = p.cmd();
    cmd.args(hint(&resumed.stderr, "workflow status", &[]));
    let status = run(cmd).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("completed"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_without_a_key_names_setup_then_init_force_and_both_work() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let mut cmd = p.cmd();
    cmd.env_remove("GEMINI_API_KEY").args(["init"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // `provider setup openai` wants a terminal: typed into one, as a user would.
    let setup = hint(&out.stdout, "provider setup", &[]).join(" ");
    let scratch = tempfile::tempdir().expect("scratch");
    let (_w, mut wake) = watch(scratch.path());
    let tmux = Tmux::start(&p, &setup, &scratch.path().join("pane.txt"));
    until(&mut wake, "the key prompt", || {
        tmux.screen().contains("openai key (not set; Enter skips):")
    })
    .await;
    tmux.keys("sk-typed-openai-key");
    tmux.keys("Enter");
    until(&mut wake, "setup ends", || {
        tmux.transcript().contains("EXIT=0")
    })
    .await;
    drop(tmux);

    let mut cmd = p.cmd();
    cmd.env_remove("GEMINI_API_KEY")
        .args(hint(&out.stdout, "init --force", &[]));
    let again = run(cmd).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let config = std::fs::read_to_string(p.path().join(".autowrkers/config.yaml")).expect("config");
    assert!(
        config.contains("\ndefault_template: openai-only"),
        "the stored key now makes openai-only runnable:\n{config}"
    );
}
