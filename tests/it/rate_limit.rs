//! One rate limiter per key across runners: two executions on one key against a server that
//! answers 4 requests a second (and says so in OpenAI's headers) share its window through
//! `$AUTOWRKERS_HOME/ratelimit/`, and the server never has to refuse one.

use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{pipeline_template, run_all_at_once};

#[tokio::test(flavor = "multi_thread")]
async fn two_executions_on_one_key_share_its_limit_and_meet_no_429() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    server.limit_rate(4);
    let runs: Vec<_> = (0..2)
        .map(|n| {
            let mut cmd = p.cmd();
            cmd.args([
                "run",
                "--task",
                &format!("task {n}"),
                "--template",
                "pipeline.yaml",
                "--no-realtime",
            ]);
            cmd
        })
        .collect();
    let ended = run_all_at_once(runs).await;
    for (code, stderr) in &ended {
        assert_eq!(*code, 0, "{stderr}");
    }
    let calls = server.log().len();
    assert!(calls >= 16, "both ran their pipelines: {calls} calls");
    assert_eq!(
        server.refused(),
        0,
        "a 429 the shared window could have avoided"
    );
    assert!(p.home.path().join("ratelimit").read_dir().unwrap().count() >= 1);
}
