//! The review loop stops for a reason: a reviewer repeating the same findings in other words
//! stalls it (plateau) long before `max_iterations`; findings that come back after being
//! resolved stall it (oscillation); a passing verifier with only minor findings left ends it
//! (converged). Each says so in an event; findings keep their ids across iterations.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{pipeline_template, run};

fn report(issues: &[(&str, &str, &str)]) -> String {
    let issues: Vec<String> = issues
        .iter()
        .map(|(sev, file, text)| {
            format!(
                "{{\"severity\": \"{sev}\", \"file\": \"{file}\", \"description\": \"{text}\"}}"
            )
        })
        .collect();
    format!(
        "```json\n{{\"approved\": false, \"summary\": \"not yet\", \"issues\": [{}]}}\n```\n/review-complete",
        issues.join(", ")
    )
}

/// The functional reviewer answers `rounds` in order, one per iteration (the last again after).
fn reviewer(rounds: Vec<String>) -> Vec<Rule> {
    let last = rounds.len() - 1;
    let mut rules: Vec<Rule> = rounds
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let rule = Rule::new("reviewer-a", None, Reply::text(text));
            if i < last { rule.times(1) } else { rule }
        })
        .collect();
    rules.extend(two_iteration_rules(std::time::Duration::ZERO));
    rules
}

fn events(stdout: &str, kind: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == kind)
        .collect()
}

async fn run_json(rules: Vec<Rule>, max: u32, verify_passes: bool) -> (i32, String, String) {
    run_json_in(rules, max, verify_passes).await.0
}

/// The run's (exit code, stdout, stderr) and its project.
async fn run_json_in(
    rules: Vec<Rule>,
    max: u32,
    verify_passes: bool,
) -> ((i32, String, String), crate::support::Project, FakeLlm) {
    let (server, _h) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    let template = pipeline_template(&server.url(), "")
        .replace("max_iterations: 3", &format!("max_iterations: {max}"));
    p.write("pipeline.yaml", &template);
    if verify_passes {
        p.write(".autowrkers/config.yaml", "verify:\n  test: \"true\"\n");
    }
    let out = p
        .cli(&[
            "run",
            "--task",
            "t",
            "--template",
            "pipeline.yaml",
            "--json",
        ])
        .await;
    ((out.code, out.stdout, out.stderr), p, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_findings_in_other_words_stall_the_loop_on_a_plateau() {
    let rounds = vec![
        report(&[
            (
                "major",
                "greet.sh",
                "The --verbose flag prints nothing at all",
            ),
            ("major", "test.sh", "The test never checks the exit code"),
        ]),
        report(&[
            (
                "major",
                "greet.sh",
                "Nothing is printed when the verbose flag is given",
            ),
            ("major", "test.sh", "Exit code of the test is never checked"),
        ]),
        report(&[
            ("major", "greet.sh", "Verbose flag: still nothing printed"),
            (
                "major",
                "test.sh",
                "The exit code is not checked by the test",
            ),
        ]),
    ];
    let ((code, stdout, stderr), p, _server) = run_json_in(reviewer(rounds), 10, false).await;
    assert_eq!(code, 4, "paused (failure_behavior: pause_notify): {stderr}");
    // `workflow status` tells the findings per iteration.
    let mut cmd = p.cmd();
    cmd.args(["workflow", "status"]);
    let status = run(cmd).await.stdout;
    assert!(
        status
            .contains("findings   iteration 1: new F1,F2 · still open - · resolved - · reopened -"),
        "{status}"
    );
    assert!(
        status.contains("findings   iteration 2: new - · still open F1,F2"),
        "{status}"
    );
    let stalled = events(&stdout, "workflow:stalled");
    assert_eq!(stalled.len(), 1, "{stdout}");
    assert_eq!(stalled[0]["kind"], "plateau");
    assert!(
        stalled[0]["iteration"].as_u64().unwrap() <= 3,
        "{}",
        stalled[0]
    );
    assert!(
        stalled[0]["reason"].as_str().unwrap().contains("F1, F2"),
        "{}",
        stalled[0]
    );
    // Two findings, the same two ids every iteration: new, then still open.
    let findings = events(&stdout, "workflow:findings");
    assert_eq!(findings[0]["new"], serde_json::json!(["F1", "F2"]));
    assert_eq!(findings[1]["open"], serde_json::json!(["F1", "F2"]));
    assert_eq!(findings[1]["new"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finding_resolved_and_back_again_is_an_oscillation() {
    let x = (
        "major",
        "greet.sh",
        "The --verbose flag prints nothing at all",
    );
    let y = ("major", "test.sh", "The test never checks the exit code");
    let rounds = vec![report(&[x, y]), report(&[y]), report(&[x, y])];
    let (code, stdout, _) = run_json(reviewer(rounds), 10, false).await;
    assert_eq!(code, 4);
    let findings = events(&stdout, "workflow:findings");
    assert_eq!(findings[1]["resolved"], serde_json::json!(["F1"]));
    assert_eq!(findings[2]["reopened"], serde_json::json!(["F1"]));
    let stalled = events(&stdout, "workflow:stalled");
    assert_eq!(stalled[0]["kind"], "oscillation", "{stdout}");
    assert_eq!(stalled[0]["iteration"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passing_verifier_with_only_minor_findings_converges() {
    let rounds = vec![report(&[("minor", "greet.sh", "Prefer printf over echo")])];
    let (code, stdout, stderr) = run_json(reviewer(rounds), 10, true).await;
    assert_eq!(code, 0, "{stderr}");
    let converged = events(&stdout, "workflow:converged");
    assert_eq!(converged.len(), 1, "{stdout}");
    assert_eq!(converged[0]["iteration"], 1);
    assert!(
        events(&stdout, "workflow:iteration").is_empty(),
        "no second iteration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn from_iteration_2_reviewers_read_what_changed_since_their_review() {
    // Iteration 1 changes a lot; iteration 2 a little. The reviewer of iteration 2 reads only
    // the little, with the findings it had, and the request is smaller.
    let big: String = (0..300)
        .map(|n| format!("line {n} of a long change\n"))
        .collect();
    let mut rules = vec![
        Rule::new(
            "implementer",
            Some(0),
            Reply::tool(
                "edit_file",
                serde_json::json!({"path": "README.md", "search": "demo", "replace": big}),
            ),
        )
        .times(1),
    ];
    rules.extend(two_iteration_rules(std::time::Duration::ZERO));
    let ((code, stdout, stderr), _p, server) = run_json_in(rules, 3, true).await;
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let reviews = server.calls("reviewer-a");
    assert_eq!(reviews.len(), 2, "one review per iteration");
    let (first, second) = (reviews[0].body.to_string(), reviews[1].body.to_string());
    assert!(first.contains("line 299 of a long change"));
    assert!(
        !second.contains("line 299 of a long change"),
        "the whole diff again"
    );
    assert!(
        second.contains("Changes since the review of iteration 1"),
        "{second}"
    );
    assert!(second.contains("F1 [major]"), "its open finding: {second}");
    assert!(
        second.len() < first.len(),
        "iteration 2's request ({} bytes) is smaller than iteration 1's ({} bytes)",
        second.len(),
        first.len()
    );
    eprintln!(
        "review request bytes: iteration 1 {}, iteration 2 {}",
        first.len(),
        second.len()
    );
}
