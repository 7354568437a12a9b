//! Tests of [`super`]: the index answers and stays true to the files.

use super::*;

fn execution(project: &Path, id: &str, created: &str) -> ExecutionDir {
    let dir = ExecutionDir::new(ProjectDir::new(project).executions().join(id));
    std::fs::create_dir_all(dir.root()).expect("mkdir");
    let yaml = format!(
        "id: {id}\ntrigger_mode: manual_task\nproject_path: {}\ntask_description: task {id}\ntemplate: {{name: t, phases: []}}\niteration_behavior: auto_iterate\ncreated_at: '{created}'\n",
        project.display()
    );
    std::fs::write(dir.request_path(), yaml).expect("write");
    dir
}

/// A home and a project holding one execution (`aaa1`), which an index has recorded once.
fn indexed_once() -> (tempfile::TempDir, Home, PathBuf, ExecutionDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = Home::at(tmp.path().join("home"));
    let project = tmp.path().join("p");
    let dir = execution(&project, "aaa1", "2026-01-01T00:00:00Z");
    drop(
        Catalog::open(&home, Some(&project))
            .expect("open")
            .expect("index"),
    );
    (tmp, home, project, dir)
}

#[test]
fn folders_the_index_lacks_are_added_and_changed_files_repaired() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = Home::at(tmp.path().join("home"));
    let project = tmp.path().join("p");
    execution(&project, "aaa1", "2026-01-01T00:00:00Z");
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    assert_eq!(catalog.find("aaa").expect("found").id(), "aaa1");
    let first = catalog.newest_first().next().expect("row");
    assert_eq!(
        (first.status.as_str(), first.task.as_str()),
        ("pending", "task aaa1")
    );
    drop(catalog);

    // A folder written by hand appears; an edited state is seen; a deleted one goes.
    let b = execution(&project, "bbb2", "2026-01-02T00:00:00Z");
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    let ids: Vec<String> = catalog.newest_first().map(|s| s.id).collect();
    assert_eq!(ids, ["bbb2", "aaa1"]);
    std::fs::write(b.state_path(), "{ not json").expect("write");
    let first = catalog.newest_first().next().expect("row");
    assert_eq!(first.status, DAMAGED, "a damaged state is listed as such");
    std::fs::remove_dir_all(b.root()).expect("rm");
    let ids: Vec<String> = catalog.newest_first().map(|s| s.id).collect();
    assert_eq!(ids, ["aaa1"]);
    assert!(matches!(catalog.find("bbb"), Err(StoreError::NotFound(_))));
}

#[test]
fn a_whole_listing_is_newest_first_and_checks_every_row_across_batches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = Home::at(tmp.path().join("home"));
    let project = tmp.path().join("p");
    // Three batches for the stat workers, the last one short.
    let dirs: Vec<ExecutionDir> = (0..1100)
        .map(|i| {
            let created = format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
            execution(&project, &format!("e{i:04}"), &created)
        })
        .collect();
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    // One row in the middle batch goes, one in the last is damaged by hand.
    std::fs::remove_dir_all(dirs[600].root()).expect("rm");
    std::fs::write(dirs[5].state_path(), "{ not json").expect("write");
    let all = catalog.all();
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    let want: Vec<String> = (0..1100)
        .rev()
        .filter(|i| *i != 600)
        .map(|i| format!("e{i:04}"))
        .collect();
    assert_eq!(ids, want, "newest first, the removed one gone");
    let damaged = all.iter().find(|s| s.id == "e0005").expect("row");
    assert_eq!(damaged.status, DAMAGED, "the edited row is read again");
    assert!(
        all.iter()
            .filter(|s| s.id != "e0005")
            .all(|s| s.status == "pending")
    );
    // The workers' stamps, taken relative to the executions folder, are the stamps the
    // index keeps: an unchanged row is not read again.
    let folder = open_folder(dirs[7].root().parent().expect("parent")).expect("folder");
    let name = Path::new(dirs[7].root().file_name().expect("name"));
    assert_eq!(files_stamp_at(&folder, name), files_stamp(&dirs[7]));
    assert!(files_stamp_at(&folder, Path::new("e0600")).is_none());
}

#[test]
fn a_deleted_index_is_rebuilt_from_the_files() {
    let (_tmp, home, project, _) = indexed_once();
    std::fs::remove_dir_all(home.index()).expect("rm index");
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    assert_eq!(catalog.find("aaa1").expect("found").id(), "aaa1");
}

#[test]
fn an_index_in_an_older_layout_is_rebuilt() {
    let (_tmp, home, project, _) = indexed_once();
    // What the first layout held: the summary under `exec:`, no format mark.
    let old = Index::open_in(&home).expect("index");
    old.put_raw("meta:format", b"1").expect("put");
    old.put_raw("exec:aaa1", b"{\"id\": \"aaa1\"}")
        .expect("put");
    drop(old);
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    assert_eq!(catalog.find("aaa").expect("found").id(), "aaa1");
    assert_eq!(catalog.newest_first().count(), 1);
}

#[test]
fn a_noted_change_is_recorded_by_the_next_open() {
    let (_tmp, home, _, dir) = indexed_once();
    // A runner changes the budget and notes it; the index learns it without a lookup.
    let yaml = std::fs::read_to_string(dir.request_path()).expect("read");
    std::fs::write(dir.request_path(), format!("{yaml}budget_limit: 2.5\n")).expect("write");
    note_changed(&home, &dir);
    // A second change before the note is taken leaves the waiting note as it is.
    let note = noted_folder(&home).join("aaa1");
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&note).expect("note"));
    let first = inode();
    std::fs::write(dir.request_path(), format!("{yaml}budget_limit: 3.5\n")).expect("write");
    note_changed(&home, &dir);
    assert_eq!(inode(), first, "the waiting note is not rewritten");
    drop(Catalog::open(&home, None).expect("open").expect("index"));
    let index = Index::open_in(&home).expect("index");
    let entry = index.get("aaa1").expect("entry");
    assert_eq!(entry.budget_limit, Some(3.5), "{entry:?}");
    assert_eq!(
        std::fs::read_dir(noted_folder(&home))
            .expect("folder")
            .count(),
        0,
        "the note is used up"
    );
}

#[test]
fn budget_status_reads_only_live_executions_and_follows_their_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = Home::at(tmp.path().join("home"));
    let project = tmp.path().join("p");
    let ended = execution(&project, "aaa1", "2026-01-01T00:00:00Z");
    let mut state = crate::spec::WorkflowExecution::new("aaa1");
    state.status = crate::spec::WorkflowStatus::Completed;
    ended.write_state(&state).expect("state");
    execution(&project, "bbb2", "2026-01-02T00:00:00Z");
    let ids = |home: &Home| -> Vec<String> {
        let catalog = Catalog::open(home, Some(&project))
            .expect("open")
            .expect("index");
        catalog
            .live_of(&project)
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(&home), ["bbb2"], "the pending one only");
    // Given a budget (as `budget set` does: the file, then a note), the ended one shows.
    let yaml = std::fs::read_to_string(ended.request_path()).expect("read");
    std::fs::write(ended.request_path(), format!("{yaml}budget_limit: 1.0\n")).expect("write");
    note_changed(&home, &ended);
    assert_eq!(ids(&home), ["bbb2", "aaa1"]);
}

#[test]
fn a_large_rebuild_is_written_afresh_and_still_answers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = Home::at(tmp.path().join("home"));
    let project = tmp.path().join("p");
    let add = |range: std::ops::Range<usize>| {
        for i in range {
            execution(
                &project,
                &format!("e{i:04}"),
                &format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
            );
        }
    };
    // The folder holding sled's files is a new one (another inode) once rewritten.
    let index_folder = || Stamp::of(&home.index().join("main")).map(|s| s.to_string());
    add(0..1);
    drop(Catalog::open(&home, Some(&project)).expect("open"));
    let small = index_folder();
    add(1..2);
    drop(Catalog::open(&home, Some(&project)).expect("open"));
    let inode = |s: Option<String>| s.and_then(|s| s.split('.').next().map(str::to_owned));
    assert_eq!(
        inode(index_folder()),
        inode(small.clone()),
        "a small addition is not rewritten"
    );
    add(2..COMPACT_AFTER + 2);
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    assert_ne!(
        inode(index_folder()),
        inode(small),
        "the rebuild was not rewritten"
    );
    assert_eq!(catalog.newest_first().count(), COMPACT_AFTER + 2);
    assert_eq!(catalog.find("e0007").expect("found").id(), "e0007");
    drop(catalog);
    for leftover in ["main.compacting", "main.old"] {
        assert!(
            !home.index().join(leftover).exists(),
            "{leftover} left behind"
        );
    }
    let catalog = Catalog::open(&home, Some(&project))
        .expect("open")
        .expect("index");
    assert_eq!(
        catalog.newest_first().next().expect("row").id,
        format!("e{:04}", COMPACT_AFTER + 1)
    );
}
