//! Budgets shared by several runners at once: what one spends or holds, every other sees
//! before its next call, so together they never pass a project or global limit.

use std::time::Duration;

use crate::fake_llm::{FakeLlm, Rule};
use crate::money::{TASKS, billed, ledger_lines, price_override, with_max_tokens};
use crate::support::{Project, phase, run, run_all_at_once};

/// Five analyzer phases of $0.06 each ($0.10 reserved per call).
fn five_calls(url: &str) -> String {
    let mut t = "name: x\nphases:\n".to_owned();
    for n in 1..=5 {
        t += &phase(
            &format!("p{n}"),
            "analyzer",
            "capped",
            url,
            ("analyzer_prompt", "task_list", "/done"),
            n,
            "",
        );
    }
    with_max_tokens(t)
}

fn spent(p: &Project) -> f64 {
    ledger_lines(p)
        .iter()
        .map(|l| l["usd"].as_f64().expect("usd"))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_runners_on_one_project_budget_spend_at_most_the_limit() {
    let reply = billed(TASKS, 60).delayed(Duration::from_millis(30));
    let (server, _h) = FakeLlm::start(vec![Rule::new("capped", None, reply)]).await;
    let p = Project::git(&[("a.txt", "a\n")]);
    price_override(&p);
    p.write("t.yaml", &five_calls(&server.url()));
    let mut cmd = p.cmd();
    cmd.args(["budget", "set", "--scope", "project", "--limit", "1"]);
    assert_eq!(run(cmd).await.code, 0);
    // Alone, each would spend $0.30: $1.20 together.
    let cmds = (0..4)
        .map(|i| {
            let mut cmd = p.cmd();
            cmd.args(["run", "--task", &format!("t{i}"), "--template", "t.yaml"]);
            cmd
        })
        .collect();
    let codes: Vec<i32> = run_all_at_once(cmds)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let total = spent(&p);
    assert!(total <= 1.0 + 1e-9, "spent ${total:.2} of a $1.00 budget");
    assert!(
        codes.contains(&3),
        "someone stopped at the budget: {codes:?}"
    );
    assert!(
        total >= 0.8,
        "the budget was used, not refused early: ${total:.2}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_in_two_projects_hold_the_global_budget() {
    let reply = billed(TASKS, 60).delayed(Duration::from_millis(30));
    let (server, _h) = FakeLlm::start(vec![Rule::new("capped", None, reply)]).await;
    let a = Project::git(&[("a.txt", "a\n")]);
    let b = Project::git(&[("b.txt", "b\n")]);
    price_override(&a);
    for p in [&a, &b] {
        p.write("t.yaml", &five_calls(&server.url()));
    }
    let mut cmd = a.cmd();
    cmd.args(["budget", "set", "--scope", "global", "--limit", "0.45"]);
    assert_eq!(run(cmd).await.code, 0);
    let cmds = [&a, &b]
        .iter()
        .map(|p| {
            let mut cmd = p.cmd();
            // One home for both: the global budget and the ledger are shared.
            cmd.env("AUTOWRKERS_HOME", a.home.path()).args([
                "run",
                "--task",
                "t",
                "--template",
                "t.yaml",
            ]);
            cmd
        })
        .collect();
    let codes: Vec<i32> = run_all_at_once(cmds)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let total = spent(&a);
    assert!(total <= 0.45 + 1e-9, "spent ${total:.2} of a $0.45 budget");
    assert!(codes.contains(&3), "{codes:?}");
}
