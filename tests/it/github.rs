//! The GitHub round trip against a fake GitHub API and a local bare repository as `origin`:
//! an issue (title, body, comments) becomes the task; the completed run's branch and
//! execution ref land on the remote, a pull request carries the verdicts, verification and
//! cost, and the issue links it. Each failure says what happened, keeps the execution
//! completed, and the printed `workflow publish` then succeeds.

use crate::fake_github::{FakeGitHub, Mode};
use crate::fake_llm::FakeLlm;
use crate::pipeline::{project, two_iteration_rules};
use crate::support::{Project, git, hint, pipeline_template, run};

const TOKEN: &str = "ghp_test_7c3e9a1b5d";

/// A bare repository beside the project, added as its `origin`.
fn with_remote(p: &Project) -> std::path::PathBuf {
    let remote = p.home.path().join("remote.git");
    git(
        p.home.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    git(
        &p.path(),
        &["remote", "add", "origin", &remote.to_string_lossy()],
    );
    git(&p.path(), &["push", "-q", "origin", "main"]);
    remote
}

fn issue_run(p: &Project, gh: &FakeGitHub) -> std::process::Command {
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--issue",
        "42",
        "--repo",
        "acme/widgets",
        "--template",
        "pipeline.yaml",
        "--no-realtime",
    ])
    .env("GITHUB_API_URL", gh.url())
    .env("GITHUB_TOKEN", TOKEN);
    cmd
}

/// The pipeline's replies, and an implementer that answers a pull request's feedback with a
/// small edit of its own.
fn rules_with_feedback() -> Vec<crate::fake_llm::Rule> {
    use crate::fake_llm::{Reply, Rule};
    let feedback = Some("Please handle the empty name here.".to_owned());
    let mut rules = vec![
        Rule {
            contains: feedback.clone(),
            ..Rule::new(
                "implementer",
                Some(0),
                Reply::tool(
                    "edit_file",
                    serde_json::json!({"path": "README.md", "search": "demo", "replace": "demo (empty names handled)"}),
                ),
            )
        },
        Rule {
            contains: feedback,
            ..Rule::new("implementer", None, Reply::text("Done. /complete"))
        },
        // The reviewer of that iteration reads only its change, and approves it.
        Rule {
            contains: Some("empty names handled".to_owned()),
            ..Rule::new(
                "reviewer-a",
                None,
                Reply::text(
                    "```json\n{\"approved\": true, \"summary\": \"handled\", \"issues\": []}\n```\n/review-complete",
                ),
            )
        },
    ];
    rules.extend(two_iteration_rules(std::time::Duration::ZERO));
    rules
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issue_becomes_a_pull_request_that_the_issue_links() {
    let (server, _h) = FakeLlm::start(rules_with_feedback()).await;
    let gh = FakeGitHub::start().await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));
    let remote = with_remote(&p);

    let summary = p.home.path().join("summary.md");
    let mut cmd = issue_run(&p, &gh);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));
    assert!(!out.stdout.contains("::error"), "{}", out.stdout);
    // The job summary tells the run.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("### autowrkers: completed (all checks passed)") && md.contains("**Reviews**"),
        "{md}"
    );
    assert!(
        out.stderr
            .contains("pull request #7: https://github.example/acme/widgets/pull/7"),
        "{}",
        out.stderr
    );
    // The task: the issue's title, body and comments, as the analyzer saw it.
    let analyzer = server.calls("analyzer")[0].body.to_string();
    assert!(analyzer.contains("Crash on empty input"), "{analyzer}");
    assert!(analyzer.contains("It also happens with -v"), "{analyzer}");
    // The token went to GitHub as a bearer token.
    assert!(
        gh.seen("GET", "/repos/acme/widgets/issues/42")
            .iter()
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );

    // The branch and the execution's ref are on the remote.
    let id = p.state()["id"].as_str().unwrap().to_owned();
    let branch = p.branch();
    let refs = git(&remote, &["show-ref"]);
    assert!(refs.contains(&format!("refs/heads/{branch}")), "{refs}");
    assert!(
        refs.contains(&format!("refs/autowrkers/executions/{id}")),
        "{refs}"
    );

    // The pull request carries what a reviewer of it needs.
    let pr = &gh.seen("POST", "/repos/acme/widgets/pulls")[0].body;
    assert_eq!(pr["head"], branch.as_str());
    assert_eq!(pr["base"], "main");
    assert_eq!(pr["draft"], false);
    assert!(
        pr["title"]
            .as_str()
            .unwrap()
            .contains("Crash on empty input (#42)"),
        "{pr}"
    );
    let body = pr["body"].as_str().unwrap();
    for needed in [
        "**Reviews**",
        "phase-review-func",
        "approved",
        "**Verification**",
        "passed",
        "**Cost**",
        &id,
        "Closes #42",
    ] {
        assert!(body.contains(needed), "{needed} missing from:\n{body}");
    }
    // The issue links it.
    let comment = &gh.seen("POST", "/repos/acme/widgets/issues/42/comments")[0].body;
    assert!(
        comment["body"]
            .as_str()
            .unwrap()
            .contains("https://github.example/acme/widgets/pull/7")
    );
    // Published again: nothing twice (no second comment).
    let mut cmd = p.cmd();
    cmd.args(["workflow", "publish", &id[..8]])
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_TOKEN", TOKEN);
    assert_eq!(run(cmd).await.code, 0);
    assert_eq!(
        gh.seen("POST", "/repos/acme/widgets/issues/42/comments")
            .len(),
        1
    );

    // Another clone (another machine: another home) fetches it and sees the same execution.
    let second = p.home.path().join("second");
    git(
        p.home.path(),
        &["clone", "-q", &remote.to_string_lossy(), "second"],
    );
    let desk = tempfile::tempdir().unwrap();
    let on_desk = |args: &[&str]| {
        let mut cmd = p.cmd();
        cmd.current_dir(&second)
            .env("AUTOWRKERS_HOME", desk.path())
            .args(args);
        cmd
    };
    let out = run(on_desk(&["workflow", "fetch", &id[..8]])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("fetched execution"), "{}", out.stderr);
    // The same status, phases and cost (lines naming a path differ between machines).
    let status = |out: &crate::support::Ran| -> Vec<String> {
        out.stdout
            .lines()
            .filter(|l| !l.contains('/'))
            .map(str::to_owned)
            .collect()
    };
    let here = p.cli(&["workflow", "status", &id[..8]]).await;
    let there = run(on_desk(&["workflow", "status", &id[..8]])).await;
    assert_eq!(there.code, 0, "{}", there.stderr);
    assert!(status(&here).len() > 3, "{}", here.stdout);
    assert_eq!(status(&there), status(&here));
    let resumed = run(on_desk(&["resume", &id[..8], "--no-realtime"])).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(git(&second, &["branch", "--list", &branch]).contains(&branch));

    // The pull request's feedback fed back: two review comments and one failed check become
    // the next iteration, whose implementer reads them; the result goes to the same branch.
    let implementer_calls = server.calls("implementer").len();
    let mut cmd = p.cmd();
    cmd.args(["workflow", "address", &id[..8], "--no-realtime"])
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_TOKEN", TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("3 finding(s) from pull request #7"),
        "{}",
        out.stderr
    );
    let prompt = server.calls("implementer")[implementer_calls]
        .body
        .to_string();
    for needed in [
        "Please handle the empty name here.",
        "Use printf instead of echo.",
        "check `ci/test` failed: 1 test failed",
    ] {
        assert!(
            prompt.contains(needed),
            "{needed} missing from the implementer's prompt"
        );
    }
    assert_eq!(p.state()["iteration"], 3);
    assert_eq!(p.state()["status"], "completed");
    let local = git(&p.path(), &["rev-parse", &branch]);
    let pushed = git(&remote, &["rev-parse", &branch]);
    assert_eq!(local, pushed, "the same branch carries the new iteration");
    assert!(
        git(&p.path(), &["show", &format!("{branch}:README.md")]).contains("empty names handled")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_is_said_keeps_the_run_and_publish_then_succeeds() {
    let (server, _h) = FakeLlm::start(two_iteration_rules(std::time::Duration::ZERO)).await;
    let gh = FakeGitHub::start().await;
    let p = project(&server.url());
    p.write("pipeline.yaml", &pipeline_template(&server.url(), ""));

    // An issue that does not exist: said once, with what to check.
    let mut cmd = p.cmd();
    cmd.args([
        "run",
        "--issue",
        "999",
        "--repo",
        "acme/widgets",
        "--template",
        "pipeline.yaml",
    ])
    .env("GITHUB_API_URL", gh.url());
    let out = run(cmd).await;
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.matches("(404)").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("GitHub has no issue #999 (404)"),
        "{}",
        out.stderr
    );

    // No remote: the run completes, publishing says how to add one (and tells Actions).
    let mut cmd = issue_run(&p, &gh);
    cmd.env("GITHUB_ACTIONS", "true");
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("::error title=autowrkers publish::the project has no git remote"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("no git remote `origin`"),
        "{}",
        out.stderr
    );
    assert_eq!(p.state()["status"], "completed");
    let retry = hint(&out.stderr, "workflow publish", &[]);
    let remote = with_remote(&p);

    // A bad token: 401 said as such; then the printed command, with a good one, publishes.
    gh.set(Mode::BadToken);
    let mut cmd = p.cmd();
    cmd.args(&retry)
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_TOKEN", TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{retry:?}: {}", out.stderr);
    assert!(
        out.stderr.contains("GitHub refused the request (401)") && !out.stderr.contains(TOKEN),
        "{}",
        out.stderr
    );

    // A pull request already open for the branch is found and updated instead.
    gh.set(Mode::PrExists);
    let mut cmd = p.cmd();
    cmd.args(&retry)
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_TOKEN", TOKEN);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("pull request #5"), "{}", out.stderr);
    assert_eq!(gh.seen("PATCH", "/repos/acme/widgets/pulls/5").len(), 1);
    assert!(git(&remote, &["show-ref"]).contains(&p.branch()));

    // A push the remote rejects (its branch moved on): said with git's words.
    let id = p.state()["id"].as_str().unwrap().to_owned();
    let other = p.home.path().join("other");
    git(
        p.home.path(),
        &["clone", "-q", &remote.to_string_lossy(), "other"],
    );
    git(&other, &["checkout", "-q", &p.branch()]);
    std::fs::write(other.join("elsewhere.txt"), "x\n").unwrap();
    git(&other, &["add", "-A"]);
    git(
        &other,
        &[
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@o",
            "commit",
            "-qm",
            "moved on",
        ],
    );
    git(&other, &["push", "-q", "origin", &p.branch()]);
    let mut cmd = p.cmd();
    cmd.args(["workflow", "publish", &id[..8]])
        .env("GITHUB_API_URL", gh.url());
    let out = run(cmd).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("pushing to `origin` failed") && out.stderr.contains("rejected"),
        "{}",
        out.stderr
    );
    assert_eq!(p.state()["status"], "completed");
}
