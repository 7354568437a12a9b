//! `provider detect|models|test` through the real binary against the fake server.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, run};

#[tokio::test(flavor = "multi_thread")]
async fn detect_caches_models_and_models_answers_from_the_cache() {
    let (server, _h) = FakeLlm::start(vec![]).await;
    let p = Project::plain(&[]);
    let mut cmd = p.cmd();
    cmd.args([
        "provider",
        "detect",
        "ollama",
        "--url",
        &format!("http://{}", server.addr),
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("qwen2.5-coder:7b") && out.stdout.contains("32768 tokens"),
        "{}",
        out.stdout
    );
    assert!(p.home.path().join("models/ollama.json").is_file());

    let mut cmd = p.cmd();
    cmd.args(["provider", "models", "ollama"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("llama3.2:3b") && out.stdout.contains("131072 tokens"),
        "{}",
        out.stdout
    );

    let (server, _h) = FakeLlm::start(vec![]).await;
    let mut cmd = p.cmd();
    cmd.args(["provider", "detect", "lm_studio", "--url", &server.url()]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("qwen2.5-7b-instruct"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_test_reports_latency_and_the_served_model() {
    let mut reply = Reply::text("OK");
    reply.served_model = Some("qwen-served-2".into());
    let (server, _h) = FakeLlm::start(vec![Rule::new("qwen-asked", None, reply)]).await;
    let p = Project::plain(&[]);
    let mut cmd = p.cmd();
    cmd.args([
        "provider",
        "test",
        "openai_compatible",
        "--model",
        "qwen-asked",
        "--url",
        &server.url(),
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("served by qwen-served-2") && out.stdout.contains(" ms"),
        "{}",
        out.stdout
    );
    assert_eq!(server.log()[0].body["max_tokens"], 16, "a cheap call");
}
