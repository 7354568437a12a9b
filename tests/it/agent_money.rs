//! Every cent of an agent CLI counted: a run that fails is billed what it reported, through
//! the real CLIs against the fake server.

use serde_json::{Value, json};

use crate::agent_clis::{implementer_template, provider, server_usage};
use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, run};

fn ledger(p: &Project) -> Vec<Value> {
    crate::support::all_files(&p.home.path().join("ledger"))
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|x| x == "ndjson"))
        .flat_map(|(_, bytes)| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_run_that_runs_out_of_turns_is_billed() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let write = |n: usize| {
        Reply::tool(
            "Write",
            json!({"file_path": p.path().join(format!("f{n}.txt")), "content": "x\n"}),
        )
    };
    let (server, _h) = FakeLlm::start(
        (0..3)
            .map(|n| Rule::after_tool_results("claude-fake", n, write(n)))
            .collect(),
    )
    .await;
    let block = provider(
        "claude_code",
        "claude-fake",
        &format!("http://{}", server.addr),
        "claude",
    )
    .replace(
        "api_key_env: FAKE_LLM_KEY}",
        "api_key_env: FAKE_LLM_KEY, max_turns: 2}",
    );
    let template = implementer_template(&block, "").replace("fallback_provider", "pause_notify");
    let out = p.run_template(&template, &[]).await;
    assert_ne!(out.code, 0, "two turns cannot finish: {}", out.stdout);
    let run0 = &p.state()["phase_executions"][0];
    assert_eq!(run0["status"], "failed", "{run0}");
    let want = server_usage(&server, "claude-fake");
    assert!(want["output"].as_u64().unwrap_or(0) > 0);
    for k in ["input", "output", "cached_input"] {
        assert_eq!(run0["tokens"][k], want[k], "{k}: {run0}");
    }
    let lines = ledger(&p);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["tokens"]["output"], want["output"]);
    assert!(
        lines[0]["usd"].as_f64().is_some_and(|u| u > 0.0),
        "{lines:?}"
    );
    assert_eq!(run0["cost_usd"], lines[0]["usd"]);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status"]);
    let status = run(cmd).await;
    let usd = lines[0]["usd"].as_f64().unwrap_or_default();
    assert!(
        status.stdout.contains(&format!("${usd:.4}")),
        "{}",
        status.stdout
    );
}

/// A phase with no `model_name`: priced by the model that served (Gemini CLI reports it), or
/// for Codex — which never says — by the documented default it is then given.
#[tokio::test(flavor = "multi_thread")]
async fn a_phase_without_model_name_is_priced_by_the_model_that_served() {
    for (kind, binary, bare_url) in [
        ("gemini_cli", "gemini", true),
        ("qwen_code", "qwen", false),
        ("codex", "codex", false),
    ] {
        let mut reply = Reply::text("Done. /complete");
        reply.served_model = Some("served-by-fake".into());
        let (server, _h) = FakeLlm::start(vec![Rule::new("*", None, reply)]).await;
        let p = Project::git(&[("a.txt", "a\n")]);
        std::fs::write(
            p.home.path().join("pricing.yaml"),
            // Qwen Code reports the model it asked for: its default, qwen3.5-plus (0.15.10).
            "models:\n  served-by-fake: {input: 2.0, output: 10.0}\n  qwen3.5-plus: {input: 0.4, output: 2.4}\n",
        )
        .expect("pricing");
        let url = if bare_url {
            format!("http://{}", server.addr)
        } else {
            server.url()
        };
        let template = implementer_template(&provider(kind, "", &url, binary), "")
            .replace("      model_name: \n", "");
        let out = p.run_template(&template, &[]).await;
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        let lines = ledger(&p);
        assert!(!lines.is_empty(), "{kind}: no ledger line");
        for line in &lines {
            assert!(line["usd"].as_f64().is_some(), "{kind}: unpriced {line}");
        }
        match kind {
            "codex" => {
                assert_eq!(lines[0]["model"], "gpt-5-codex", "{kind}");
                assert!(server.log().iter().all(|r| r.model == "gpt-5-codex"));
            }
            "qwen_code" => assert_eq!(lines[0]["model_served"], "qwen3.5-plus", "{kind}"),
            _ => assert_eq!(
                lines[0]["model_served"], "served-by-fake",
                "{kind}: {lines:?}"
            ),
        }
    }
}

/// Codex takes no dollar cap and reports usage only when its turn ends: the watchdog in front
/// of it refuses the first call that would pass what the run may spend, and stops the run.
#[tokio::test(flavor = "multi_thread")]
async fn a_codex_run_is_stopped_at_the_remaining_budget() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let step = |n: usize| {
        let mut r = Reply::tool(
            "exec_command",
            json!({"cmd": format!("echo {n} >> steps.txt")}),
        );
        (r.prompt_tokens, r.completion_tokens) = (1000, 1000);
        r
    };
    let (server, _h) = FakeLlm::start(
        (0..6)
            .map(|n| Rule::after_tool_results("codex-fake", n, step(n)))
            .chain([Rule::after_tool_results(
                "codex-fake",
                6,
                Reply::text("Done. /complete"),
            )])
            .collect(),
    )
    .await;
    // $0.011 a call as answered; up to ~$0.02 a call as reserved.
    std::fs::write(
        p.home.path().join("pricing.yaml"),
        "models:\n  codex-fake: {input: 1.0, output: 10.0, max_output: 1000}\n",
    )
    .expect("pricing");
    let template =
        implementer_template(&provider("codex", "codex-fake", &server.url(), "codex"), "")
            .replace("fallback_provider", "pause_notify");
    let out = p.run_template(&template, &["--budget", "0.03"]).await;
    let log = std::fs::read_to_string(p.execution().join("logs/impl.1.log")).unwrap_or_default();
    assert_eq!(
        out.code, 3,
        "stopped for the budget: {} {}\n{log}",
        out.stdout, out.stderr
    );
    let calls = server.calls("codex-fake").len();
    assert!((1..6).contains(&calls), "{calls} calls reached the server");
    let spent: f64 = ledger(&p).iter().filter_map(|l| l["usd"].as_f64()).sum();
    assert!(spent <= 0.03 + 1e-9, "spent ${spent:.4} of $0.03");
    assert!(spent > 0.0, "what it spent was billed");
    assert!(log.contains("run budget"), "{log}");
    assert_eq!(p.state()["status"], "budget_exceeded");
}

/// Claude Code marks a cost it had to guess with `costBasis: "unknown"`: our table wins where it
/// knows the model, else the figure is billed as `estimated`, never as the provider's own.
#[tokio::test(flavor = "multi_thread")]
async fn claudes_guessed_cost_yields_to_the_table_or_is_marked_estimated() {
    for (model, source) in [
        ("claude-sonnet-4-5", "table"),
        ("claude-made-up", "estimated"),
    ] {
        // A stand-in for `claude` that reports as Claude Code does for a model it does not know.
        let bin = tempfile::tempdir().expect("bin");
        let script = bin.path().join("claude");
        let result = json!({
            "type": "result", "subtype": "success", "is_error": false, "result": "done /complete",
            "total_cost_usd": 0.5,
            "usage": {"input_tokens": 1000, "output_tokens": 100},
            "modelUsage": {model: {"costUSD": 0.5, "costBasis": "unknown"}},
            "permission_denials": []
        });
        std::fs::write(
            &script,
            format!("#!/bin/sh\ncat > /dev/null\necho '{{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"{model}\"}}'\necho '{result}'\n"),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let p = Project::git(&[("a.txt", "a\n")]);
        let block = provider("claude_code", model, "http://127.0.0.1:9", "claude").replace(
            &crate::agent_clis::cli_bin()
                .join("claude")
                .display()
                .to_string(),
            &script.display().to_string(),
        );
        let out = p.run_template(&implementer_template(&block, ""), &[]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let lines = ledger(&p);
        assert_eq!(lines[0]["price_source"], source, "{model}: {lines:?}");
        let usd = lines[0]["usd"].as_f64().expect("usd");
        match source {
            // 1000 in × $3/M + 100 out × $15/M.
            "table" => assert!((usd - 0.0045).abs() < 1e-9, "{usd}"),
            _ => assert!((usd - 0.5).abs() < 1e-9, "{usd}"),
        }
    }
}
