//! A cost that is partly unknown says so everywhere a total is shown: the completed event, the
//! final summary, `budget history` — with how many calls, never as a silent $0.

use serde_json::Value;

use crate::fake_llm::FakeLlm;
use crate::money::{price_override, unknown_then_priced_rules, unknown_then_priced_template};
use crate::support::{Project, run};

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_cost_shows_as_plus_unknown_with_its_calls() {
    let (server, _h) = FakeLlm::start(unknown_then_priced_rules()).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    let t = unknown_then_priced_template(&server.url());
    p.write("t.yaml", &t);
    let mut cmd = p.cmd();
    cmd.args(["run", "--task", "x", "--template", "t.yaml"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("✅ completed") && out.stdout.contains("+ unknown (1 call)"),
        "{}",
        out.stdout
    );
    let events = std::fs::read_to_string(p.execution().join("events.ndjson")).expect("events");
    let completed: Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "workflow:completed")
        .expect("completed event");
    assert_eq!(completed["cost_incomplete"], true, "{completed}");
    assert_eq!(completed["unknown_cost_calls"], 1, "{completed}");
    // The known part still counts: the planner's $0.06.
    let known = completed["total_cost_usd"].as_f64().expect("usd");
    assert!((known - 0.06).abs() < 1e-6, "{completed}");
    assert!(
        out.stderr.contains("cost: $0.0600 + unknown (1 call)"),
        "{}",
        out.stderr
    );
    // The result object for scripts carries the flag too.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status", "--json"]);
    let status: Value = serde_json::from_str(&run(cmd).await.stdout).expect("status json");
    assert_eq!(status["result"]["cost"]["unknown"], true, "{status}");
    assert_eq!(status["result"]["cost"]["unknown_calls"], 1, "{status}");
    let mut cmd = p.cmd();
    cmd.args(["budget", "history"]);
    let history = run(cmd).await;
    assert!(
        history
            .stdout
            .contains("total over 30 days: $0.0600 + unknown (1 call)"),
        "{}",
        history.stdout
    );
}
