//! `run --analyze`: the analyzer is shown the project's files and proposes tasks; `--pick`
//! starts exactly the chosen ones, each its own execution; without a terminal and without a
//! choice it says how to choose.

use crate::fake_llm::{FakeLlm, Reply, Rule};
use crate::pipeline::{project, two_iteration_rules};
use crate::support::pipeline_template;

const PROPOSALS: &str = "```json\n{\"summary\": \"three things\", \"tasks\": [\
{\"id\": 1, \"title\": \"First: a --verbose flag\", \"description\": \"print steps\", \"files\": [\"greet.sh\"], \"priority\": \"high\", \"estimated_cost_usd\": 0.4},\
{\"id\": 2, \"title\": \"Second: rename\", \"description\": \"x\", \"files\": [\"README.md\"], \"priority\": \"low\"},\
{\"id\": 3, \"title\": \"Third: a test\", \"description\": \"cover it\", \"files\": [\"test.sh\"], \"priority\": \"medium\"}]}\n```\n/analysis-complete";

#[tokio::test(flavor = "multi_thread")]
async fn the_scan_proposes_from_the_files_and_pick_starts_exactly_those() {
    let mut rules = vec![Rule {
        contains: Some("Scan this project".into()),
        ..Rule::new("analyzer", None, Reply::text(PROPOSALS))
    }];
    rules.extend(two_iteration_rules(std::time::Duration::ZERO));
    let (server, _h) = FakeLlm::start(rules).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    crate::support::git(&p.path(), &["add", "pipeline.yaml"]);

    // No terminal, no choice: it says how to choose.
    let out = p
        .cli(&[
            "run",
            "--analyze",
            "--template",
            "pipeline.yaml",
            "--no-realtime",
        ])
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("--pick 1,3 or --max-tasks N"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("  1. [high] First: a --verbose flag (≈$0.40) — greet.sh"),
        "{}",
        out.stderr
    );

    // What the analyzer was shown: the file list and the small files' text.
    let scan = server.calls("analyzer")[0].body.to_string();
    assert!(
        scan.contains("- greet.sh (") && scan.contains("- test.sh ("),
        "{scan}"
    );
    assert!(
        scan.contains("--- greet.sh ---") && scan.contains("Hello, $name!"),
        "{scan}"
    );

    let out = p
        .cli(&[
            "run",
            "--analyze",
            "--template",
            "pipeline.yaml",
            "--no-realtime",
            "--pick",
            "1,3",
            "--budget",
            "20",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let folder = p.path().join(".autowrkers/executions");
    let mut tasks: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("execution.yaml")).unwrap())
        .filter(|r| r.contains("trigger_mode: directory_scan") && !r.contains("(scan)"))
        .map(|r| {
            let v: serde_yaml::Value = serde_yaml::from_str(&r).unwrap();
            v["task_description"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["First: a --verbose flag", "Third: a test"]);
}
