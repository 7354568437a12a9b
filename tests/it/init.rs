//! `autowrkers init` as a new user meets it: one OpenAI key, a fresh repository, then `run`
//! with no `--template`; and the hints when nothing is set up.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, run};

/// A rule that answers requests whose text holds `marker` (each built-in prompt names its role).
fn on(marker: &str, model: &str, turn: Option<usize>, reply: Reply) -> Rule {
    Rule {
        contains: Some(marker.to_owned()),
        ..Rule::new(model, turn, reply)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_with_one_openai_key_runs_init_then_run() {
    let approve = "```json\n{\"approved\": true, \"summary\": \"good\", \"issues\": []}\n```\n/review-complete";
    let (server, _h) = FakeLlm::start(vec![
        on(
            "# Role: Codebase Analyzer",
            "gpt-4o",
            None,
            Reply::text("```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/analysis-complete"),
        ),
        on(
            "# Role: Planner",
            "gpt-4o",
            None,
            Reply::text("Notes for the implementer.\n/docs-complete"),
        ),
        on(
            "# Role: Code Implementer",
            "gpt-4o",
            Some(0),
            Reply::tool(
                "write_file",
                serde_json::json!({"path": "a.txt", "content": "changed\n"}),
            ),
        ),
        on(
            "# Role: Code Implementer",
            "gpt-4o",
            None,
            Reply::text("/complete"),
        ),
        Rule::new("gpt-4o-mini", None, Reply::text(approve)),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n"), ("Makefile", "test:\n\ttrue\n")]);
    let user = |args: &[&str]| {
        let mut cmd = p.cmd();
        cmd.env("OPENAI_API_KEY", crate::support::SECRET)
            .env("OPENAI_BASE_URL", server.url())
            .env_remove("GEMINI_API_KEY")
            .env_remove("GOOGLE_API_KEY")
            .args(args);
        cmd
    };
    let out = run(user(&["init"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("openai-only        can run here"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("make test"), "{}", out.stdout);
    let config = std::fs::read_to_string(p.path().join(".autowrkers/config.yaml")).expect("config");
    assert!(
        config.starts_with("# yaml-language-server: $schema=config.schema.json"),
        "{config}"
    );
    assert!(config.contains("default_template: openai-only"), "{config}");
    assert!(config.contains("test: \"make test\""), "{config}");
    assert!(p.path().join(".autowrkers/config.schema.json").is_file());
    // A second init keeps the user's file unless told.
    let again = run(user(&["init"])).await;
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);

    let out = run(user(&[
        "run",
        "--path",
        ".",
        "--task",
        "change a.txt",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains(crate::support::SECRET));
    assert!(!out.stdout.contains(crate::support::SECRET));
    let branch = p.branch();
    // The last line is the one result object a script needs; `workflow status --json` has it too.
    let last = out.stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(last).expect("result line");
    let status = run(user(&["workflow", "status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    for r in [&result, &status["result"]] {
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(r["branch"], branch.as_str(), "{r}");
        assert_eq!(
            r["base_commit"],
            p.state()["workspace"]["base_commit"],
            "{r}"
        );
        assert_eq!(r["change"]["files"], serde_json::json!(["a.txt"]), "{r}");
        assert_eq!(r["change"]["insertions"], 1, "{r}");
        let head = crate::support::git(&p.path(), &["rev-parse", &branch]);
        assert_eq!(r["change"]["head_commit"], head.trim(), "{r}");
        let reviews = r["reviews"].as_array().expect("reviews");
        assert_eq!(reviews.len(), 2, "{r}");
        assert!(
            reviews
                .iter()
                .all(|v| v["approved"] == true && v["summary"] == "good"),
            "{r}"
        );
        assert_eq!(r["verification"]["passed"], true, "{r}");
        assert_eq!(
            r["verification"]["checks"],
            serde_json::json!([["test", 0]]),
            "{r}"
        );
        assert!(r["cost"]["usd"].as_f64().unwrap_or_default() > 0.0, "{r}");
        assert_eq!(r["cost"]["unknown"], false, "{r}");
    }
    assert_eq!(result["type"], "workflow:result");
    // Every call sent the output cap its reservation assumed (gpt-4o's and gpt-4o-mini's own
    // limit, 16384), in the field OpenAI's API takes, so the reservation is a true bound.
    let log = server.log();
    assert!(!log.is_empty());
    for call in &log {
        assert_eq!(call.body["max_completion_tokens"], 16384, "{}", call.body);
        assert!(call.body.get("max_tokens").is_none(), "{}", call.body);
    }
    crate::support::git(&p.path(), &["checkout", "-q", &branch]);
    assert_eq!(
        std::fs::read_to_string(p.path().join("a.txt")).expect("a"),
        "changed\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_init_says_what_is_missing_and_run_names_the_template_that_would_run() {
    let p = Project::git(&[("a.txt", "a\n")]);
    let mut cmd = p.cmd();
    cmd.env_remove("GEMINI_API_KEY").args(["init"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("not here: needs OPENAI_API_KEY"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("none found: fill in `verify:`"),
        "{}",
        out.stdout
    );
    let config = std::fs::read_to_string(p.path().join(".autowrkers/config.yaml")).expect("config");
    assert!(
        config.contains("# default_template: openai-only"),
        "{config}"
    );
    assert!(config.contains("# verify:"), "{config}");
    // The built-in default cannot run with one OpenAI key; `run` names the one that can.
    let mut cmd = p.cmd();
    cmd.env("OPENAI_API_KEY", "sk-x")
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_API_KEY")
        .args(["run", "--task", "x"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`--template openai-only` can run here"),
        "{}",
        out.stderr
    );
}
