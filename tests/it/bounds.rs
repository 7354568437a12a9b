//! Bounded output: a runaway reply is stopped at the artifact limit, streamed text becomes a
//! few coalesced progress events, and events and logs are capped with a visible marker.

use serde_json::Value;

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::support::{Project, phase};

const LIMITS: &str =
    "output_limits:\n  artifact_bytes: 100000\n  log_bytes: 50000\n  event_bytes: 1024\n";

/// A project with small output limits and a one-phase template; returns both.
fn planner_project(url: &str) -> (Project, String) {
    let p = Project::git(&[("a.txt", "a\n"), (".autowrkers/config.yaml", LIMITS)]);
    let t = "name: x\nphases:\n".to_owned()
        + &phase(
            "plan",
            "planner",
            "planner",
            url,
            ("planner_prompt", "implementation_plan", "/complete"),
            1,
            "    max_retries: 0\n",
        );
    (p, t)
}

fn progress_texts(p: &Project) -> Vec<String> {
    let events = std::fs::read_to_string(p.execution().join("events.ndjson")).expect("events");
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "workflow:phase_progress")
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_reply_is_stopped_and_nothing_grows_with_it() {
    let line = "x".repeat(99) + "\n";
    let (server, _h) = FakeLlm::start(vec![Rule::new(
        "planner",
        None,
        Reply::text(&line.repeat(10_000)),
    )])
    .await;
    let (p, t) = planner_project(&server.url());
    let out = p.run_template(&t, &[]).await;
    assert_ne!(out.code, 0, "a 1 MB answer over a 100 kB limit cannot pass");
    let state = p.state();
    let error = state["phase_executions"][0]["error_message"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("artifact_bytes"), "{error}");
    assert_eq!(
        state["cost_incomplete"], true,
        "a stopped reply's cost is unknown"
    );
    assert!(
        out.stdout.len() < 40_000,
        "stdout grew with the reply: {}",
        out.stdout.len()
    );
    let events = std::fs::metadata(p.execution().join("events.ndjson")).expect("events");
    assert!(
        events.len() < 40_000,
        "events.ndjson: {} bytes",
        events.len()
    );
    for text in progress_texts(&p) {
        assert!(text.len() < 1024 + 100, "an event of {} bytes", text.len());
    }
    let log = std::fs::read_to_string(p.execution().join("logs/plan.1.log")).expect("log");
    assert!(log.len() < 50_000 + 200, "log: {} bytes", log.len());
    assert!(
        log.contains("[log cut at 50000 bytes"),
        "no marker in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_lines_become_a_few_events_with_a_marker_for_what_they_skip() {
    let mut text: String = (0..3000)
        .map(|i| format!("line {i:05} of the plan\n"))
        .collect();
    text.push_str("/complete\n");
    let (server, _h) = FakeLlm::start(vec![Rule::new("planner", None, Reply::text(&text))]).await;
    let (p, t) = planner_project(&server.url());
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = progress_texts(&p);
    assert!(
        texts.len() < 300,
        "{} events for 3000 lines: not coalesced",
        texts.len()
    );
    assert!(
        texts.iter().any(|t| t.contains("bytes not shown")),
        "no marker"
    );
    assert!(
        texts.iter().any(|t| t.contains("/complete")),
        "the end is shown"
    );
    // The artifact and the log keep everything.
    let log = std::fs::read_to_string(p.execution().join("logs/plan.1.log")).expect("log");
    assert!(log.contains("line 01500 of the plan"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_past_a_megabyte_is_checked_from_its_file_and_kept_whole() {
    // Three megabytes of text: past the 1 MB a reply may take in memory, under the default
    // 8 MB artifact limit. The JSON block and the pattern come last, in the file's part.
    let filler: String = (0..30_000)
        .map(|i| format!("line {i:05}: a long {{answer}} with ``` marks ✓\n"))
        .collect();
    let analysis = format!(
        "{filler}```json\n{{\"summary\": \"found at the end\", \"tasks\": []}}\n```\n/analysis-complete"
    );
    let plan = format!("{filler}the end of the plan\n/complete\n");
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("analyzer", None, Reply::text(&analysis)),
        Rule::new("planner", None, Reply::text(&plan)),
    ])
    .await;
    let p = Project::git(&[("a.txt", "a\n")]);
    let t = "name: x\nphases:\n".to_owned()
        + &phase(
            "analysis",
            "analyzer",
            "analyzer",
            &server.url(),
            ("analyzer_prompt", "task_list", "/analysis-complete"),
            1,
            "    max_retries: 0\n",
        )
        + &phase(
            "plan",
            "planner",
            "planner",
            &server.url(),
            ("planner_prompt", "implementation_plan", "/complete"),
            2,
            "    max_retries: 0\n",
        );
    let out = p.run_template(&t, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let artifacts = p.execution().join("artifacts/1");
    let tasks: Value = serde_json::from_str(
        &std::fs::read_to_string(artifacts.join("analysis.json")).expect("task list"),
    )
    .expect("JSON");
    assert_eq!(tasks["summary"], "found at the end");
    let kept = std::fs::read_to_string(artifacts.join("plan.md")).expect("plan");
    assert_eq!(kept, format!("{}the end of the plan\n", filler));
}
