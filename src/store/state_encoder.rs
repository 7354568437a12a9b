//! `state.json` encoded again and again by its runner, without re-encoding the past: the JSON
//! of every phase run and artifact is kept and reused while that entry is unchanged. A long
//! run's state grows by a phase run and an artifact per phase and is written twice a phase;
//! encoding all of it each time made every phase of iteration 50 slower than of iteration 1.
//! The bytes are exactly what `serde_json::to_vec` of the whole state gives (the unit test
//! compares them).

use serde::Serialize;

use crate::spec::WorkflowExecution;

/// The encoder of one execution's state; keep one per runner pass.
#[derive(Debug, Default)]
pub struct StateEncoder {
    runs: Vec<(crate::spec::PhaseExecution, Vec<u8>)>,
    artifacts: Vec<(crate::spec::Artifact, Vec<u8>)>,
}

impl StateEncoder {
    /// A new encoder with nothing kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compact JSON of `state`. Its two lists are lent out while the rest is encoded and
    /// put back before this returns.
    pub fn encode(&mut self, state: &mut WorkflowExecution) -> serde_json::Result<Vec<u8>> {
        let runs = std::mem::take(&mut state.phase_executions);
        let artifacts = std::mem::take(&mut state.artifacts);
        let head = serde_json::to_vec(state);
        state.phase_executions = runs;
        state.artifacts = artifacts;
        let head = head?;
        let runs = reuse(&mut self.runs, &state.phase_executions)?;
        let artifacts = reuse(&mut self.artifacts, &state.artifacts)?;
        match splice(
            &head,
            [
                (&b"\"phase_executions\":[]"[..], &runs[..]),
                (&b"\"artifacts\":[]"[..], &artifacts[..]),
            ],
        ) {
            Some(text) => Ok(text),
            None => serde_json::to_vec(state),
        }
    }
}

/// The items of `items` encoded and joined with commas, each from `kept` when unchanged.
fn reuse<T: Serialize + Clone + PartialEq>(
    kept: &mut Vec<(T, Vec<u8>)>,
    items: &[T],
) -> serde_json::Result<Vec<u8>> {
    kept.truncate(items.len());
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some((seen, bytes)) = kept.get(i)
            && seen == item
        {
            out.extend_from_slice(bytes);
            continue;
        }
        let bytes = serde_json::to_vec(item)?;
        out.extend_from_slice(&bytes);
        let entry = (item.clone(), bytes);
        match kept.get_mut(i) {
            Some(slot) => *slot = entry,
            None => kept.push(entry),
        }
    }
    Ok(out)
}

/// `head` with each `inner` placed inside the empty list that ends its `key`, copied once;
/// `None` when a key is missing. A key inside a string value has its quotes escaped, so the
/// first plain match is the field.
fn splice<const N: usize>(head: &[u8], parts: [(&[u8], &[u8]); N]) -> Option<Vec<u8>> {
    let mut at = Vec::with_capacity(N);
    for (key, inner) in parts {
        let end = head.windows(key.len()).position(|w| w == key)? + key.len() - 1;
        at.push((end, inner));
    }
    at.sort_by_key(|(end, _)| *end);
    let extra: usize = at.iter().map(|(_, inner)| inner.len()).sum();
    let mut out = Vec::with_capacity(head.len() + extra);
    let mut from = 0;
    for (end, inner) in at {
        out.extend_from_slice(&head[from..end]);
        out.extend_from_slice(inner);
        from = end;
    }
    out.extend_from_slice(&head[from..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Artifact, ArtifactType, PhaseExecution, PhaseStatus};

    fn run(n: u32) -> PhaseExecution {
        let text = format!(
            r#"{{"id":"{n}/a","phase_id":"a","phase_name":"a","phase_role":"implementer","provider_used":"x","model_used":"m","status":"running","iteration":{n},"input_artifact_ids":[],"output_artifact_id":null,"fingerprint":"","tokens":{{"input":1,"output":2,"cached_input":0,"cache_write":0}},"cost_usd":0.5,"calls":1,"started_at":"t"}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    fn artifact(n: u32) -> Artifact {
        Artifact {
            id: format!("{n}/a"),
            phase_execution_id: format!("{n}/a"),
            phase_id: "a".into(),
            artifact_type: ArtifactType::CodeDiff,
            iteration: n,
            file_path: format!("artifacts/{n}/a.diff"),
            sha256: "00".into(),
            is_edited: false,
            created_at: "t".into(),
        }
    }

    #[test]
    fn the_bytes_are_serde_jsons_through_changes_appends_and_removals() {
        let mut enc = StateEncoder::new();
        let mut state = WorkflowExecution::new("id");
        // A message holding the key's text must not be mistaken for it.
        state.message = r#"see "phase_executions":[] and "artifacts":[]"#.into();
        let same = |enc: &mut StateEncoder, state: &mut WorkflowExecution| {
            let ours = enc.encode(state).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(state).unwrap()
            );
        };
        same(&mut enc, &mut state);
        for n in 1..=3 {
            state.phase_executions.push(run(n));
            state.artifacts.push(artifact(n));
            same(&mut enc, &mut state);
        }
        state.phase_executions[1].status = PhaseStatus::Completed;
        state.artifacts[0].is_edited = true;
        same(&mut enc, &mut state);
        state.phase_executions.pop();
        state.artifacts.clear();
        same(&mut enc, &mut state);
        assert_eq!(state.phase_executions.len(), 2, "the lists are put back");
    }
}
