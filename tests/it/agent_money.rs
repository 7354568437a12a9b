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
    for (kind, binary, bare_url) in [("gemini_cli", "gemini", true), ("codex", "codex", false)] {
        let mut reply = Reply::text("Done. /complete");
        reply.served_model = Some("served-by-fake".into());
        let (server, _h) = FakeLlm::start(vec![Rule::new("*", None, reply)]).await;
        let p = Project::git(&[("a.txt", "a\n")]);
        std::fs::write(
            p.home.path().join("pricing.yaml"),
            "models:\n  served-by-fake: {input: 2.0, output: 10.0}\n",
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
    assert_eq!(out.code, 3, "stopped for the budget: {} {}\n{log}", out.stdout, out.stderr);
    let calls = server.calls("codex-fake").len();
    assert!((1..6).contains(&calls), "{calls} calls reached the server");
    let spent: f64 = ledger(&p).iter().filter_map(|l| l["usd"].as_f64()).sum();
    assert!(spent <= 0.03 + 1e-9, "spent ${spent:.4} of $0.03");
    assert!(spent > 0.0, "what it spent was billed");
    assert!(log.contains("run budget"), "{log}");
    assert_eq!(p.state()["status"], "budget_exceeded");
}
