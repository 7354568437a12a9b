//! Money: the ledger agrees with the price table to the cent, hard caps stop calls before they
//! are made (parallel ones included), monthly scopes, unknown prices.

use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, git, phase, run};

pub const TASKS: &str = "```json\n{\"summary\": \"s\", \"tasks\": []}\n```\n/done";
const APPROVE: &str = "```json\n{\"approved\": true, \"summary\": \"ok\"}\n```\n/done";

/// A reply that bills `completion` output tokens and 100 prompt tokens.
pub fn billed(text: &str, completion: u64) -> Reply {
    let mut r = Reply::text(text);
    (r.prompt_tokens, r.completion_tokens) = (100, completion);
    r
}

/// Prices where output dominates: $0.001 a token, capped at 100 tokens a call, so every call
/// reserves $0.10 and a 60-token answer costs $0.06.
pub fn price_override(p: &Project) {
    std::fs::write(
        p.home.path().join("pricing.yaml"),
        "models:\n  capped: {input: 0.001, output: 1000, max_output: 100}\n",
    )
    .expect("pricing");
}

pub fn ledger_lines(p: &Project) -> Vec<Value> {
    let dir = p.home.path().join("ledger");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|x| x == "ndjson") {
            let text = std::fs::read_to_string(entry.path()).expect("ledger");
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("ledger line")),
            );
        }
    }
    out
}

fn extra(max_tokens: bool) -> String {
    if max_tokens {
        "      extra_params: {api_key_env: FAKE_LLM_KEY, max_tokens: 100}\n".into()
    } else {
        String::new()
    }
}

pub fn with_max_tokens(t: String) -> String {
    t.replace(
        "      extra_params: {api_key_env: FAKE_LLM_KEY}\n",
        &extra(true),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_matches_the_price_table_to_the_cent() {
    let mut tool = Reply::tool("list_files", json!({}));
    let mut text = Reply::text(TASKS);
    for r in [&mut tool, &mut text] {
        (r.prompt_tokens, r.cached_tokens, r.completion_tokens) = (1000, 4000, 500);
    }
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("gpt-4o", Some(0), tool),
        Rule::new("gpt-4o", Some(1), text),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    p.write(
        "t.yaml",
        &("name: x\nphases:\n".to_owned()
            + &phase(
                "p1",
                "analyzer",
                "gpt-4o",
                &server.url(),
                ("analyzer_prompt", "task_list", "/done"),
                1,
                "",
            )),
    );
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    // gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
    let per_call = 1000.0 * 2.5 / 1e6 + 4000.0 * 1.25 / 1e6 + 500.0 * 10.0 / 1e6;
    let lines = ledger_lines(&p);
    assert_eq!(lines.len(), 2, "one line per billed call");
    for l in &lines {
        assert_eq!(l["price_source"], "table");
        assert_eq!(
            l["tokens"],
            json!({"input": 1000, "output": 500, "cached_input": 4000, "cache_write": 0})
        );
        assert!(
            (l["usd"].as_f64().expect("usd") - per_call).abs() < 1e-9,
            "{l}"
        );
        assert_eq!(l["phase"], "p1");
        assert_eq!(l["provider"], "openai_compatible");
    }
    let total: f64 = lines.iter().map(|l| l["usd"].as_f64().expect("usd")).sum();
    assert!((total - 0.025).abs() < 1e-9);

    let mut cmd = p.cmd();
    cmd.args(["workflow", "status"]);
    let status = run(cmd).await;
    assert!(status.stdout.contains("cost $0.0250"), "{}", status.stdout);
    let mut cmd = p.cmd();
    cmd.args(["budget", "status", "--json"]);
    let budget = run(cmd).await;
    let global: Value =
        serde_json::from_str(budget.stdout.lines().next().expect("global row")).expect("json");
    assert!(
        (global["spent"].as_f64().expect("spent") - total).abs() < 1e-9,
        "{global}"
    );
    let mut cmd = p.cmd();
    cmd.args(["budget", "history", "--json"]);
    let history = run(cmd).await;
    let row: Value =
        serde_json::from_str(history.stdout.lines().next().expect("row")).expect("json");
    assert_eq!(
        (row["model"].as_str(), row["calls"].as_u64()),
        (Some("gpt-4o"), Some(2))
    );
}

fn three_phase_template(url: &str) -> String {
    let mut t = "name: x\nfailure_behavior: fallback_provider\nphases:\n".to_owned();
    t += &phase(
        "p1",
        "analyzer",
        "capped",
        url,
        ("analyzer_prompt", "task_list", "/done"),
        1,
        "",
    );
    t += &phase(
        "p2",
        "planner",
        "capped",
        url,
        ("planner_prompt", "implementation_plan", "/done"),
        2,
        "",
    );
    t += &phase(
        "p3",
        "reviewer_custom",
        "capped",
        url,
        ("reviewer_functional_prompt", "review_report", "/done"),
        3,
        "",
    );
    with_max_tokens(t)
}

fn capped_rules() -> Vec<Rule> {
    vec![
        Rule {
            contains: Some("Role: Codebase Analyzer".into()),
            ..Rule::new("capped", None, billed(TASKS, 60))
        },
        Rule {
            contains: Some("Role: Planner".into()),
            ..Rule::new("capped", None, billed("plan /done", 60))
        },
        Rule::new("capped", None, billed(APPROVE, 60)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_cap_stops_before_the_call_and_resume_continues() {
    let (server, _h) = FakeLlm::start(capped_rules()).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    let out = p
        .run_template(&three_phase_template(&server.url()), &["--budget", "0.2"])
        .await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.log().len(),
        2,
        "the third call would exceed $0.20: it is never made"
    );
    let state = p.state();
    assert_eq!(state["status"], "budget_exceeded");
    assert!(
        state["message"]
            .as_str()
            .expect("message")
            .contains("execution budget"),
        "{state}"
    );
    let spent: f64 = ledger_lines(&p)
        .iter()
        .map(|l| l["usd"].as_f64().expect("usd"))
        .sum();
    assert!((spent - 0.12).abs() < 1e-5 && spent <= 0.2, "spent {spent}");
    let id = state["id"].as_str().expect("id").to_owned();
    let committed = git(
        &p.path(),
        &[
            "show",
            &format!("refs/autowrkers/executions/{id}:artifacts/1/p2.md"),
        ],
    );
    assert!(committed.contains("plan"), "finished phases are committed");

    // The two commands the stop message names, run as printed (N filled in).
    let mut cmd = p.cmd();
    cmd.args(crate::support::hint(
        &out.stderr,
        "budget set",
        &[("N", "1")],
    ));
    let set = run(cmd).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    let mut cmd = p.cmd();
    cmd.args(crate::support::hint(&out.stderr, "resume", &[]));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        server.log().len(),
        3,
        "the two finished calls are not repeated"
    );
    assert_eq!(p.state()["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_reviewers_near_the_limit_never_overspend_together() {
    let (server, _h) = FakeLlm::start(vec![
        Rule {
            contains: Some("Role: Codebase Analyzer".into()),
            ..Rule::new("capped", None, billed(TASKS, 60))
        },
        Rule::new(
            "capped",
            None,
            billed(APPROVE, 60).delayed(std::time::Duration::from_millis(100)),
        ),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    let mut t = "name: x\nphases:\n".to_owned();
    t += &phase(
        "p1",
        "analyzer",
        "capped",
        &server.url(),
        ("analyzer_prompt", "task_list", "/done"),
        1,
        "",
    );
    t += &phase(
        "ra",
        "reviewer_functional",
        "capped",
        &server.url(),
        ("reviewer_functional_prompt", "review_report", "/done"),
        2,
        "",
    );
    t += &phase(
        "rb",
        "reviewer_style",
        "capped",
        &server.url(),
        ("reviewer_style_prompt", "review_report", "/done"),
        3,
        "    parallel_with: ra\n",
    );
    let out = p
        .run_template(&with_max_tokens(t), &["--budget", "0.2"])
        .await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    // $0.06 spent; each reviewer reserves $0.10; only one fits under $0.20.
    assert_eq!(
        server.log().len(),
        2,
        "one reviewer call was refused before it was made"
    );
    let spent: f64 = ledger_lines(&p)
        .iter()
        .map(|l| l["usd"].as_f64().expect("usd"))
        .sum();
    assert!(spent <= 0.2 + 1e-9, "spent {spent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn last_months_spending_does_not_count_against_this_month() {
    let (server, _h) = FakeLlm::start(capped_rules()).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    p.write("t.yaml", &three_phase_template(&server.url()));
    let last_month = (chrono::Utc::now() - chrono::Duration::days(40))
        .format("%Y-%m")
        .to_string();
    let old = json!({"ts": format!("{last_month}-15T10:00:00.000Z"), "execution": "old", "project": p.path().to_string_lossy(),
        "phase": "p1", "iteration": 1, "provider": "openai", "model": "gpt-4o", "tokens": {"input": 1, "output": 1},
        "usd": 100.0, "price_source": "table"});
    let ledger = p.home.path().join("ledger");
    std::fs::create_dir_all(&ledger).expect("mkdir");
    std::fs::write(
        ledger.join(format!("{last_month}.ndjson")),
        format!("{old}\n"),
    )
    .expect("old line");
    let mut cmd = p.cmd();
    cmd.args(["budget", "set", "--scope", "project", "--limit", "1"]);
    assert_eq!(run(cmd).await.code, 0);
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(
        out.code, 0,
        "$100 of last month must not block this month: {}\n{}",
        out.stdout, out.stderr
    );
    let mut cmd = p.cmd();
    cmd.args(["budget", "status", "--json"]);
    let status = run(cmd).await;
    let project: Value = status
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|v| {
            v["scope"]
                .as_str()
                .is_some_and(|s| s.starts_with("project"))
        })
        .expect("project row");
    assert!(
        (project["spent"].as_f64().expect("spent") - 0.18).abs() < 1e-5,
        "{project}"
    );
    assert_eq!(project["limit"], 1.0);

    // A project limit below this month's spending stops the next run before its first call.
    let mut cmd = p.cmd();
    cmd.args(["budget", "set", "--scope", "project", "--limit", "0.2"]);
    assert_eq!(run(cmd).await.code, 0);
    std::fs::remove_dir_all(p.path().join(".autowrkers/executions")).expect("clean");
    let calls = server.log().len();
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(server.log().len(), calls, "no call was made");
    assert!(
        p.state()["message"]
            .as_str()
            .expect("message")
            .contains("project budget")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_price_is_shown_as_unknown_and_other_budgets_still_hold() {
    let (server, _h) = FakeLlm::start(unknown_then_priced_rules()).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    let t = unknown_then_priced_template(&server.url());
    let out = p
        .run_template(&with_max_tokens(t), &["--budget", "0.05"])
        .await;
    assert_eq!(
        out.code, 3,
        "the priced phase needs $0.10 > $0.05: {}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(
        server.calls("mystery-model").len(),
        1,
        "an unknown price cannot be reserved, the call is made"
    );
    assert_eq!(server.calls("capped").len(), 0);
    let lines = ledger_lines(&p);
    assert_eq!(lines[0]["price_source"], "unknown");
    assert!(lines[0]["usd"].is_null(), "unknown is not $0");
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status"]);
    let status = run(cmd).await;
    assert!(
        status.stdout.contains("cost unknown") && status.stdout.contains("+ unknown"),
        "{}",
        status.stdout
    );
    let mut cmd = p.cmd();
    cmd.args(["budget", "status"]);
    let budget = run(cmd).await;
    assert!(
        budget.stdout.contains("+ unknown (1 call)"),
        "{}",
        budget.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prices_every_phase_and_calls_nothing() {
    let (server, _h) = FakeLlm::start(vec![]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    p.write("t.yaml", &three_phase_template(&server.url()));
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--task",
        "Count the words",
        "--template",
        "t.yaml",
        "--dry-run",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Count the words"),
        "prompts are rendered: {}",
        out.stdout
    );
    assert!(out.stdout.contains("total: $0.3"), "{}", out.stdout);
    assert!(server.log().is_empty());
    assert!(
        !p.path().join(".autowrkers/executions").exists(),
        "no execution is created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_reported_cost_is_billed_with_the_table_figure_beside_it() {
    let mut reply = Reply::text(TASKS);
    (reply.prompt_tokens, reply.completion_tokens, reply.cost) = (1000, 500, Some(0.0042));
    let (server, _h) = FakeLlm::start(vec![Rule::new("openai/gpt-4o", None, reply)]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let t = ("name: x\nphases:\n".to_owned()
        + &phase(
            "p1",
            "analyzer",
            "openai/gpt-4o",
            "X",
            ("analyzer_prompt", "task_list", "/done"),
            1,
            "",
        ))
        .replace(
            "provider_type: openai_compatible",
            "provider_type: openrouter",
        )
        .replace("      api_url: X\n", "")
        .replace("      extra_params: {api_key_env: FAKE_LLM_KEY}\n", "");
    p.write("t.yaml", &t);
    let mut cmd = p.cmd();
    cmd.env("OPENROUTER_BASE_URL", server.url())
        .env("OPENROUTER_API_KEY", crate::support::SECRET)
        .args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let line = &ledger_lines(&p)[0];
    assert_eq!(line["price_source"], "provider");
    assert_eq!(line["usd"], 0.0042, "OpenRouter's own figure is billed");
    let table = 1000.0 * 2.5 / 1e6 + 500.0 * 10.0 / 1e6;
    assert!(
        (line["table_usd"].as_f64().expect("table") - table).abs() < 1e-9,
        "{line}"
    );
    assert_eq!(server.log()[0].body["model"], "openai/gpt-4o");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warning_at_80_percent_and_budget_reset_counts_from_zero() {
    let rules = vec![
        Rule {
            contains: Some("Role: Codebase Analyzer".into()),
            ..Rule::new("capped", None, billed(TASKS, 80))
        },
        Rule {
            contains: Some("Role: Planner".into()),
            ..Rule::new("capped", None, billed("plan /done", 80))
        },
        Rule::new("capped", None, billed(APPROVE, 80)),
    ];
    let (server, _h) = FakeLlm::start(rules).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    let out = p
        .run_template(
            &three_phase_template(&server.url()),
            &["--budget", "0.2", "--json"],
        )
        .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let warning: Value = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|e| e["type"] == "workflow:budget_warning")
        .expect("a budget warning at 80 %");
    assert_eq!(warning["scope"], "execution");
    assert!(warning["spent"].as_f64().expect("spent") >= 0.16 - 1e-6);

    // A project budget reset counts this month's spending from zero again.
    let mut cmd = p.cmd();
    cmd.args(["budget", "set", "--scope", "project", "--limit", "5"]);
    assert_eq!(run(cmd).await.code, 0);
    let mut cmd = p.cmd();
    cmd.args(["budget", "reset", "--scope", "project"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut cmd = p.cmd();
    cmd.args(["budget", "status", "--json"]);
    let status = run(cmd).await;
    let project: Value = status
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|v| {
            v["scope"]
                .as_str()
                .is_some_and(|s| s.starts_with("project"))
        })
        .expect("project row");
    assert_eq!(project["spent"], 0.0, "{project}");

    // `workflow list --status` filters.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list", "--status", "budget_exceeded", "--json"]);
    assert_eq!(run(cmd).await.stdout.lines().count(), 1);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "list", "--status", "completed", "--json"]);
    assert_eq!(run(cmd).await.stdout.lines().count(), 0);
}

/// An analyzer on a model of unknown price, then a planner on `capped`.
pub fn unknown_then_priced_rules() -> Vec<Rule> {
    vec![
        Rule::new("mystery-model", None, billed(TASKS, 60)),
        Rule::new("capped", None, billed("plan /done", 60)),
    ]
}

/// The template of [`unknown_then_priced_rules`].
pub fn unknown_then_priced_template(url: &str) -> String {
    let mut t = "name: x\nphases:\n".to_owned();
    t += &phase(
        "p1",
        "analyzer",
        "mystery-model",
        url,
        ("analyzer_prompt", "task_list", "/done"),
        1,
        "",
    );
    t += &phase(
        "p2",
        "planner",
        "capped",
        url,
        ("planner_prompt", "implementation_plan", "/done"),
        2,
        "",
    );
    t
}
