//! A template's `extra_params.args` meet the flags we set: a flag the user gives replaces ours
//! (with its value), every other argument is appended. So `args: ["--approval-mode", "yolo"]`
//! means yolo, not two conflicting modes.

/// Our flags that take one value and may appear once.
const VALUED: [&str; 11] = [
    "--output-format",
    "--permission-mode",
    "--model",
    "--max-turns",
    "--max-budget-usd",
    "--approval-mode",
    "--allowedTools",
    "--auth-type",
    "-m",
    "-s",
    "--sandbox",
];

/// `ours` with every flag that `extra` sets again removed, then `extra` appended.
pub fn merge(ours: Vec<String>, extra: &[String]) -> Vec<String> {
    let named = |a: &str| a.split_once('=').map_or(a, |(f, _)| f).to_owned();
    let given: Vec<String> = extra
        .iter()
        .filter(|a| a.starts_with('-'))
        .map(|a| named(a))
        .collect();
    let mut out = Vec::with_capacity(ours.len() + extra.len());
    let mut skip_value = false;
    for arg in ours {
        if skip_value {
            skip_value = false;
            continue;
        }
        let flag = named(&arg);
        if VALUED.contains(&flag.as_str()) && given.contains(&flag) {
            skip_value = !arg.contains('=');
            continue;
        }
        out.push(arg);
    }
    out.extend(extra.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::merge;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_given_flag_replaces_ours_and_the_rest_is_appended() {
        let ours = v(&[
            "--output-format",
            "stream-json",
            "--approval-mode",
            "auto_edit",
            "-m",
            "g",
        ]);
        assert_eq!(
            merge(ours.clone(), &v(&["--approval-mode", "yolo", "--debug"])),
            v(&[
                "--output-format",
                "stream-json",
                "-m",
                "g",
                "--approval-mode",
                "yolo",
                "--debug"
            ])
        );
        assert_eq!(
            merge(ours.clone(), &v(&["--approval-mode=yolo"])),
            v(&[
                "--output-format",
                "stream-json",
                "-m",
                "g",
                "--approval-mode=yolo"
            ])
        );
        assert_eq!(merge(ours.clone(), &[]), ours);
    }
}
