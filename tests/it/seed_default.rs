//! The seed's default template end to end, every base URL pointed at the fake server: Gemini
//! analyzes and documents, Claude Code (the real CLI) implements, the OpenRouter reviewer fails with 500s so
//! its Ollama fallback answers, Gemini reviews style in parallel, the verifier runs the tests.

use serde_json::json;

use crate::fake_llm::{FakeLlm, Protocol, Reply, Rule};
use crate::support::{Project, SECRET, run};

const APPROVE: &str =
    "```json\n{\"approved\": true, \"summary\": \"fine\", \"issues\": []}\n```\n/review-complete";

fn rule(model: &str, turn: Option<usize>, contains: &str, reply: Reply) -> Rule {
    let mut r = Rule::new(model, turn, reply);
    if !contains.is_empty() {
        r.contains = Some(contains.to_owned());
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_default_template_runs_with_the_ollama_fallback() {
    let tasks = "```json\n{\"summary\": \"greet loudly\", \"tasks\": [{\"id\": 1, \"title\": \"shout\"}]}\n```\n/analysis-complete";
    let p = Project::git(&[
        ("greet.txt", "hello\n"),
        ("test.sh", "grep -q HELLO loud.txt\n"),
        (".autowrkers/config.yaml", "verify:\n  test: sh test.sh\n"),
    ]);
    // A new file: Claude Code refuses to overwrite a file it has not read.
    let greet = p.path().join("loud.txt");
    let (server, _h) = FakeLlm::start(vec![
        rule(
            "gemini-1.5-pro",
            Some(0),
            "Role: Codebase Analyzer",
            Reply::tool("list_files", json!({})),
        ),
        rule(
            "gemini-1.5-pro",
            None,
            "Role: Codebase Analyzer",
            Reply::text(tasks),
        ),
        rule(
            "gemini-1.5-pro",
            None,
            "Role: Planner",
            Reply::text("## Architecture\nOne script.\n/docs-complete"),
        ),
        Rule::after_tool_results(
            "claude-impl",
            0,
            Reply::tool("Write", json!({"file_path": greet, "content": "HELLO\n"})),
        ),
        Rule::after_tool_results("claude-impl", 1, Reply::text("Done. /complete")),
        rule("openai/gpt-4-turbo", None, "", Reply::status(500)),
        rule("codellama:latest", None, "", Reply::text(APPROVE)),
        rule("gemini-1.5-flash", None, "", Reply::text(APPROVE)),
    ])
    .await;
    // The seed's implementer is the real Claude Code CLI; it runs in place so the absolute path
    // its Write tool needs is known here.
    let seed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/templates/seed_default_pipeline.yaml"),
    )
    .expect("seed");
    let template = seed.replace(
        "provider_type: claude_code\n      model_name: \"\"  # Uses default Claude",
        &format!(
            "provider_type: claude_code\n      model_name: claude-impl\n      extra_params: {{binary: \"{}\"}}",
            crate::agent_clis::cli_bin().join("claude").display()
        ),
    );
    assert_ne!(template, seed);
    p.write("seed.yaml", &template);
    let base = format!("http://{}", server.addr);
    let mut cmd = p.cmd();
    cmd.env("GEMINI_API_KEY", SECRET)
        .env("GEMINI_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", SECRET)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("OPENROUTER_API_KEY", SECRET)
        .env("OPENROUTER_BASE_URL", server.url())
        .env("OLLAMA_HOST", server.addr.to_string())
        .env("AUTOWRKERS_RETRY_BASE_MS", "10")
        .args([
            "run",
            "--task",
            "Make the greeting loud",
            "--template",
            "seed.yaml",
            "--json",
            "--in-place",
        ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let state = p.state();
    assert_eq!(state["status"], "completed");
    let runs = state["phase_executions"].as_array().expect("runs");
    let func = runs
        .iter()
        .find(|r| r["phase_id"] == "phase-review-func")
        .expect("functional review");
    assert_eq!(func["provider_used"], "ollama", "the fallback answered");
    assert_eq!(func["model_used"], "codellama:latest");
    assert!(
        func["error_message"]
            .as_str()
            .expect("error")
            .contains("server error (500)")
    );
    assert_eq!(
        server.calls("openai/gpt-4-turbo").len(),
        4,
        "one call and 3 retries before the fallback"
    );

    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let fallback = events
        .iter()
        .find(|e| e["type"] == "workflow:provider_fallback")
        .expect("fallback event");
    assert_eq!(fallback["to"], "ollama (codellama:latest)");

    let protocols: Vec<Protocol> = server.log().iter().map(|r| r.protocol).collect();
    for p in [
        Protocol::Gemini,
        Protocol::Anthropic,
        Protocol::OpenAi,
        Protocol::Ollama,
    ] {
        assert!(protocols.contains(&p), "{p:?} not used");
    }
    let ollama = server.calls("codellama:latest");
    assert_eq!(
        ollama[0].body["options"]["num_ctx"], 8192,
        "num_ctx always sent"
    );
    let gemini = server.calls("gemini-1.5-flash");
    assert!(gemini[0].path.contains(":streamGenerateContent?alt=sse"));
}
