//! Replays every input kept in `fuzz/corpus/<target>/` (the seeds and what `make fuzz` found and
//! merged) through its target, so a crash found once stays fixed. Runs in `make test`.

use std::path::Path;

#[test]
fn every_corpus_input_keeps_its_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut replayed = 0;
    for &(name, target) in ibex_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "target {name} has no corpus in {}", dir.display());
        for path in &inputs {
            let data = std::fs::read(path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "target {name} broke on {}", path.display());
        }
        eprintln!("fuzz corpus: {name}: {} inputs replayed", inputs.len());
        replayed += inputs.len();
    }
    eprintln!("fuzz corpus: {replayed} inputs in all");
}

#[test]
fn every_target_has_a_libfuzzer_binary() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("libfuzzer/fuzz_targets");
    for &(name, _) in ibex_fuzz::TARGETS {
        let source = targets.join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("ibex_fuzz::{name}(")),
            "{} does not call ibex_fuzz::{name}",
            source.display()
        );
    }
}
